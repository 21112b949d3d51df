"""`grader batch SUBMISSIONS --out DIR`: grade a folder of submissions for a course.

Each submission is graded by the engine in its own sandboxed worker (grader.sandbox:
memory cap, no network, an unprivileged user when run as root), several at a time.
Results go to a SQLite gradebook one submission per transaction, so a killed batch
resumes where it stopped; unchanged submissions already graded are skipped. At the end
the CSV, per-student feedback and Gradescope results.json files are rebuilt from the
gradebook and a summary is printed.
"""
from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__, engine, exports, rubric as rubric_mod, vgg_weights
from .errors import KitError, SubmissionError
from .fsutil import atomic_path
from .gradebook import Gradebook
from .paths import DEFAULT_RUBRIC, ROOT
from .submission import content_hash, discover, materialize


@dataclass
class Sandbox:
    """How workers are confined; `wrap` is the command prefix that applies it."""
    memory_mb: int
    user: str
    network: bool
    hide: list[str] = field(default_factory=list)

    @property
    def wrap(self) -> list[str]:
        command = [sys.executable, "-m", "grader.sandbox", "--memory-mb", str(self.memory_mb)]
        if self.user:
            command += ["--user", self.user]
        if not self.network:
            command.append("--no-network")
        for folder in self.hide:
            command += ["--hide", folder]
        return command + ["--"]

    def describe(self) -> str:
        return (f"memory cap {self.memory_mb} MB, network {'on' if self.network else 'off'}, "
                f"user {self.user or 'current'}, {len(self.hide)} private folder(s) hidden")


def _probe(sandbox: Sandbox) -> str | None:
    """None if the sandbox can start Python, else what went wrong."""
    result = subprocess.run(sandbox.wrap + [sys.executable, "-c", "pass"], capture_output=True,
                            text=True, cwd="/", env={"PATH": os.environ.get("PATH", "")})
    return None if result.returncode == 0 else (result.stderr.strip().splitlines() or ["failed"])[-1]


def _hideable(folders: list[Path]) -> list[str]:
    """The folders that may be covered without hiding what the worker itself needs."""
    needed = [Path(sys.executable).resolve(), Path(sys.prefix).resolve(), ROOT.resolve(),
              Path(tempfile.gettempdir()).resolve()]
    candidates = {f.resolve() for f in folders if f.is_dir()}
    candidates = {f for f in candidates if not any(n == f or f in n.parents for n in needed)}
    # Covering a folder covers what is inside it: keep only the outermost ones.
    return sorted(str(f) for f in candidates if not any(o in f.parents for o in candidates))


def choose_sandbox(memory_mb: int, user: str, network: bool,
                   private: list[Path] | None = None) -> tuple[Sandbox, list[str]]:
    """The strongest sandbox this machine allows, and notices about what was given up."""
    notices = []
    root = os.geteuid() == 0
    if user == "auto":
        user = "nobody" if root else ""
    if not network and not root:
        notices.append("network isolation needs root; submissions keep network access")
        network = True
    sandbox = Sandbox(memory_mb, user, network)
    if sandbox.user:
        problem = _probe(Sandbox(memory_mb, sandbox.user, True))
        if problem:
            notices.append(f"cannot run Python as user {sandbox.user!r} ({problem}); grading as "
                           "the current user")
            sandbox.user = ""
    if private and root:
        sandbox.hide = _hideable(private)
        if sandbox.hide and _probe(Sandbox(memory_mb, sandbox.user, True, sandbox.hide)):
            notices.append("could not hide the gradebook and rubric folders from submissions")
            sandbox.hide = []
    elif private:
        notices.append("hiding the gradebook and rubric from submissions needs root")
    if not sandbox.network and _probe(sandbox):
        notices.append("could not cut the network here; submissions keep network access")
        sandbox.network = True
    return sandbox, notices


def _failed_report(student: str, rubric: rubric_mod.Rubric, items, message: str) -> engine.Report:
    return engine.Report(student, [engine.ItemResult(i.id, i.title, 0.0, i.points, "skipped", message,
                                                     0.0, i.visibility) for i in items],
                         rubric=rubric.source)


def grade_one(student: str, path: Path, rubric, inputs, sandbox: Sandbox,
              startup_limit: float, threads: int) -> tuple[engine.Report, str, str]:
    """(report, status, message) for one submission; never raises for bad submissions."""
    work = Path(tempfile.mkdtemp(prefix=f"grader-batch-{student[:20]}-"))
    try:
        try:
            module_file, submission_dir = materialize(path, work / "in")
        except SubmissionError as exc:
            return (_failed_report(student, rubric, rubric.select(include_hidden=True), str(exc)),
                    "failed", str(exc))
        if sandbox.user:
            import pwd
            entry = pwd.getpwnam(sandbox.user)
            for p in [work, *work.rglob("*")]:
                os.chown(p, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work),
               "LANG": "C.UTF-8", "TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg",
               "TF_NUM_INTRAOP_THREADS": str(threads), "TF_NUM_INTEROP_THREADS": "1",
               "OMP_NUM_THREADS": str(threads)}
        report = engine.grade(module_file, rubric, inputs, include_hidden=True,
                              submission_dir=submission_dir, work_dir=work / "run",
                              wrap=sandbox.wrap, env=env, name=student, startup_limit=startup_limit)
        if report.import_failed:
            return report, "failed", report.items[0].message
        if any(r.status == "timeout" for r in report.items):
            return report, "timed_out", ""
        return report, "graded", ""
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _write_exports(book: Gradebook, out: Path, item_ids: list[str], released: bool) -> None:
    rows = book.submissions()
    with atomic_path(out / "grades.csv") as tmp:
        tmp.write_text(exports.grades_csv(rows, book.items, item_ids), encoding="utf-8")
    for folder, render, name in (("feedback", lambda r, i: exports.feedback_markdown(r, i, released), "{}.md"),
                                 ("gradescope", exports.results_json, "{}/results.json")):
        with atomic_path(out / folder) as tmp:
            tmp.mkdir()
            for row in rows:
                target = tmp / name.format(row["student"])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(render(row, book.items(row["student"])), encoding="utf-8")


def main(submissions: str, out: str, workers: int | None = None, regrade: bool = False,
         rubric_path: str | None = None, weights: str | None = None, memory_mb: int = 6144,
         user: str = "auto", network: bool = False, startup_limit: float = engine.STARTUP_LIMIT,
         released: bool = False, progress: bool = True) -> dict:
    folder = Path(submissions)
    if not folder.is_dir():
        raise KitError(f"{folder}: expected a folder of submissions (.py, .ipynb, .zip or one "
                       "folder per student).")
    rubric_file = Path(rubric_path or DEFAULT_RUBRIC)
    rubric = rubric_mod.load(rubric_file)
    conv_weights, weights_source = vgg_weights.resolve(weights)
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise KitError(f"--workers must be at least 1, found {workers}.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)  # the gradebook is private to the grader
    book = Gradebook(out / "gradebook.sqlite")
    try:
        # A private held-out seed per gradebook: a submission cannot regenerate the labels.
        seed = book.get_meta("heldout_seed")
        if seed is None:
            seed = str(secrets.randbelow(2**31))
            book.set_meta("heldout_seed", seed)
        rubric.heldout_seed = int(seed)
        rubric_hash = hashlib.sha256(rubric_file.read_bytes() + weights_source.encode()).hexdigest()[:16]
        inputs = engine.grading_inputs(rubric, conv_weights)
        items = rubric.select(include_hidden=True)
        sandbox, notices = choose_sandbox(memory_mb, user, network,
                                          [out, rubric_file.parent, folder])
        for notice in notices:
            print(f"notice: {notice}", file=sys.stderr)
        entries = discover(folder)
        hashes = {student: content_hash(path) for student, path in entries}
        todo = [(s, p) for s, p in entries
                if regrade or not book.is_current(s, hashes[s], __version__, rubric_hash)]
        print(f"{len(entries)} submissions, {len(entries) - len(todo)} already graded, "
              f"{len(todo)} to grade with {workers} worker(s); sandbox: {sandbox.describe()}",
              file=sys.stderr)
        threads = max(1, (os.cpu_count() or 1) // workers)
        from tqdm import tqdm
        bar = tqdm(total=len(todo), unit="submission", disable=not progress, file=sys.stderr)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(grade_one, s, p, rubric, inputs, sandbox, startup_limit,
                                   threads): (s, p) for s, p in todo}
            for future in as_completed(futures):
                student, path = futures[future]
                try:
                    report, status, message = future.result()
                except Exception as exc:  # the grader's own failure on one item of the batch
                    report = _failed_report(student, rubric, items, f"internal error: {exc}")
                    status, message = "failed", f"internal grader error ({type(exc).__name__}: {exc})"
                book.record(student, str(path), hashes[student], rubric_hash, report, status, message)
                bar.update(1)
        bar.close()
        _write_exports(book, out, [i.id for i in items], released)
        return summarize(book, [i.id for i in items])
    finally:
        book.close()


def summarize(book: Gradebook, item_ids: list[str]) -> dict:
    rows = book.submissions()
    counts = {status: sum(r["status"] == status for r in rows) for status in ("graded", "failed", "timed_out")}
    mean = sum(r["score"] for r in rows) / len(rows) if rows else 0.0
    failures = {}
    for item in item_ids:
        lost = sum(1 for r in rows for i in book.items(r["student"])
                   if i["item"] == item and i["score"] < i["max_score"])
        failures[item] = lost / len(rows) if rows else 0.0
    print(f"graded {counts['graded']}, failed {counts['failed']}, timed out {counts['timed_out']}; "
          f"mean score {mean:.1f} / {rows[0]['max_score'] if rows else 0:g}")
    print("items not at full marks: " + ", ".join(f"{k} {v:.0%}" for k, v in failures.items()))
    return {"counts": counts, "mean": mean, "failure_rates": failures, "total": len(rows)}
