"""The rubric: one declared schema, read with yaml.safe_load and validated once.

A rubric file has `schema_version`, optional `time_limit` (default seconds per item)
and `items`; each item declares its id, title, points, the check it runs with that
check's parameters, a visibility (Gradescope's names) and optionally its own time limit.
Each check declares its parameters, their defaults and what one type cannot say about
them once, in the checks' registry (checks.REGISTRY); the rubric validates against it.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .checks import REGISTRY
from .cifar10 import MD5 as OFFICIAL_CIFAR10_MD5
from .errors import RubricError

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
    "data": (dict, False, "the images the course grades on (default: the synthetic set)"),
    "weights": (dict, False, "the VGG16 weights file the course grades with (default: "
                             "$GRADER_WEIGHTS, else stand-in weights)"),
}
DATA_KINDS = ("synthetic", "cifar10")

DATA = {
    "kind": (str, True, f"one of {', '.join(DATA_KINDS)}"),
    "path": (str, False, "cifar10: the archive or extracted folder, relative to the rubric's "
                         "folder (default: downloaded into the cache)"),
    "md5": (str, False, "cifar10: the archive's expected MD5 (default: the official one)"),
}
WEIGHTS = {
    "path": (str, False, "the .npz file, relative to the rubric's folder"),
    "sha256": (str, False, "its SHA-256: any other weights file is refused"),
}
ITEM = {
    "id": (str, True, "unique name of the item (letters, digits, _ and -)"),
    "title": (str, True, "one line shown to students"),
    "points": ((int, float), True, "points for a full pass (>= 0)"),
    "check": (str, True, "which check runs: one of CHECK_PARAMS"),
    "params": (dict, False, "the check's parameters"),
    "visibility": (str, False, f"one of {', '.join(VISIBILITIES)} (default visible)"),
    "time_limit": ((int, float), False, "seconds this item may take (positive)"),
}
# check name: {param: (type, default, description)}, read from the checks' registry
CHECK_PARAMS: dict[str, dict[str, tuple[Any, Any, str]]] = {
    name: check.params for name, check in REGISTRY.items()}


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
    title: str = "Transfer learning with a frozen VGG16"
    time_limit: float = 120.0
    heldout_seed: int | None = None
    source: str = "<rubric>"
    data: dict = field(default_factory=lambda: {"kind": "synthetic"})
    """kind, and for cifar10 optionally path (absolute once parsed) and md5"""
    weights: dict = field(default_factory=dict)
    """optionally path (absolute once parsed) and sha256"""

    @property
    def max_points(self) -> float:
        return sum(item.points for item in self.items)

    def select(self, include_hidden: bool) -> list[Item]:
        return [i for i in self.items if include_hidden or i.visibility == "visible"]


def _type_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join({int: "integer", float: "number", str: "string", list: "list",
                        dict: "mapping", bool: "boolean"}[k] for k in kinds)


def _check_keys(mapping: dict, schema: dict, where: str, source: str) -> None:
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
    _check_keys(data, TOP_LEVEL, "top level", source)
    if data["schema_version"] != SCHEMA_VERSION:
        raise RubricError(f"{source}: schema_version {data['schema_version']} is not supported; "
                          f"this grader reads version {SCHEMA_VERSION}.")
    default_limit = float(data.get("time_limit", 120))
    if default_limit <= 0:
        raise RubricError(f"{source}: 'time_limit' must be positive, found {default_limit}.")
    if not data["items"]:
        raise RubricError(f"{source}: 'items' is empty; a rubric needs at least one item.")
    items, seen = [], set()
    for index, raw in enumerate(data["items"]):
        where = f"items[{index}]"
        if not isinstance(raw, dict):
            raise RubricError(f"{source}: {where}: expected a mapping, found {raw!r}.")
        _check_keys(raw, ITEM, where, source)
        where = f"item {raw['id']!r}"
        if not raw["id"] or not all(c.isalnum() or c in "_-" for c in raw["id"]):
            raise RubricError(f"{source}: {where}: id may hold only letters, digits, _ and -.")
        if raw["id"] in seen:
            raise RubricError(f"{source}: {where}: the id is used twice; ids must be unique.")
        seen.add(raw["id"])
        if raw["points"] < 0:
            raise RubricError(f"{source}: {where}: 'points' must be >= 0, found {raw['points']}.")
        if raw["check"] not in CHECK_PARAMS:
            raise RubricError(f"{source}: {where}: unknown check {raw['check']!r}; expected one "
                              f"of {', '.join(CHECK_PARAMS)}.")
        visibility = raw.get("visibility", "visible")
        if visibility not in VISIBILITIES:
            raise RubricError(f"{source}: {where}: 'visibility' must be one of "
                              f"{', '.join(VISIBILITIES)}, found {visibility!r}.")
        limit = float(raw.get("time_limit", default_limit))
        if limit <= 0:
            raise RubricError(f"{source}: {where}: 'time_limit' must be positive, found {limit}.")
        params = _params(raw["check"], raw.get("params") or {}, where, source)
        items.append(Item(raw["id"], raw["title"], float(raw["points"]), raw["check"], params,
                          visibility, limit))
    return Rubric(items, data.get("title", Rubric.title), default_limit,
                  data.get("heldout_seed"), source, *_data_and_weights(data, source))


def _hex(value: str, length: int) -> bool:
    return len(value) == length and all(c in "0123456789abcdef" for c in value.lower())


def _data_and_weights(data: dict, source: str) -> tuple[dict, dict]:
    """The validated `data` and `weights` sections, paths made absolute against the
    rubric's folder (a rubric read from a string resolves them against the current one)."""
    folder = Path(source).parent if source and not source.startswith("<") else Path(".")
    setting = dict(data.get("data") or {"kind": "synthetic"})
    _check_keys(setting, DATA, "data", source)
    if setting["kind"] not in DATA_KINDS:
        raise RubricError(f"{source}: data: 'kind' must be one of {', '.join(DATA_KINDS)}, "
                          f"found {setting['kind']!r}.")
    if setting["kind"] == "synthetic" and set(setting) - {"kind"}:
        raise RubricError(f"{source}: data: the synthetic set takes no path or md5; remove "
                          f"{', '.join(sorted(set(setting) - {'kind'}))}.")
    if "md5" in setting and not _hex(setting["md5"], 32):
        raise RubricError(f"{source}: data: 'md5' must be 32 hexadecimal digits, found "
                          f"{setting['md5']!r}.")
    if "path" in setting:
        setting["path"] = str((folder / Path(setting["path"]).expanduser()).resolve())
    weights = dict(data.get("weights") or {})
    _check_keys(weights, WEIGHTS, "weights", source)
    if "sha256" in weights and not _hex(weights["sha256"], 64):
        raise RubricError(f"{source}: weights: 'sha256' must be 64 hexadecimal digits, found "
                          f"{weights['sha256']!r}.")
    if "path" in weights:
        weights["path"] = str((folder / Path(weights["path"]).expanduser()).resolve())
    return setting, weights


def _params(check: str, given: dict, where: str, source: str) -> dict:
    declared = REGISTRY[check]
    _check_keys(given, {k: (kind, False, desc) for k, (kind, _, desc) in declared.params.items()},
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


def public_copy(data: dict) -> dict:
    """The rubric students may see: every item that is not visible dropped, with its
    parameters (thresholds, step budgets) and the `heldout_seed` that hides its data."""
    public = copy.deepcopy(data)
    public["items"] = [i for i in public["items"] if i.get("visibility", "visible") == "visible"]
    public.pop("heldout_seed", None)
    for section in ("data", "weights"):  # the instructor's paths mean nothing elsewhere
        if isinstance(public.get(section), dict):
            public[section].pop("path", None)
    # Students download the official archive: a rebuilt archive's MD5 would refuse it.
    if isinstance(public.get("data"), dict) and public["data"].get("md5", "").lower() != OFFICIAL_CIFAR10_MD5:
        public["data"].pop("md5", None)
    calibration = public.get("calibration")
    if isinstance(calibration, dict):  # measurements of hidden items stay private too
        shown = {i["id"] for i in public["items"]}
        for key in ("measured", "slowest_seconds"):
            if isinstance(calibration.get(key), dict):
                calibration[key] = {k: v for k, v in calibration[key].items() if k in shown}
    return public
