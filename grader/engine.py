"""The grading engine shared by `grader check` and `grader batch`.

The submission runs in a worker process (worker.py) that only collects observations;
this process judges them (checks.py). Each item has a time limit that really stops it:
the worker's whole process group is killed and a new worker carries on with the items
that are left. A crash, an early exit or garbage on the channel costs only the item
that was running.
"""
from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from . import __version__, channel, synthetic
from .checks import CHECKS, JudgeContext
from .network import CONV_LAYERS
from .rubric import Item, Rubric
from .paths import ROOT

STARTUP_LIMIT = 120.0  # seconds to import TensorFlow and the submission
GRADING_TRAIN = 2000
HELDOUT = 1000
DEFAULT_HELDOUT_SEED = 4242


@dataclass
class ItemResult:
    id: str
    title: str
    score: float
    max_score: float
    status: str
    """passed, partial, failed, error (the submission raised), timeout, crashed or skipped"""
    message: str
    seconds: float
    visibility: str = "visible"


@dataclass
class Report:
    submission: str
    items: list[ItemResult]
    grader_version: str = __version__
    rubric: str = ""
    seconds: float = 0.0
    output_tail: str = ""
    """the last lines the submission printed, for a person debugging it"""
    import_failed: bool = False
    """the submission never imported (an exception or a crash at import): nothing ran"""

    @property
    def score(self) -> float:
        return round(sum(i.score for i in self.items), 4)

    @property
    def max_score(self) -> float:
        return sum(i.max_score for i in self.items)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(score=self.score, max_score=self.max_score)
        return data


@dataclass
class GradingInputs:
    """Everything the checks need; held-out labels never go to the worker."""
    weights: dict
    train_images: np.ndarray
    train_labels: np.ndarray
    probe: np.ndarray
    heldout_images: np.ndarray
    heldout_labels: np.ndarray
    description: str = ""

    def write_worker_inputs(self, path: Path) -> None:
        arrays = {f"w_{name}_{part}": self.weights[f"{name}_{part}"]
                  for name in CONV_LAYERS for part in "Wb"}
        np.savez(path, train_images=self.train_images, train_labels=self.train_labels,
                 probe=self.probe, heldout_images=self.heldout_images, **arrays)


def grading_inputs(rubric: Rubric, weights: dict, dataset=None,
                   description: str = "synthetic data") -> GradingInputs:
    """Build the grading data: a training subset, probe images and held-out images.

    With `dataset` (real CIFAR-10) the held-out images are its test split; otherwise
    synthetic images from the rubric's private `heldout_seed`.
    """
    if dataset is None:
        train_images, train_labels = synthetic.generate(GRADING_TRAIN, seed=101)
        seed = rubric.heldout_seed if rubric.heldout_seed is not None else DEFAULT_HELDOUT_SEED
        heldout_images, heldout_labels = synthetic.generate(HELDOUT, seed=seed)
    else:
        train_images, train_labels = dataset.train_images[:5000], dataset.train_labels[:5000]
        heldout_images, heldout_labels = dataset.test_images[:2000], dataset.test_labels[:2000]
    rng = np.random.default_rng(7)
    probe = np.concatenate([
        train_images[:3],
        rng.integers(0, 256, (1, 32, 32, 3), dtype=np.uint8),
        np.zeros((1, 32, 32, 3), np.uint8), np.full((1, 32, 32, 3), 255, np.uint8)])
    return GradingInputs(weights, train_images, train_labels.astype(np.int64), probe,
                         heldout_images, heldout_labels.astype(np.int64), description)


class _Worker:
    """One worker process and the threads that read its channel and its output."""

    def __init__(self, job_dir: Path, cwd: Path, wrap: list[str], env: dict, tail_bytes: int):
        read_fd, write_fd = os.pipe()
        self.messages: queue.Queue = queue.Queue()
        self.tail = b""
        command = [*wrap, sys.executable, "-m", "grader.worker", str(job_dir), str(write_fd)]
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, pass_fds=(write_fd,), start_new_session=True)
        os.close(write_fd)
        self._tail_bytes = tail_bytes
        threading.Thread(target=self._read_channel, args=(read_fd,), daemon=True).start()
        self._output = threading.Thread(target=self._drain_output, daemon=True)
        self._output.start()

    def _read_channel(self, fd: int) -> None:
        try:
            while True:
                message = channel.receive(fd)
                if message is None:
                    break
                self.messages.put(message)
        except channel.ChannelError as exc:
            self.messages.put({"type": "garbage", "message": str(exc)})
        finally:
            os.close(fd)
            self.messages.put(None)

    def _drain_output(self) -> None:
        # Read everything (so a chatty submission never blocks) but keep only the tail.
        for chunk in iter(lambda: self.process.stdout.read(65536), b""):
            self.tail = (self.tail + chunk)[-self._tail_bytes:]

    def next(self, timeout: float):
        try:
            return self.messages.get(timeout=min(max(timeout, 0.01), 3600.0))
        except queue.Empty:
            return "timeout"

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        self._output.join(timeout=5)

    def exit_description(self) -> str:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.process.returncode
        if code < 0:
            try:
                return f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"


def _tail_line(tail: bytes) -> str:
    lines = [l for l in tail.decode("utf-8", "replace").splitlines() if l.strip()]
    return lines[-1].strip()[:200] if lines else ""


def item_seed(seed: int, item_id: str) -> int:
    """The random seed an item runs under: fixed by the grading seed and the item, so a
    second grading of the same submission repeats every random choice."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{item_id}".encode()).digest()[:4], "big")


def collect(module_file: Path, submission_dir: Path, items: list[Item], inputs: GradingInputs,
            work_dir: Path, wrap: list[str] | None = None, env: dict | None = None,
            tail_bytes: int = 8192, startup_limit: float = STARTUP_LIMIT,
            seed: int = DEFAULT_HELDOUT_SEED) -> tuple[dict, str, bool]:
    """Run the collect halves in worker processes. Returns ({item id: outcome}, output tail,
    whether the import failed) where an outcome is ("result", observation, seconds) or
    (status, message, seconds)."""
    job_dir = work_dir / "job"
    scratch = work_dir / "scratch"
    job_dir.mkdir(parents=True, exist_ok=True)
    scratch.mkdir(parents=True, exist_ok=True)
    inputs.write_worker_inputs(job_dir / "inputs.npz")
    env = dict(env if env is not None else os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    outcomes: dict = {}
    tail = b""
    import_failed = False
    remaining = list(items)
    while remaining:
        (job_dir / "job.json").write_text(json.dumps({
            "module": str(module_file), "submission_dir": str(submission_dir),
            "scratch": str(scratch),
            "items": [{"id": i.id, "check": i.check, "params": i.params,
                       "seed": item_seed(seed, i.id)} for i in remaining]}))
        worker = _Worker(job_dir, scratch, wrap or [], env, tail_bytes)
        by_id = {i.id: i for i in remaining}
        current, deadline, started = None, time.monotonic() + startup_limit, time.monotonic()
        ready = False
        while True:
            message = worker.next(deadline - time.monotonic())
            now = time.monotonic()
            if message == "timeout" and now < deadline:
                continue
            if message == "timeout":
                worker.kill()
                if current is None:
                    for item in remaining:
                        outcomes[item.id] = ("timeout", f"the submission did not finish importing "
                                             f"within {startup_limit:.0f} s", now - started)
                    remaining = []
                else:
                    outcomes[current] = ("timeout", f"stopped after the item's time limit of "
                                         f"{by_id[current].time_limit:.0f} s. Hint: look for an "
                                         "endless loop or a run far longer than asked",
                                         now - started)
                break
            if message is None or message.get("type") == "garbage":
                # The process ended or wrote garbage without finishing what it was doing.
                how = worker.exit_description() if message is None else message["message"]
                worker.kill()
                last = _tail_line(worker.tail)
                why = f"the grading process ended ({how})" + (f"; last output: {last}" if last else "")
                if not ready:
                    for item in remaining:
                        outcomes[item.id] = ("crashed", why + " while importing the submission", 0.0)
                    remaining, import_failed = [], True
                elif current is not None:
                    outcomes[current] = ("crashed", why, now - started)
                break
            kind = message.get("type")
            if kind == "import_error":
                worker.kill()
                for item in remaining:
                    outcomes[item.id] = ("error", "the module failed to import: " +
                                         str(message.get("message")), 0.0)
                remaining, import_failed = [], True
                break
            if kind == "ready":
                ready = True
                deadline = float("inf")
            elif kind == "start" and message.get("item") in by_id:
                current, started = message["item"], now
                deadline = now + by_id[current].time_limit
            elif kind in ("result", "error") and message.get("item") == current:
                if kind == "result":
                    outcomes[current] = ("result", message.get("observation"), now - started)
                else:
                    text = str(message.get("message"))
                    if message.get("not_implemented"):
                        text = "not implemented yet: " + text
                    outcomes[current] = ("error", text, now - started)
                current, deadline = None, float("inf")
            elif kind == "done":
                worker.kill()
                break
        tail = (tail + worker.tail)[-tail_bytes:]
        remaining = [i for i in remaining if i.id not in outcomes]
    return outcomes, tail.decode("utf-8", "replace"), import_failed


def judge(items: list[Item], outcomes: dict, inputs: GradingInputs, scratch: Path) -> list[ItemResult]:
    ctx = JudgeContext(inputs.weights, inputs.train_labels, inputs.probe, inputs.heldout_labels,
                       scratch)
    results = []
    for item in items:
        status, value, seconds = outcomes.get(item.id, ("skipped", "not run", 0.0))
        if status == "result":
            _, judge_fn = CHECKS[item.check]
            try:
                fraction, message = judge_fn(value, ctx, item.params)
            except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
                # Observations came from the submission's process: malformed ones score 0.
                fraction, message = 0.0, f"the observations were malformed ({type(exc).__name__}: {exc})"
            fraction = round(float(min(max(fraction, 0.0), 1.0)), 6)
            status = "passed" if fraction == 1.0 else "partial" if fraction > 0 else "failed"
            results.append(ItemResult(item.id, item.title, round(item.points * fraction, 4),
                                      item.points, status, message, round(seconds, 2),
                                      item.visibility))
        else:
            results.append(ItemResult(item.id, item.title, 0.0, item.points, status, str(value),
                                      round(seconds, 2), item.visibility))
    return results


def grade(module_file: Path, rubric: Rubric, inputs: GradingInputs, *, include_hidden: bool = False,
          submission_dir: Path | None = None, work_dir: Path | None = None,
          wrap: list[str] | None = None, env: dict | None = None, name: str | None = None,
          startup_limit: float = STARTUP_LIMIT) -> Report:
    """Grade one prepared module file against the rubric's selected items."""
    items = rubric.select(include_hidden)
    own_dir = work_dir is None
    work_dir = Path(work_dir or tempfile.mkdtemp(prefix="grader-"))
    start = time.monotonic()
    try:
        outcomes, tail, import_failed = collect(Path(module_file), Path(submission_dir or Path(module_file).parent),
                                 items, inputs, work_dir, wrap, env, startup_limit=startup_limit,
                                 seed=DEFAULT_HELDOUT_SEED if rubric.heldout_seed is None
                                 else rubric.heldout_seed)
        results = judge(items, outcomes, inputs, work_dir / "scratch")
    finally:
        if own_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    return Report(name or str(module_file), results, rubric=rubric.source,
                  seconds=round(time.monotonic() - start, 2), output_tail=tail[-2000:],
                  import_failed=import_failed)
