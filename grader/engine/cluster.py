"""`grader batch SUBMISSIONS --out DIR --scheduler ADDRESS`: collecting on a Dask cluster.

Each submission travels to a Dask worker as bytes, with the rubric items and the seeds
they run under. The worker runs `engine.collect_submission`, which is the same sandbox
as a local batch, applied on the worker's own machine. Only the observations come back.

Judging happens here, on the TA's machine: the held-out labels never leave it, and the
gradebook is written only here. The grading inputs a worker needs, which are everything
but those labels (`engine.WorkerInputs`), are sent once, as a task that workers share
(and that the scheduler recomputes if every worker holding it dies).

Faults are Dask's to handle. A worker that dies mid-submission (kill -9, or a lost
machine) has its submission rescheduled on another worker. After
`distributed.scheduler.allowed-failures` + 1 worker deaths Dask gives up on it
(KilledWorker); since Dask also counts deaths against tasks that only waited on the dead
worker, the submission is sent once more (RESUBMITS) with a fresh count, then recorded
as failed with the reason. It never stalls the batch.

`--scheduler local:N` starts a LocalCluster of N single-threaded worker processes.
Dask is an optional dependency (`pip install 'vgg-transfer-kit[cluster]'`), imported only
here.
"""
from __future__ import annotations

import functools
import os
import pickle
import socket
import sys
import tempfile
import time
import warnings
from pathlib import Path

from .. import engine, sandbox as sandbox_mod
from . import seeds as seeds_mod
from ..errors import KitError, SubmissionError


def connect(scheduler: str):
    """(client, cluster or None) for `--scheduler`: `local:N` or a scheduler address."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise KitError("--scheduler needs Dask, which is not installed: pip install "
                       "'vgg-transfer-kit[cluster]' (or dask[distributed]) and run again.") from None
    if scheduler.startswith("local:"):
        try:
            workers = int(scheduler.split(":", 1)[1])
            assert workers >= 1
        except (ValueError, AssertionError):
            raise KitError(f"--scheduler {scheduler}: expected local:N with N >= 1 worker "
                           "processes, or a scheduler address such as tcp://host:8786.") from None
        import dask
        dask.config.set({"distributed.scheduler.worker-saturation": 1.0})
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        return Client(cluster), cluster
    try:
        return Client(scheduler, timeout="30s"), None
    except (OSError, TimeoutError, ValueError) as exc:
        raise KitError(f"--scheduler {scheduler}: expected a running Dask scheduler there, could not "
                       f"connect ({type(exc).__name__}: {exc}). Start one with `dask scheduler`, "
                       "or use --scheduler local:N.") from None


@functools.lru_cache(maxsize=None)
def _sandbox(memory_mb: int, network: bool, user: str, scratch_mb: int) -> sandbox_mod.Sandbox:
    """The strongest sandbox this worker's machine allows, probed once per worker process;
    what it gives up goes to the worker's log."""
    sandbox = sandbox_mod.choose(memory_mb, network, user, scratch_mb=scratch_mb)
    for notice in sandbox.notices:
        print(f"grader notice on {socket.gethostname()}: {notice}", file=sys.stderr, flush=True)
    return sandbox


class Shipped:
    """The worker inputs on their way to a Dask machine. They are instances of the
    exercise's own classes, which a machine can unpickle only once the exercise is loaded
    (an exercise outside the kit extends grader.exercises' search path): the exercise
    travels first, by name, and the inputs as bytes unpickled after it."""

    def __init__(self, exercise: engine.Exercise, inputs: engine.WorkerInputs):
        self.exercise, self.blob = exercise, pickle.dumps(inputs)

    def open(self) -> engine.WorkerInputs:
        return pickle.loads(self.blob)


def collect_remote(name: str, payload: bytes, items, shipped: Shipped, item_seeds: dict, *, student: str, memory_mb: int, network: bool, user: str,
                   scratch_mb: int, startup_limit: float, threads: int | None) -> dict:
    """The Dask task: collect one submission on this worker's machine, sandboxed."""
    from distributed import get_worker

    start = time.monotonic()
    worker = get_worker()
    threads = threads or max(1, (os.cpu_count() or 1) // max(1, worker.state.nthreads))
    with tempfile.TemporaryDirectory(prefix="grader-payload-") as tmp:
        path = Path(tmp) / name
        path.write_bytes(payload)
        found = engine.collect_submission(
            path, items, shipped.open(), shipped.exercise, item_seeds=item_seeds,
            sandbox=_sandbox(memory_mb, network, user, scratch_mb),
            threads=threads, startup_limit=startup_limit, label=student)
    return {"collection": found, "host": socket.gethostname(), "worker": worker.address,
            "seconds": time.monotonic() - start}


RESUBMITS = 1
"""Rounds of `allowed-failures` + 1 worker deaths a submission gets after its first."""


def _hold(value):
    return value


def results(client, todo, rubric, inputs: engine.GradingInputs, *, memory_mb: int, network: bool,
            user: str, startup_limit: float, threads: int | None = None,
            scratch_mb: int = sandbox_mod.SCRATCH_MB):
    """Yield (student, report, host) as the cluster finishes each submission."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    items = rubric.select(include_hidden=True)
    seeds = seeds_mod.item_seeds(engine.grading_seed(rubric), items)
    # Sent once, as a task of its own rather than scattered data: if every worker holding
    # it dies, the scheduler computes it again instead of cancelling the submissions.
    with warnings.catch_warnings():  # the inputs (about 16 MB) are meant to go in this once
        warnings.filterwarnings("ignore", message="Sending large graph")
        shared = client.submit(_hold, Shipped(rubric.exercise, inputs.for_worker()), pure=False,
                               key=f"grading-inputs-{os.urandom(8).hex()}")
    # All submissions go to the scheduler at once, as one task group ("grade-..." keys) of
    # independent tasks: Dask queues such a group on the scheduler and hands a worker a
    # task only when it has a free thread (worker-saturation 1.0), so a worker that dies
    # takes only the submission it was running with it.
    capacity = len(todo)
    pending = iter(todo)
    running = as_completed()
    submitted: dict = {}  # future key -> (student, path, payload name and bytes, attempt)

    def submit(student, path, name, payload, attempt) -> None:
        future = client.submit(collect_remote, name, payload, items, shared, seeds,
                               student=student, memory_mb=memory_mb, network=network, user=user,
                               scratch_mb=scratch_mb, startup_limit=startup_limit, threads=threads,
                               pure=False,
                               key=f"grade-{os.urandom(8).hex()}")
        submitted[future.key] = (student, path, name, payload, attempt)
        running.add(future)

    def submit_next() -> list:
        for student, path in pending:
            try:
                name, payload = path.pack()  # a submission.Submission, read once
            except SubmissionError as exc:
                return [(student, engine.unreadable_report(student, rubric, True, str(exc)), "client")]
            submit(student, path, name, payload, 1)
            return []
        return []

    for _ in range(capacity):
        yield from submit_next()
    for future in running:
        student, path, name, payload, attempt = submitted.pop(future.key)
        try:
            out = future.result()
        except KilledWorker as exc:
            if attempt <= RESUBMITS:
                # Dask blames every task waiting on a worker that dies, not only the one
                # running there: give the submission a fresh count before failing it.
                submit(student, path, name, payload, attempt + 1)
                continue
            message = (f"not graded: the workers running it died again and again ({attempt} rounds; "
                       f"{exc}); look for a submission that exhausts the worker machine")
            yield student, engine.unreadable_report(student, rubric, True, message), "?"
        except Exception as exc:  # the grader's own failure on one submission
            message = f"internal error on the worker ({type(exc).__name__}: {exc})"
            yield student, engine.unreadable_report(student, rubric, True, message), "?"
        else:
            report = engine.report(student, items, out["collection"], inputs, rubric, out["seconds"])
            yield student, report, f"{out['host']} ({out['worker']})"
        yield from submit_next()
