"""The rubric: one declared schema, read with yaml.safe_load and validated once.

A rubric file has `schema_version`, the exercise it grades (`exercise`, and for one kept
outside the kit `exercise_path`), optional `time_limit` (default seconds per item) and
`items`; each item declares its id, title, points, the check it runs with that check's
parameters, a visibility (Gradescope's names) and optionally its own time limit. An item
with `check: manual` is graded by a person instead (grader review): it has a `prompt`
students answer and optional rubric `lines` a TA ticks, each worth some points. Each
check declares its parameters, their defaults and what one type cannot say about them
once, in its exercise's registry (grader.exercise.Check); the rubric validates against
it. An exercise may declare more top-level sections (Exercise.rubric_sections), which it
validates itself.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import exercise as exercise_mod
from .errors import RubricError
from .records import late as late_mod

SCHEMA_VERSION = 1
VISIBILITIES = ("visible", "hidden", "after_due_date", "after_published")

# key: (type, required, description) -- the one declaration of what a rubric may say.
TOP_LEVEL = {
    "schema_version": (int, True, f"must be {SCHEMA_VERSION}"),
    "title": (str, False, "shown above the results"),
    "time_limit": ((int, float), False, "default seconds per item (positive)"),
    "heldout_seed": (int, False, "seed of the held-out images for hidden items (keep private)"),
    "items": (list, True, "the graded items"),
    "calibration": (dict, False, "written by `grader calibrate`: what the bounds and time "
                                 "limits were measured on"),
    "exercise": (str, False, f"the exercise graded (default {exercise_mod.DEFAULT})"),
    "exercise_path": (str, False, "a folder holding the exercise's package, relative to the "
                                  "rubric's folder (for an exercise kept outside the kit)"),
    "late": (dict, False, "the due date, grace and late penalty (grader/records/late.py)"),
}

ITEM = {
    "id": (str, True, "unique name of the item (letters, digits, _ and -)"),
    "title": (str, True, "one line shown to students"),
    "points": ((int, float), True, "points for a full pass (>= 0)"),
    "check": (str, True, "which check runs: one of its exercise's checks"),
    "params": (dict, False, "the check's parameters"),
    "visibility": (str, False, f"one of {', '.join(VISIBILITIES)} (default visible)"),
    "time_limit": ((int, float), False, "seconds this item may take (positive)"),
}

MANUAL = "manual"
"""the `check` of an item a person grades"""

MANUAL_ITEM = {
    "id": ITEM["id"],
    "title": ITEM["title"],
    "points": ITEM["points"],
    "check": (str, True, f"{MANUAL!r}: a person grades it (grader review)"),
    "prompt": (str, True, "the question students answer, in Markdown"),
    "lines": (list, False, "rubric lines a TA ticks, each {text, points}; points may be "
                           "negative (a deduction)"),
    "visibility": ITEM["visibility"],
}
MANUAL_LINE = {
    "text": (str, True, "what the answer does, as the TA reads it"),
    "points": ((int, float), True, "points the line adds (negative: takes away)"),
}


@dataclass(frozen=True)
class Line:
    text: str
    points: float


@dataclass
class ManualItem:
    """An item a person grades: the answer to `prompt`, scored from 0 to `points`."""
    id: str
    title: str
    points: float
    prompt: str
    lines: tuple[Line, ...] = ()
    visibility: str = "visible"

    def score_of(self, ticked: list[int]) -> float:
        """The score the ticked lines give, kept within 0..points."""
        total = sum(self.lines[i].points for i in set(ticked) if 0 <= i < len(self.lines))
        return round(min(max(total, 0.0), self.points), 4)

    def to_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "points": self.points, "prompt": self.prompt,
                "lines": [{"text": l.text, "points": l.points} for l in self.lines],
                "visibility": self.visibility}

    @classmethod
    def from_dict(cls, data: dict) -> "ManualItem":
        return cls(data["id"], data["title"], float(data["points"]), data["prompt"],
                   tuple(Line(l["text"], float(l["points"])) for l in data.get("lines", [])),
                   data.get("visibility", "visible"))
@dataclass
class Item:
    id: str
    title: str
    points: float
    check: str
    params: dict = field(default_factory=dict)
    visibility: str = "visible"
    time_limit: float = 120.0


@dataclass
class Rubric:
    items: list[Item]
    title: str = ""
    """shown above the results (parse: the rubric's, else its exercise's title)"""
    time_limit: float = 120.0
    heldout_seed: int | None = None
    source: str = "<rubric>"
    exercise: exercise_mod.Exercise = None
    """what it grades: required (parse fills it in from the rubric's `exercise`)"""
    sections: dict = field(default_factory=dict)
    """the exercise's own sections (Exercise.rubric_sections), as it parsed them"""
    manual: list[ManualItem] = field(default_factory=list)
    """the items a person grades (`check: manual`), in the rubric's order; never run"""
    late: late_mod.Policy | None = None
    """the due date and late penalty, applied to the grades exported (None: no due date)"""

    def __post_init__(self):
        if self.exercise is None:  # a rubric names its exercise; parse() reads which
            raise TypeError("Rubric: expected the exercise it grades (exercise=...); none given")
        self.title = self.title or self.exercise.title

    @property
    def max_points(self) -> float:
        """What the autograded items are worth."""
        return sum(item.points for item in self.items)

    @property
    def total_points(self) -> float:
        """Autograded and manual items together."""
        return self.max_points + sum(item.points for item in self.manual)

    def select(self, include_hidden: bool) -> list[Item]:
        return [i for i in self.items if include_hidden or i.visibility == "visible"]


def _type_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({int: "integer", float: "number", str: "string", list: "list",
                        dict: "mapping", bool: "boolean"}[k] for k in kinds)


def check_keys(mapping: dict, schema: dict, where: str, source: str) -> None:
    for key in mapping:
        if key not in schema:
            raise RubricError(f"{source}: {where}: unknown key {key!r}; expected one of "
                              f"{', '.join(schema)}.")
    for key, (kind, required, description) in schema.items():
        if key not in mapping:
            if required:
                raise RubricError(f"{source}: {where}: missing key {key!r} ({description}).")
            continue
        value = mapping[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise RubricError(f"{source}: {where}: {key!r} must be a {_type_name(kind)} "
                              f"({description}), found {value!r}.")


def parse(data: Any, source: str = "<rubric>") -> Rubric:
    """Validate the loaded YAML and build the Rubric, or raise RubricError."""
    if not isinstance(data, dict):
        raise RubricError(f"{source}: expected a mapping with schema_version and items, "
                          f"found {type(data).__name__}.")
    folder = Path(source).parent if source and not source.startswith("<") else Path(".")
    exercise = _exercise(data, folder, source)
    check_keys(data, {**TOP_LEVEL, **{key: (object, False, f"{exercise.name}'s section")
                                       for key in exercise.rubric_sections}}, "top level", source)
    if data["schema_version"] != SCHEMA_VERSION:
        raise RubricError(f"{source}: schema_version {data['schema_version']} is not supported; "
                          f"this grader reads version {SCHEMA_VERSION}.")
    default_limit = float(data.get("time_limit", 120))
    if default_limit <= 0:
        raise RubricError(f"{source}: 'time_limit' must be positive, found {default_limit}.")
    if not data["items"]:
        raise RubricError(f"{source}: 'items' is empty; a rubric needs at least one item.")
    items, manual, seen = [], [], set()
    for index, raw in enumerate(data["items"]):
        where = f"items[{index}]"
        if not isinstance(raw, dict):
            raise RubricError(f"{source}: {where}: expected a mapping, found {raw!r}.")
        is_manual = raw.get("check") == MANUAL
        check_keys(raw, MANUAL_ITEM if is_manual else ITEM, where, source)
        where = f"item {raw['id']!r}"
        if not raw["id"] or not all(c.isalnum() or c in "_-" for c in raw["id"]):
            raise RubricError(f"{source}: {where}: id may hold only letters, digits, _ and -.")
        if raw["id"] in seen:
            raise RubricError(f"{source}: {where}: the id is used twice; ids must be unique.")
        seen.add(raw["id"])
        if raw["points"] < 0:
            raise RubricError(f"{source}: {where}: 'points' must be >= 0, found {raw['points']}.")
        if is_manual:
            manual.append(_manual(raw, where, source))
            continue
        if raw["check"] not in exercise.checks:
            raise RubricError(f"{source}: {where}: unknown check {raw['check']!r}; expected one "
                              f"of {', '.join(exercise.checks)} ({exercise.name}'s checks) or "
                              f"{MANUAL!r} (graded by a person).")
        visibility = raw.get("visibility", "visible")
        if visibility not in VISIBILITIES:
            raise RubricError(f"{source}: {where}: 'visibility' must be one of "
                              f"{', '.join(VISIBILITIES)}, found {visibility!r}.")
        check = exercise.checks[raw["check"]]
        limit = float(raw.get("time_limit", check.time_limit or default_limit))
        if limit <= 0:
            raise RubricError(f"{source}: {where}: 'time_limit' must be positive, found {limit}.")
        params = _params(exercise.checks[raw["check"]], raw.get("params") or {}, where, source)
        items.append(Item(raw["id"], raw["title"], float(raw["points"]), raw["check"], params,
                          visibility, limit))
    if not items:
        raise RubricError(f"{source}: every item is {MANUAL!r}; a rubric needs at least one "
                          "autograded item.")
    sections = {key: parse_section(data.get(key), folder, source)
                for key, parse_section in exercise.rubric_sections.items()}
    return Rubric(items, data.get("title", exercise.title), default_limit,
                  data.get("heldout_seed"), source, exercise, sections, manual,
                  late_mod.parse(data.get("late"), source))


def _manual(raw: dict, where: str, source: str) -> ManualItem:
    """A `check: manual` item, validated: a prompt, and lines a TA can tick."""
    visibility = raw.get("visibility", "visible")
    if visibility not in VISIBILITIES:
        raise RubricError(f"{source}: {where}: 'visibility' must be one of "
                          f"{', '.join(VISIBILITIES)}, found {visibility!r}.")
    if visibility == "hidden":
        raise RubricError(f"{source}: {where}: a manual item is asked of students, so it cannot "
                          "be 'hidden'; to show its grade only later, make it after_due_date or "
                          "after_published.")
    if not raw["prompt"].strip():
        raise RubricError(f"{source}: {where}: 'prompt' is empty; write the question students answer.")
    lines = []
    for index, line in enumerate(raw.get("lines") or []):
        at = f"{where}: lines[{index}]"
        if not isinstance(line, dict):
            raise RubricError(f"{source}: {at}: expected a mapping with text and points, "
                              f"found {line!r}.")
        check_keys(line, MANUAL_LINE, at, source)
        if abs(line["points"]) > raw["points"]:
            raise RubricError(f"{source}: {at}: 'points' {line['points']:g} is more than the "
                              f"item's {raw['points']:g}.")
        lines.append(Line(line["text"], float(line["points"])))
    return ManualItem(raw["id"], raw["title"], float(raw["points"]), raw["prompt"], tuple(lines),
                      visibility)


def _exercise(data: dict, folder: Path, source: str) -> exercise_mod.Exercise:
    """The exercise the rubric names, found in the kit or in its exercise_path."""
    for key in ("exercise", "exercise_path"):
        if key in data and not isinstance(data[key], str):
            raise RubricError(f"{source}: top level: {key!r} must be a string "
                              f"({TOP_LEVEL[key][2]}), found {data[key]!r}.")
    path = [folder / Path(data["exercise_path"]).expanduser()] if "exercise_path" in data else []
    if path and not path[0].is_dir():
        raise RubricError(f"{source}: exercise_path: expected a folder holding the exercise's "
                          f"package, found no folder {path[0]}.")
    try:
        return exercise_mod.load(data.get("exercise", exercise_mod.DEFAULT), path)
    except RubricError as exc:
        raise RubricError(f"{source}: {exc}") from None


def _params(declared: exercise_mod.Check, given: dict, where: str, source: str) -> dict:
    check_keys(given, {k: (kind, False, desc) for k, (kind, _, desc) in declared.params.items()},
                f"{where}: params", source)
    params = {k: default for k, (_, default, _) in declared.params.items()}
    params.update(given)
    problem = declared.validate(params) if declared.validate else None
    if problem:
        raise RubricError(f"{source}: {where}: {problem}.")
    return params


def load(path: str | Path) -> Rubric:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RubricError(f"{path}: cannot read the rubric ({exc}).") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise RubricError(f"{path}: not valid YAML{at}: {getattr(exc, 'problem', exc)}.") from None
    return parse(data, str(path))


def public_copy(data: dict, exercise: exercise_mod.Exercise | None = None) -> dict:
    """The rubric students may see: every autograded item that is not visible dropped, with its
    parameters (thresholds, step budgets) and the `heldout_seed` that hides its data; what
    its exercise's sections hold for the instructor only (Exercise.public_sections).
    `exercise`: the rubric's, when it is kept outside the kit."""
    public = copy.deepcopy(data)
    # manual items stay whatever their visibility: students answer them (it says when the
    # grade is shown)
    public["items"] = [i for i in public["items"] if i.get("visibility", "visible") == "visible"
                       or i.get("check") == MANUAL]
    public.pop("heldout_seed", None)
    public.pop("exercise_path", None)  # the instructor's folder means nothing elsewhere
    if isinstance(public.get("late"), dict):  # the due date is everyone's, extensions are not
        public["late"].pop("extensions", None)
    exercise = exercise or exercise_mod.load(data.get("exercise", exercise_mod.DEFAULT))
    if exercise.public_sections:
        exercise.public_sections(public)
    calibration = public.get("calibration")
    if isinstance(calibration, dict):  # measurements of hidden items stay private too
        shown = {i["id"] for i in public["items"]}
        for key in ("measured", "slowest_seconds"):
            if isinstance(calibration.get(key), dict):
                calibration[key] = {k: v for k, v in calibration[key].items() if k in shown}
    return public
