"""The grading engine: the one path `grader check`, `grader batch` and the Gradescope
entry point all take (`grade_submission`).

The submission runs in a sandboxed worker process (worker.py, sandbox.py) that only
collects observations; this process judges them (the exercise's checks). The worker talks over an
authenticated channel (channel.py) and must follow the protocol

    ready, then for each item in order: start, result or error; then done

with `flag` frames allowed anywhere. Each item has a time limit that really stops it:
the sandbox is killed and a new worker carries on with the items that are left, so a
crash or a timeout costs only the item that was running, and every restart follows an
item's outcome. Anything else (an unsigned or forged frame, a frame out of order, a
stall or an exit between items, `done` with items left) is a protocol violation: the
item running and those not yet graded score 0 with status `integrity`, are never
retried, and the submission is flagged for a person to review. The whole grading of a
submission ends within its startup limit plus the sum of its items' limits plus
BUDGET_MARGIN seconds, whatever it does. Judging has its own limit: JUDGE_LIMIT seconds
per item, past which the item scores 0 with status `timeout`.

The engine knows an exercise only through grader/exercise.py: its checks' registry, and
grading inputs that say what the worker may hold (`for_worker`), what each item is given
when it starts (`asked`) and what each judge sees (`judge_context`).

The package by concern: `results` (what grading produces), `seeds` (the private seed
and each item's), `process` (one sandboxed worker process), `protocol` (following a
worker frame by frame); this module orchestrates them. Their public names are
importable from here.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from .. import channel, events, provenance, sandbox as sandbox_mod
from ..errors import SubmissionError
from ..exercise import SECOND_PART, Exercise, GradingInputs, WorkerInputs
from ..job import Job, JobItem
from ..rubric import Item, Rubric
from . import seeds as seeds_mod
from .seeds import DEFAULT_HELDOUT_SEED, grading_seed, item_seed, private_seed
from .process import Standby, _Worker, _prepare_work_dir, _readable, worker_env
from .protocol import GAP_LIMIT, MAX_NOTES, Phase, Stop, _run_worker
from .results import (FLAG_KINDS, Collection, Failed, Flag, ItemResult, Observed, Outcome,
                      Report)

if TYPE_CHECKING:  # a value the caller read: engine imports no submission code at start
    from ..submission import Submission

__all__ = ["BUDGET_MARGIN", "JUDGE_LIMIT", "STARTUP_LIMIT", "Standby", "collect", "collect_submission", "grade",
           "grade_submission", "judge", "new_work_dir", "report", "unreadable_report",
           "DEFAULT_HELDOUT_SEED", "grading_seed", "item_seed", "private_seed", "worker_env",
           "GAP_LIMIT", "MAX_NOTES",
           "Phase", "Stop", "FLAG_KINDS", "Collection", "Failed", "Flag", "ItemResult",
           "Observed", "Outcome", "Report", "Exercise", "GradingInputs", "WorkerInputs"]

STARTUP_LIMIT = 120.0  # seconds to import TensorFlow and the submission
BUDGET_MARGIN = 30.0  # seconds on top of the startup and item limits, for restarts and exits
JUDGE_LIMIT = 60.0
"""seconds judging one item may take in this process (an honest item's judge takes under 2 s)"""


def collect(module_file: Path, submission_dir: Path | None, items: list[Item],
            inputs: WorkerInputs | GradingInputs | Callable[[], WorkerInputs], work_dir: Path,
            exercise: Exercise, *,
            sandbox: sandbox_mod.Sandbox | None = None, threads: int | None = None,
            tail_bytes: int = 8192, startup_limit: float = STARTUP_LIMIT,
            seed: int = DEFAULT_HELDOUT_SEED, item_seeds: dict[str, int] | None = None,
            progress: Callable[[str], None] | None = None,
            standby: Standby | None = None) -> Collection:
    """Run the collect halves of `items` in sandboxed worker processes. The worker sees
    `submission_dir` read-only (None: only the module). A `standby` whose work folder is
    `work_dir` (collect_submission checks that it serves this submission) is the first
    worker, TensorFlow already imported."""
    sandbox = sandbox or sandbox_mod.default()
    work_dir = Path(work_dir).resolve()
    if standby is not None and standby.run_dir.resolve() != work_dir:
        standby.discard()
        standby = None
    scratch = standby.scratch if standby is not None else _prepare_work_dir(work_dir, sandbox)
    try:
        return _collect(module_file, submission_dir, items, inputs, work_dir, exercise, scratch,
                        sandbox, threads, tail_bytes, startup_limit, seed, item_seeds, progress,
                        standby)
    finally:
        if sandbox.user and sandbox.scratch_mb:  # what the submission wrote goes with it
            sandbox_mod.release_scratch(scratch)


def _collect(module_file, submission_dir, items, inputs, work_dir: Path, exercise: Exercise,
             scratch: Path,
             sandbox: sandbox_mod.Sandbox, threads, tail_bytes, startup_limit, seed, item_seeds,
             progress, standby: Standby | None = None) -> Collection:
    # The worker sees its own copy of the module, so nothing else of its folder shows.
    (work_dir / "module").mkdir(exist_ok=True)
    module_file = Path(shutil.copy(Path(module_file), work_dir / "module" / Path(module_file).name))
    # What the kept source reaches for, read before any of it runs (a flag, never a score).
    source_flags = {Flag(provenance.KIND, detail): None for detail in provenance.scan_file(module_file)}
    submission_dir = Path(submission_dir).resolve() if submission_dir else module_file.parent
    item_seeds = item_seeds or seeds_mod.item_seeds(seed, items)
    _readable(module_file.parent)
    env = worker_env(scratch, threads)
    # an exercise kept outside the kit is imported by the worker from where it is: its
    # package alone is shown, not the folder around it (solutions, submissions)
    read_only = [module_file.parent, submission_dir,
                 *[Path(p) / exercise.name for p in exercise.search_path]]
    # The first worker imports TensorFlow while the inputs are made and written; so does
    # the one that will run the second parts, while the first one works.
    # What all of this submission's workers may send together (restarts included).
    # A standby started as this worker would be: it is the first one (its budget counts
    # for all of this submission's workers).
    if standby is not None:
        budget, first = standby.budget, standby.take()
    else:
        budget = channel.Budget()
        first = _Worker(sandbox, read_only, scratch, env, tail_bytes, budget)
    spare = _Worker(sandbox, read_only, scratch, env, tail_bytes, budget) \
        if any(i.check in exercise.checks.second_parts for i in items) else None
    try:
        if callable(inputs):
            inputs = inputs()
        if hasattr(inputs, "for_worker"):
            inputs = inputs.for_worker()
        blob = inputs.to_bytes()
    except BaseException:
        first.kill()
        if spare is not None:
            spare.kill()
        raise
    result = Collection({})
    flags: dict[Flag, None] = dict(source_flags)
    tail = b""
    start = time.monotonic()
    budget_end = start + startup_limit + sum(i.time_limit for i in items) + BUDGET_MARGIN

    def run(job_items: list[Item], outcomes: dict, until: float, worker=None, notes=None,
            on_start=None) -> Stop:
        nonlocal tail
        job = Job(str(module_file), str(submission_dir), str(scratch), exercise.name,
                  exercise.search_path,
                  tuple(JobItem(i.id, i.check, i.params, item_seeds[i.id]) for i in job_items))
        worker = worker or _Worker(sandbox, read_only, scratch, env, tail_bytes, budget)
        worker.send_job(job, blob)
        stop = _run_worker(worker, job_items, outcomes, flags, startup_limit, until, inputs.asked,
                           on_start, notes)
        if sandbox.confined and (strays := worker.strays()):
            flags[Flag("processes_left", f"{strays} process(es) still running at the end")] = None
        # Measured from the sandbox's side, whatever the audit hook saw: children (an
        # unaudited fork included), and FIFOs, sockets and devices in /tmp and scratch.
        if children := worker.children():
            flags[Flag("subprocess", children)] = None
        left = worker.special_files_in_tmp()
        worker.kill()
        for where, what in left + [("scratch/" + p, w) for p, w in sandbox_mod.special_files(scratch)]:
            flags[Flag("special_file", f"left {what}: {where}")] = None
        tail = (tail + worker.tail)[-tail_bytes:]
        return stop

    try:
        remaining, stop = exercise.checks.run_order(items), Stop.CARRY_ON
        while remaining:
            stop = run(remaining, result.outcomes, budget_end, first, result.notes, progress)
            first = None
            if stop is Stop.IMPORT_FAILED:
                result.import_failed = True
            remaining = [i for i in remaining if i.id not in result.outcomes]
            if stop is not Stop.CARRY_ON and remaining:  # a violation, the budget: no retry
                for item in remaining:
                    result.outcomes[item.id] = Failed("skipped", "not run")
                break
        # The trusted steps on what the first parts left (the checkpoints a first part
        # wrote, before a second part can touch them), then the second parts (restoring a
        # checkpoint, say), each in a fresh worker that inherits only the scratch folder, so
        # nothing the first part held in memory can reach them.
        _finish(items, result.outcomes, scratch, exercise, flags)
        for item in items:
            first_part = result.outcomes.get(item.id)
            if item.check not in exercise.checks.second_parts or not isinstance(first_part, Observed):
                continue
            if stop is Stop.VIOLATION:
                result.outcomes[item.id] = Failed("integrity", "not graded: the protocol was broken "
                                                  "before the item's second part ran", first_part.seconds)
                continue
            second: dict[str, Outcome] = {}
            part = replace(item, check=item.check + SECOND_PART)
            run([part], second, time.monotonic() + startup_limit + item.time_limit + BUDGET_MARGIN,
                spare)
            spare = None
            _finish([part], second, scratch, exercise, flags)
            outcome = second.get(item.id, Failed("skipped", "not run"))
            # Each part's trusted step wrote its own keys over the worker's; a key both parts
            # hold would let one part's worker stand in for the other part's trusted step.
            both = set(first_part.observation) & set(outcome.observation) \
                if isinstance(outcome, Observed) and isinstance(outcome.observation, dict) \
                and isinstance(first_part.observation, dict) else None
            if both == set():
                result.outcomes[item.id] = Observed({**first_part.observation, **outcome.observation},
                                                    first_part.seconds + outcome.seconds)
            elif isinstance(outcome, Observed):
                shown = ", ".join(sorted(map(str, both))[:4]) if both else ""
                result.outcomes[item.id] = Failed(
                    "failed", "the observations were malformed" + (
                        f": both parts reported {shown[:200]}" if shown else ""),
                    first_part.seconds + outcome.seconds)
            else:
                result.outcomes[item.id] = Failed(outcome.status, "in a fresh process, after saving: "
                                                  + outcome.message, first_part.seconds + outcome.seconds)
    finally:
        if spare is not None:
            spare.kill()
    result.output = tail.decode("utf-8", "replace")
    result.flags = list(flags)
    return result


def _finish(items: list[Item], outcomes: dict[str, Outcome], scratch: Path, exercise: Exercise,
            flags: dict | None = None) -> None:
    """The trusted steps some checks take after the worker, here where its scratch folder
    is (reading the event files it wrote, for instance): judging needs no files after it.
    Files past the readers' bounds make the item `integrity` (and raise a flag): recorded,
    never judged on a part of them, never able to exhaust this process."""
    for item in items:
        outcome, finish = outcomes.get(item.id), exercise.checks.finish.get(item.check)
        if finish and isinstance(outcome, Observed):
            try:
                outcome.observation = finish(outcome.observation, scratch)
            except (events.Bound, MemoryError) as exc:
                why = str(exc) if isinstance(exc, events.Bound) else "more than this process's memory"
                if flags is not None:
                    flags[Flag("bounds", f"{item.id}: {why}")] = None
                outcomes[item.id] = Failed("integrity", f"not graded: the submission left {why} "
                                           "in its scratch folder, past what the grader reads",
                                           outcome.seconds)
            except Exception as exc:  # noqa: BLE001 - the files came from the submission
                outcomes[item.id] = Failed("failed", "what the submission left could not be read "
                                           f"({type(exc).__name__}: {exc})"[:500], outcome.seconds)


class _JudgingTooLong(Exception):
    pass


def _within(limit: float, function: Callable, *args):
    """function(*args), run in a thread of its own; _JudgingTooLong once `limit` seconds
    have passed without its answer. A thread cannot be killed: a judge past the limit runs
    on in the background (a daemon thread, so it never keeps the process from exiting),
    taking its share of this process's time until it ends. That is why the checks bound
    the work of every judge by the sizes of what it reads (the checks: a crafted observation
    is refused before it costs anything); this limit keeps grading going whatever slips
    past them."""
    answer: dict = {}

    def run():
        try:
            answer["value"] = function(*args)
        except BaseException as exc:  # noqa: BLE001 - raised again in the grading thread
            answer["error"] = exc

    thread = threading.Thread(target=run, name="judge", daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        raise _JudgingTooLong
    if "error" in answer:
        raise answer["error"]
    return answer["value"]


def judge(items: list[Item], outcomes: dict[str, Outcome], inputs: GradingInputs,
          exercise: Exercise, limit: float | None = None) -> list[ItemResult]:
    """Each observed item's judge, JUDGE_LIMIT (`limit`) seconds at most each: past that
    the item scores 0 with status `timeout`, as an item whose collecting ran too long."""
    limit = JUDGE_LIMIT if limit is None else limit
    results = []
    for item in items:
        outcome = outcomes.get(item.id, Failed("skipped", "not run"))
        if isinstance(outcome, Observed):
            judge_fn = exercise.checks[item.check].judge
            details: dict = {}
            try:
                # (fraction, message), or with a third element: what was measured, for people
                fraction, message, *more = _within(limit, judge_fn, outcome.observation,
                                                   inputs.judge_context(item), item.params)
                details = dict(more[0]) if more and more[0] else {}
            except _JudgingTooLong:
                results.append(ItemResult(
                    item.id, item.title, 0.0, item.points, "timeout",
                    f"judging took longer than {limit:g} s: the observations cost more to judge "
                    "than any honest run's", round(outcome.seconds, 2), item.visibility))
                continue
            except Exception as exc:  # noqa: BLE001
                # Observations (and files in scratch) came from the submission's process:
                # whatever cannot be judged scores 0, and never stops the grading.
                fraction, message = 0.0, f"the observations were malformed ({type(exc).__name__}: {exc})"[:500]
            fraction = round(float(min(max(fraction, 0.0), 1.0)), 6)
            status = "passed" if fraction == 1.0 else "partial" if fraction > 0 else "failed"
            results.append(ItemResult(item.id, item.title, round(item.points * fraction, 4),
                                      item.points, status, message, round(outcome.seconds, 2),
                                      item.visibility, details))
        else:
            results.append(ItemResult(item.id, item.title, 0.0, item.points, outcome.status,
                                      outcome.message, round(outcome.seconds, 2), item.visibility))
    return results


def report(name: str, items: list[Item], found: Collection, inputs: GradingInputs,
           rubric: Rubric, seconds: float) -> Report:
    """Judge what was collected (here, where the held-out labels are) into a report."""
    return Report(name, judge(items, found.outcomes, inputs, rubric.exercise), rubric=rubric.source,
                  seconds=round(seconds, 2), output_tail=found.output[-2000:],
                  import_failed=found.import_failed, flags=found.flags, notes=found.notes,
                  graded_on=inputs.description)


def grade(module_file: Path, rubric: Rubric, inputs: GradingInputs, *, include_hidden: bool = False,
          submission_dir: Path | None = None, work_dir: Path | None = None,
          sandbox: sandbox_mod.Sandbox | None = None, threads: int | None = None,
          name: str | None = None, startup_limit: float = STARTUP_LIMIT) -> Report:
    """Grade one prepared module file against the rubric's selected items."""
    items = rubric.select(include_hidden)
    own_dir = work_dir is None
    work_dir = Path(work_dir or tempfile.mkdtemp(prefix="grader-"))
    start = time.monotonic()
    try:
        found = collect(Path(module_file), submission_dir, items, inputs.for_worker(), work_dir,
                        rubric.exercise, sandbox=sandbox, threads=threads, startup_limit=startup_limit,
                        seed=grading_seed(rubric))
    finally:
        if own_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    return report(name or str(module_file), items, found, inputs, rubric, time.monotonic() - start)


def collect_submission(source: str | os.PathLike | Submission, items: list[Item],
                       inputs: WorkerInputs | Callable[[], WorkerInputs], exercise: Exercise, *,
                       item_seeds: dict[str, int], own_folder: bool = False, strict: bool = False,
                       sandbox: sandbox_mod.Sandbox | None = None, threads: int | None = None,
                       startup_limit: float = STARTUP_LIMIT, label: str = "",
                       progress: Callable[[str], None] | None = None,
                       standby: Standby | None = None) -> Collection:
    """Prepare one submission (.py, .ipynb, .zip or a folder, or a `submission.Submission`
    already read), collect its observations and clean up: the half of grading that runs
    submission code, here or on a cluster worker. With `own_folder` (a student checking
    their own file) the submission's folder is its file's folder; otherwise only what the
    submission itself holds is shown to it.
    A submission that cannot be read yields "skipped" outcomes with the reason (with
    `strict`, its SubmissionError is raised instead).

    A `standby` (a student's own file only) is used when it serves this submission as
    started (Standby.serves), and discarded otherwise: either way this grading ends it."""
    from ..submission import Submission, materialize, prepare

    handed = source if isinstance(source, Submission) else None  # read once by the caller
    if handed is None:
        source = Path(source).resolve() if own_folder else Path(source)  # a student's own link, theirs
    if standby is not None and not (handed is None and own_folder and source.is_file() and standby.serves(
            sandbox or sandbox_mod.default(), source.parent, exercise, threads)):
        standby.discard()
        standby = None
    work = handed.work if handed is not None else standby.root if standby is not None else \
        new_work_dir(label)
    try:
        os.chmod(work, 0o711)
        try:
            if handed is not None:
                module_file, folder = prepare(handed.module, work / "in" / "module", exercise), handed.folder
            else:
                module_file, folder = materialize(source, work, exercise)
        except SubmissionError as exc:
            if strict:
                raise
            return Collection({i.id: Failed("skipped", str(exc)) for i in items}, import_failed=True)
        if handed is None and own_folder and source.is_file():
            folder = source.resolve().parent
        _readable(work / "in")
        used, standby = standby, None
        return collect(module_file, folder, items, inputs, work / "run", exercise, sandbox=sandbox,
                       threads=threads, startup_limit=startup_limit, item_seeds=item_seeds,
                       progress=progress, standby=used)
    finally:
        if standby is not None:  # not reached: the submission could not be read
            standby.discard()
        # a Submission read by the caller is theirs to discard (its answers and code are read too)
        shutil.rmtree(work / "run" if handed is not None else work, ignore_errors=True)


def new_work_dir(label: str = "") -> Path:
    """A new private folder for grading one submission, named after its label."""
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:40]
    return Path(tempfile.mkdtemp(prefix=f"grader-{safe}-" if safe else "grader-"))


def grade_submission(source: str | os.PathLike | Submission, rubric: Rubric,
                     inputs: GradingInputs | Future, *, include_hidden: bool = True,
                     only: list[str] | None = None, name: str | None = None,
                     own_folder: bool = False, strict: bool = False,
                     sandbox: sandbox_mod.Sandbox | None = None, threads: int | None = None,
                     startup_limit: float = STARTUP_LIMIT,
                     progress: Callable[[str], None] | None = None,
                     standby: Standby | None = None) -> Report:
    """Collect and judge one submission: the one grading path of `grader check`, `grader
    batch`, the notebook checks and the Gradescope entry point (`grader batch --scheduler`
    runs the collecting half, `collect_submission`, on a cluster worker and judges here).
    `inputs` may still be in the making (a Future): the worker imports TensorFlow
    meanwhile. `only` keeps the items with these ids; `progress` hears each item start;
    a `standby` is the first worker if it serves the submission (collect_submission)."""
    items = [i for i in rubric.select(include_hidden) if only is None or i.id in only]
    start = time.monotonic()
    seeds = seeds_mod.item_seeds(grading_seed(rubric), items)

    def resolved() -> GradingInputs:
        return inputs.result() if isinstance(inputs, Future) else inputs

    found = collect_submission(source, items, lambda: resolved().for_worker(), rubric.exercise,
                               item_seeds=seeds,
                               own_folder=own_folder, strict=strict, sandbox=sandbox,
                               threads=threads, startup_limit=startup_limit, label=name or "",
                               progress=progress, standby=standby)
    return report(name or str(source), items, found, resolved(), rubric, time.monotonic() - start)


def unreadable_report(name: str, rubric: Rubric, include_hidden: bool, message: str) -> Report:
    """The report of a submission that could not be graded at all, with the reason."""
    return Report(name, [ItemResult(i.id, i.title, 0.0, i.points, "skipped", message, 0.0,
                                    i.visibility) for i in rubric.select(include_hidden)],
                  rubric=rubric.source, import_failed=True)
