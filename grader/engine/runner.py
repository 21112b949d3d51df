"""Where a batch's submissions run: a local pool of sandboxed workers, or a Dask cluster
(`cluster.py`), with one line per submission above a progress bar as each finishes."""
from __future__ import annotations

import os
import socket
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed

from .. import engine, sandbox as sandbox_mod


def _local_results(todo, rubric, inputs, sandbox: sandbox_mod.Sandbox, startup_limit: float,
                   workers: int):
    """Yield (student, report, host) as a local pool of `workers` finishes each submission."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    host = socket.gethostname()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(engine.grade_submission, handed, rubric, inputs, include_hidden=True,
                               name=student, sandbox=sandbox, threads=threads,
                               startup_limit=startup_limit): student for student, handed in todo}
        for future in as_completed(futures):
            student = futures[future]
            try:
                yield student, future.result(), host
            except Exception as exc:  # the grader's own failure on one submission
                yield student, engine.unreadable_report(
                    student, rubric, True, f"internal grader error ({type(exc).__name__}: {exc})"), host


class Runner:
    """Where the submissions' code runs: the local pool in the sandbox, or a Dask cluster."""

    def __init__(self, rubric, inputs, scheduler, workers, startup_limit, memory_mb, network,
                 user, scratch_mb, readable):
        self.rubric, self.inputs, self.scheduler = rubric, inputs, scheduler
        self.workers, self.startup_limit = workers, startup_limit
        self.limits = dict(memory_mb=memory_mb, network=network, user=user, scratch_mb=scratch_mb)
        self.client = self.cluster = self.sandbox = None
        if scheduler:
            from . import cluster as cluster_mod
            self.client, self.cluster = cluster_mod.connect(scheduler)
            self.where = (f"on the Dask cluster at "
                          f"{getattr(self.client.scheduler, 'address', scheduler)} "
                          "(sandboxed on each worker)")
        else:
            self.sandbox = sandbox_mod.choose(memory_mb, network, user, readable,
                                              scratch_mb=scratch_mb)
            for notice in self.sandbox.notices:
                print(f"notice: {notice}", file=sys.stderr)
            self.where = f"with {workers} worker(s); sandbox: {self.sandbox.describe()}"

    @property
    def remote(self) -> bool:
        return self.client is not None

    def grade(self, todo, progress: bool, record) -> None:
        """Grade `todo` ([(student, submission.Submission)]), calling record(student,
        report, host) as each finishes and writing the line it returns above a progress bar."""
        from tqdm import tqdm

        bar = tqdm(total=len(todo), unit="submission", disable=not progress, file=sys.stderr)
        try:
            if self.client is not None:
                from . import cluster as cluster_mod
                local = self.scheduler.startswith("local:")
                finished = cluster_mod.results(
                    self.client, todo, self.rubric, self.inputs, **self.limits,
                    startup_limit=self.startup_limit,
                    threads=max(1, (os.cpu_count() or 1) // int(self.scheduler.split(":")[1]))
                    if local else None)
            else:
                finished = _local_results(todo, self.rubric, self.inputs, self.sandbox,
                                          self.startup_limit, self.workers)
            for student, report, host in finished:
                bar.write(record(student, report, host), file=sys.stderr)
                bar.update(1)
        finally:
            if self.client is not None:
                self.client.close()
            if self.cluster is not None:
                self.cluster.close()
            bar.close()
