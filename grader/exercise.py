"""What an exercise gives the kit, and how the kit finds one.

The engine, the worker, the rubric, the grading verbs and the packaging know exercises only
through this interface. An exercise is a package under `grader.exercises` whose module
`definition` holds `EXERCISE`, an `Exercise`: the file students hand in and the functions it must define,
its checks (each one `Check`), the extra sections its rubric may hold, and how it builds
its grading inputs (what the grading process holds, what the worker may see, what each
item is given when it starts) and the context its collect halves run in. The kit's own is
`grader/exercises/transfer_learning`; docs/adding-an-exercise.md walks through writing
another.

A rubric names its exercise (`exercise:`, default `transfer_learning`); an exercise kept
outside the kit is found through the rubric's `exercise_path:`, a folder holding the
exercise's package, which is added to `grader.exercises`' search path here and in every
worker.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

from .errors import RubricError

PUBLIC_KIT = frozenset({"grader", "grader.errors", "grader.fsutil"})
"""the kit's own modules any submission may import, unflagged"""
DEFAULT = "transfer_learning"
"""the exercise a rubric that names none is for"""
SECOND_PART = "+restore"
"""the name under which the worker knows a check's second part (Check.second_part)"""


@dataclass(frozen=True)
class Calibration:
    """How `grader calibrate` sets a check's bounds from correct and low runs."""
    kind: str
    """"range": `lower` (no points at or below) and `upper` (full points from) set apart
    from the low runs and the correct runs; "bar": one parameter, `bar`, set halfway"""
    measure: Any
    """measure(observation, judge context, params) -> the value the bounds are set on, or
    None (the context is the item's own, as its judge sees it)"""
    what: str
    """what is measured, in a message"""
    bar: str = ""
    """with kind "bar": the parameter that holds it"""
    applies: Any = None
    """applies(params) -> whether an item is calibrated (None: always)"""

    def calibrates(self, params: dict) -> bool:
        return self.applies is None or bool(self.applies(params))


@dataclass(frozen=True)
class Check:
    """One check, declared once: its two halves and everything the rubric, the engine,
    the notebook's checks and the corpus need to know about it."""
    name: str
    collect: Any
    """collect(module, context, params) -> observation: runs in the worker, beside the
    submission; returns raw answers only. A plain function (the worker notices a changed
    __code__)"""
    judge: Any
    """judge(observation, judge context, params) -> (fraction, message): runs in the
    grading process and decides"""
    params: dict = field(default_factory=dict)
    """{param: (type, default, description)}: the rubric validates items against it"""
    validate: Any = None
    """validate(params) -> a problem in one line, or None (what one type cannot say)"""
    task: str | None = None
    """the exercise function it grades first of all (None: the module as a whole), so a
    check from the notebook can run a task's items right after that task"""
    uses: tuple[str, ...] | None = None
    """the exercise functions it calls (None: it reads the whole module): a check that
    calls none of the functions a change touches gives the same verdict as before it"""
    shares: str | None = None
    """the check whose run it can observe instead of training on its own, when both run in
    one worker (its verdict must not depend on which run it observed); the engine runs it
    right after that check (Registry.run_order)"""
    finish: Any = None
    """finish(observation, scratch) -> observation: a trusted step between collecting and
    judging, run by the grading process where the worker's scratch folder is"""
    second_part: Any = None
    """the collect half of a second part, which the engine runs in a fresh worker process
    after the first part succeeded; the judge sees both parts' observations merged"""
    second_finish: Any = None
    """finish(observation, scratch) for the second part's own observation, as `finish` is
    for the first's (which runs before the second part starts)"""
    heldout: bool = False
    """its collect half is given the held-out questions when it starts (the exercise's
    WorkerInputs.asked decides what that means)"""
    calibration: Calibration | None = None
    """how `grader calibrate` sets its bounds (None: it has none)"""
    time_limit: float | None = None
    """seconds an item of this check may take when the item sets none (None: the rubric's
    time_limit)"""
    describe: Any = None
    """describe(params) -> what the item measures, for the handout's table (None: its title)"""


def at_least_one(*keys):
    """A rule: each of these counts is 1 or more."""
    def rule(params):
        bad = next((k for k in keys if params[k] < 1), None)
        return None if bad is None else f"params.{bad} must be >= 1, found {params[bad]}"
    return rule


def positive(key):
    """A rule: this value is above 0."""
    return lambda params: None if params[key] > 0 else f"params.{key} must be positive, found {params[key]}"


def rules(*found):
    """A Check's validate: the first problem any of these rules finds."""
    return lambda params: next((problem for rule in found if (problem := rule(params))), None)


class Registry(dict):
    """An exercise's checks by name, with the views the engine and the worker read."""

    def __init__(self, checks: list[Check]):
        super().__init__((c.name, c) for c in checks)
        self.checks = {name: (c.collect, c.judge) for name, c in self.items()}
        self.finish = {**{name: c.finish for name, c in self.items() if c.finish},
                       **{name + SECOND_PART: c.second_finish for name, c in self.items()
                          if c.second_finish}}
        self.second_parts = {name: c.second_part for name, c in self.items() if c.second_part}
        self.heldout = frozenset(name for name, c in self.items() if c.heldout)
        self.shares = {name: c.shares for name, c in self.items() if c.shares}
        self.task_of = {name: c.task for name, c in self.items()}
        self.uses = {name: c.uses for name, c in self.items()}

    def collectors(self) -> dict[str, Any]:
        """What the worker runs, by the name the engine sends: each check's collect half,
        and its second part under name + SECOND_PART."""
        return {**{name: c.collect for name, c in self.items()},
                **{name + SECOND_PART: fn for name, fn in self.second_parts.items()}}

    def run_order(self, items: list) -> list:
        """The items in the order a worker runs them: the rubric's, except that an item
        that shares another's run comes right after it."""
        checks = {item.check for item in items}
        waiting = [i for i in items if self.shares.get(i.check) in checks]
        ordered = [i for i in items if i not in waiting]
        for item in waiting:
            after = max(k for k, other in enumerate(ordered) if other.check == self.shares[item.check])
            ordered.insert(after + 1, item)
        return ordered


class WorkerInputs(Protocol):
    """What the collecting side holds (it may travel to a cluster's machines, so it
    pickles): never anything only the judge may know."""

    def to_bytes(self) -> bytes:
        """An uncompressed npz the worker reads after its job (`Exercise.worker_context`)."""

    def asked(self, item) -> bytes:
        """An uncompressed npz the worker is given when `item` starts (`context.given`); a
        check's second part is asked as its item with the check's name + SECOND_PART."""


class GradingInputs(Protocol):
    """Everything the checks need, held by the grading process."""
    description: str

    def for_worker(self) -> WorkerInputs:
        """What the collecting side may hold."""

    def judge_context(self, item) -> Any:
        """What `item`'s judge half sees."""

    def fingerprint(self) -> str:
        """A digest of everything grading reads, so a batch regrades when it changes."""


@dataclass
class Measured:
    """What calibration grades the corpus on, loaded once (Exercise.calibration)."""
    inputs: Callable[[Any], GradingInputs]
    """inputs(rubric) -> the grading inputs for that rubric (its heldout_seed set per run)"""
    description: str
    """the data and weights, for the log"""
    provenance: dict
    """what the rubric's `calibration` section records of them"""
    sections: Callable[[Path], dict]
    """sections(rubric_path) -> the rubric sections naming what was measured on, when the
    command line chose it (the bounds hold for that)"""


@dataclass(frozen=True, eq=False)
class Exercise:
    """One exercise, as the kit sees it."""
    name: str
    """its package's name under grader.exercises"""
    title: str
    module_name: str
    """what students hand in (module_name.py or .ipynb)"""
    contract: Mapping[str, list[str]]
    """the functions the module defines, each with the parameters the grader passes by name"""
    checks: Registry
    grading_inputs: Callable[..., GradingInputs]
    """grading_inputs(rubric, options): the inputs for grading with this rubric, with the
    command line's overrides (options.DataOptions: `--data KIND [PATH]`, `--weights FILE`,
    `--no-verify`)"""
    worker_context: Callable[[dict, Path, Path], Any]
    """worker_context(arrays, scratch, submission_dir): what the collect halves see, built
    in the worker from WorkerInputs.to_bytes's arrays; its `given(arrays)` takes each
    item's WorkerInputs.asked"""
    check_options: Callable[[Any], None] | None = None
    """check_options(options): raises KitError in one line when the command line's
    DataOptions cannot apply to this exercise, before anything starts"""
    rubric_sections: Mapping[str, Callable[[Any, Path, str], Any]] = field(default_factory=dict)
    """extra top-level rubric keys: key -> parse(value or None, the rubric's folder, source)
    -> the validated value (raising RubricError), kept in Rubric.sections"""
    public_sections: Callable[[dict], None] | None = None
    """public_sections(data): removes in place what students' copy of a rubric must not
    hold of these sections (the instructor's paths)"""
    shipped: Callable[..., tuple] | None = None
    """shipped(rubric, options) -> ({name in the package: bytes or a
    file}, {rubric section: value}): the files a Gradescope package carries for grading
    and the rubric sections that point at them (see grader/verbs/gradescope.py)"""
    public_modules: tuple[str, ...] = ()
    """modules of its package a student's own code may import, unflagged (data loaders for
    the handout's experiments); they must import nothing else of the kit but errors and
    fsutil, and the package's __init__ nothing at all"""
    student_modules: tuple[str, ...] = ()
    """modules of its package that students' commands load by name (`grader train`): the
    student wheel carries them with what they import"""
    handout: Callable[[], Any] | None = None
    """handout() -> the module `grader generate` builds the notebooks and the student bundle
    from (TITLE, intro(), BEFORE, CHECK_SETUP, EXPERIMENTS_MD, EXPERIMENTS, SCRATCH_MD,
    SCRATCH_QUESTION_MD, SCRATCH, EVIDENCE, question_md, grading_section, CHECK_ALL_MD,
    answers_file, STUDENT_README, WRITTEN: see the kit's own, exercises/transfer_learning/
    handout.py); None: the exercise has no generated handout"""
    calibration: Callable[..., Any] | None = None
    """calibration(rubric, options) -> Measured: what `grader calibrate` grades the corpus
    on, loaded once; None: the exercise's bounds are set by hand"""
    commands: Mapping[str, str] = field(default_factory=dict)
    """commands of its own on the command line (`grader train`): name -> a module of its
    package holding HELP, add_arguments(parser) and execute(args), as a verb does"""
    search_path: tuple[str, ...] = ()
    """folders outside the kit this exercise was found in (a rubric's exercise_path)"""

    def __reduce__(self):  # travels to Dask's machines by name, like a module
        return load, (self.name, self.search_path)

    @property
    def package(self) -> str:
        return f"{__package__}.exercises.{self.name}"

    def public_names(self) -> frozenset[str]:
        """The kit's modules a submission may import unflagged: the package, its errors and
        fsutil, and the exercise's public modules (also as `grader.NAME`, the spelling
        `from grader import synthetic` gives, see grader/__init__.py)."""
        from . import _EARLIER

        return PUBLIC_KIT | {self.package, f"{__package__}.exercises"} | {
            f"{self.package}.{module}" for module in self.public_modules} | {
            f"{__package__}.{module}" for module in self.public_modules
            if _EARLIER.get(module) == f"exercises.{self.name}.{module}"}


def _extend(search_path) -> None:
    from . import exercises

    for folder in search_path:
        if folder not in exercises.__path__:
            exercises.__path__.append(folder)


def load(name: str = DEFAULT, search_path=()) -> Exercise:
    """The exercise `name` (a package of grader.exercises, looked for also in the folders
    of `search_path`)."""
    search_path = tuple(str(Path(f).resolve()) for f in search_path)
    if not name.isidentifier():
        raise RubricError(f"exercise: expected the name of an exercise package, found {name!r}.")
    _extend(search_path)
    try:
        module = importlib.import_module(f"{__package__}.exercises.{name}.definition")
    except ModuleNotFoundError as exc:
        if exc.name and not f"{__package__}.exercises.{name}.definition".startswith(exc.name):
            raise
        where = " or ".join([str(Path(__file__).parent / "exercises")] + list(search_path))
        raise RubricError(f"exercise: expected a package {name!r} in {where}, found none; "
                          "check the rubric's exercise and exercise_path.") from None
    found = getattr(module, "EXERCISE", None)
    if not isinstance(found, Exercise):
        raise RubricError(f"exercise {name!r}: expected its module definition to hold EXERCISE "
                          "(a grader.exercise.Exercise), found none.")
    if found.search_path != search_path and search_path:
        found = replace(found, search_path=search_path)
    return found
