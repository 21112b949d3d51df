"""The grading engine: the one path `grader check`, `grader batch` and the Gradescope
entry point all take (`grade_submission`).

The submission runs in a sandboxed worker process (worker.py, sandbox.py) that only
collects observations; this process judges them (checks.py). The worker talks over an
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
BUDGET_MARGIN seconds, whatever it does.
"""
from __future__ import annotations

import fcntl
import hashlib
import io
import os
import pwd
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

from . import __version__, channel, events, sandbox as sandbox_mod, synthetic
from .checks import CHECKS, FINISH, HELDOUT_CHECKS, SECOND_PART, SECOND_PARTS, JudgeContext, run_order
from .errors import SubmissionError
from .network import CONV_LAYERS
from .rubric import Item, Rubric
from .paths import PACKAGE_PARENT

STARTUP_LIMIT = 120.0  # seconds to import TensorFlow and the submission
GAP_LIMIT = 15.0  # seconds the worker may take between one item's result and the next start
BUDGET_MARGIN = 30.0  # seconds on top of the startup and item limits, for restarts and exits
MAX_NOTES = 20  # import notes kept per submission
GRADING_TRAIN = 2000
REAL_TRAIN = 5000
"""training images of a real data set the items train on (its first ones)"""
HELDOUT = 1000
DEFAULT_HELDOUT_SEED = 4242
PROBE_STREAM = 7
"""the private seed's stream the probe images are drawn from"""


FLAG_KINDS = {
    "protocol": "broke the grading protocol",
    "tampering": "wrote frames the grading worker did not sign, or changed the grader's code",
    "decoy": "wrote on the decoy descriptor named in the worker's arguments",
    "internal_import": "imported the grader's internal modules",
    "proc_fd": "looked at /proc/*/fd (the process's open descriptors)",
    "introspection": "searched the process's memory (gc, frames or ctypes)",
    "subprocess": "started a child process (what runs there is confined but not watched)",
    "processes_left": "left processes running when its grading ended (they were killed)",
    "network": "tried to use the network",
    "write_outside_scratch": "tried to write outside its scratch folder",
    "bounds": "left files past what the grading process reads (the item scores 0)",
}
"""Integrity flags: what each kind means. Data for the gradebook, CSV and `grader flags`."""


@dataclass(frozen=True)
class Flag:
    kind: str
    detail: str


@dataclass
class Observed:
    """An item's collect half finished: what it observed, for the judge."""
    observation: Any
    seconds: float


@dataclass
class Failed:
    """An item that produced nothing to judge, and why."""
    status: str  # error, timeout, crashed, integrity or skipped
    message: str
    seconds: float = 0.0


Outcome = Union[Observed, Failed]


@dataclass
class Collection:
    outcomes: dict[str, Outcome]
    output: str = ""
    import_failed: bool = False
    flags: list[Flag] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class ItemResult:
    id: str
    title: str
    score: float
    max_score: float
    status: str
    """passed, partial, failed, error (the submission raised), timeout, crashed, integrity
    (not graded: the worker broke the grading protocol) or skipped"""
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
    flags: list[Flag] = field(default_factory=list)
    """what a person should look at (see FLAG_KINDS); never a score change by itself"""
    notes: list[str] = field(default_factory=list)
    """what the import of a notebook skipped: cell, line, statement and error"""
    graded_on: str = ""
    """the weights and data the items ran on (grader/course_data.py)"""

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


def _npz(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def probe_key(seed: int) -> int:
    """What the probe images are drawn from: a one-way digest of the private seed, so the
    collecting side (a cluster's machines) can draw them without holding the seed, which
    also makes the held-out images and their labels."""
    return int.from_bytes(hashlib.sha256(f"probes:{seed}".encode()).digest()[:16], "big")


def draw_probe(key: int, item_id: str, train_images: np.ndarray) -> np.ndarray:
    """An item's probe images: three training images and one of noise drawn from the
    probe key and the item's id, and the two extremes of the pixel range. Each item has
    its own, and the worker gets them only when the item starts."""
    item = int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "big")
    rng = np.random.default_rng([key, PROBE_STREAM, item])
    one = (1, *train_images.shape[1:])
    return np.concatenate([
        train_images[np.sort(rng.choice(len(train_images), 3, replace=False))],
        rng.integers(0, 256, one, dtype=np.uint8), np.zeros(one, np.uint8), np.full(one, 255, np.uint8)])


@dataclass
class GradingInputs:
    """Everything the checks need; held-out labels never go to the worker."""
    weights: dict
    train_images: np.ndarray
    train_labels: np.ndarray
    probe_key: int
    heldout_images: np.ndarray
    heldout_labels: np.ndarray
    description: str = ""

    def probe_for(self, item_id: str) -> np.ndarray:
        return draw_probe(self.probe_key, item_id, self.train_images)

    def for_worker(self) -> WorkerInputs:
        """What the collecting side gets: everything but the held-out labels."""
        return WorkerInputs({k: self.weights[k] for k in WorkerInputs.weight_keys()},
                            self.train_images, self.train_labels, self.probe_key, self.heldout_images)


@dataclass
class WorkerInputs:
    """The grading data the collecting side holds (it may travel to a cluster's machines):
    no labels of the held-out images. The sandboxed worker gets the weights and training
    data with its job, and each item's own questions (its probe images, the held-out
    images) only when that item starts (`asked`)."""
    weights: dict
    train_images: np.ndarray
    train_labels: np.ndarray
    probe_key: int
    heldout_images: np.ndarray

    @staticmethod
    def weight_keys() -> list[str]:
        return [f"{name}_{part}" for name in CONV_LAYERS for part in "Wb"]

    def to_bytes(self) -> bytes:
        """An uncompressed npz, as the worker reads it from its stdin after the job."""
        return _npz({"train_images": self.train_images, "train_labels": self.train_labels,
                     **{f"w_{key}": self.weights[key] for key in self.weight_keys()}})

    def asked(self, item: Item) -> bytes:
        """What the worker is given when `item` starts, as an uncompressed npz."""
        arrays = {"probe": draw_probe(self.probe_key, item.id, self.train_images)}
        if item.check.removesuffix(SECOND_PART) in HELDOUT_CHECKS:
            arrays["heldout_images"] = self.heldout_images
        return _npz(arrays)


def grading_inputs(rubric: Rubric, weights: dict, dataset=None,
                   description: str = "synthetic data") -> GradingInputs:
    """Build the grading data: a training subset, probe images and held-out images.

    With `dataset` (real CIFAR-10) the held-out images are drawn from its test split with
    the rubric's private `heldout_seed` and disguised (cifar10.heldout_split); otherwise
    they are synthetic images from that seed.
    """
    seed = rubric.heldout_seed if rubric.heldout_seed is not None else DEFAULT_HELDOUT_SEED
    if dataset is None:
        train_images, train_labels = synthetic.generate(GRADING_TRAIN, seed=101)
        heldout_images, heldout_labels = synthetic.generate(HELDOUT, seed=seed)
    else:
        from .cifar10 import heldout_split

        train_images, train_labels = dataset.train_images[:REAL_TRAIN], dataset.train_labels[:REAL_TRAIN]
        heldout_images, heldout_labels = heldout_split(dataset, seed, HELDOUT)
    # The probe images (preprocess, shapes, features, checkpoint) follow the private seed
    # too, one set per item (draw_probe).
    return GradingInputs(weights, train_images, train_labels.astype(np.int64),
                         probe_key(grading_seed(rubric)), heldout_images,
                         heldout_labels.astype(np.int64), description)


class _Worker:
    """One sandboxed worker process and the threads that read its channel, its decoy
    descriptor and its output. Messages arrive on `messages` as dicts (authenticated
    frames), ("channel", ChannelError), ("decoy", bytes count) or None at the end."""

    def __init__(self, sandbox: sandbox_mod.Sandbox, read_only: list[Path], scratch: Path,
                 env: dict, tail_bytes: int, budget: channel.Budget):
        """Start the process: it imports TensorFlow while `send_job` is still to come."""
        self.messages: queue.Queue = queue.Queue()
        self._stdin: queue.Queue = queue.Queue()
        self.tail = b""
        self._tail_bytes = tail_bytes
        self.confined = sandbox.confined
        self._key = key = channel.new_key()
        read_fd, write_fd = os.pipe()
        decoy_read, decoy_write = os.pipe()
        # The channel sits at a random descriptor number (F_DUPFD takes the lowest free
        # number from there, so other threads' descriptors are never disturbed).
        chan_fd = fcntl.fcntl(write_fd, fcntl.F_DUPFD, 64 + secrets.randbelow(900))
        os.close(write_fd)
        command = sandbox.command([sys.executable, "-m", "grader.worker", str(decoy_write)],
                                  read_only=read_only, scratch=scratch)
        try:
            self.process = subprocess.Popen(
                command, cwd=scratch, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, pass_fds=(chan_fd, decoy_write), start_new_session=True)
        finally:
            os.close(chan_fd)
            os.close(decoy_write)
        self._chan_fd = chan_fd
        threading.Thread(target=self._read_channel, args=(read_fd, key, budget),
                         daemon=True).start()
        threading.Thread(target=self._watch_decoy, args=(decoy_read,), daemon=True).start()
        self._output = threading.Thread(target=self._drain_output, daemon=True)
        self._output.start()

    def send_job(self, job: dict, inputs: bytes) -> None:
        """The key, the channel's descriptor number, the job and the inputs, on stdin: no
        file of the job is in the worker's view. Each item's own inputs follow when it
        starts (`send_item`). A thread writes, in order: the worker reads only once
        TensorFlow is imported, and a submission playing the worker may never read."""
        self._stdin.put(channel.bootstrap(self._key, self._chan_fd, job, inputs))
        del self._key
        threading.Thread(target=self._write_stdin, daemon=True).start()

    def send_item(self, data: bytes) -> None:
        self._stdin.put(channel.sized(data))

    def _write_stdin(self) -> None:
        try:
            while (data := self._stdin.get()) is not None:
                self.process.stdin.write(data)
                self.process.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # it died or was killed: the channel reports the end
        finally:
            try:
                self.process.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass

    def _read_channel(self, fd: int, key: bytes, budget: channel.Budget) -> None:
        reader = channel.Reader(fd, key, budget)
        try:
            while (message := reader.receive()) is not None:
                self.messages.put(message)
        except channel.ChannelError as exc:
            self.messages.put(("channel", exc))
        finally:
            os.close(fd)
            self.messages.put(None)

    def _watch_decoy(self, fd: int) -> None:
        try:
            data = os.read(fd, 65536)
            if data:
                self.messages.put(("decoy", len(data)))
                while os.read(fd, 65536):
                    pass
        finally:
            os.close(fd)

    def _drain_output(self) -> None:
        # Read everything (so a chatty submission never blocks) but keep only the tail.
        for chunk in iter(lambda: self.process.stdout.read(65536), b""):
            self.tail = (self.tail + chunk)[-self._tail_bytes:]

    def next(self, timeout: float):
        try:
            return self.messages.get(timeout=min(max(timeout, 0.01), 3600.0))
        except queue.Empty:
            return "timeout"

    def strays(self) -> int:
        """How many processes the submission left running in the sandbox's PID namespace."""
        try:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        except OSError:
            return 0
        return sum(len(sandbox_mod.processes_in_namespace(int(pid))) for pid in children)

    def kill(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._stdin.put(None)
        self.process.wait()
        self._output.join(timeout=5)

    def exit_description(self) -> str:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.process.returncode
        if code > 128 and self.confined:
            code = -(code - 128)  # bwrap's PID 1 reports a signal as 128 + its number
        if code < 0:
            try:
                return f"killed by signal {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"


def _tail_line(tail: bytes) -> str:
    lines = [l for l in tail.decode("utf-8", "replace").splitlines() if l.strip()]
    return lines[-1].strip()[:200] if lines else ""


def private_seed() -> int:
    """A fresh held-out seed for a batch or a Gradescope package: 128 random bits, so that
    no submission can recover it from the item seeds it sees (`item_seed`)."""
    return secrets.randbits(128)


def item_seed(seed: int, item_id: str) -> int:
    """The random seed an item runs under: fixed by the grading seed and the item, so a
    second grading of the same submission repeats every random choice. The worker sees
    it; only a seed with enough bits (`private_seed`) keeps the held-out set secret."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{item_id}".encode()).digest()[:4], "big")


def _flag_of(message) -> Flag | None:
    """The flag a message raises: a worker's signed flag frame, a decoy write, or a frame
    that failed authentication (a stream cut inside a frame is a crash, not a flag)."""
    if isinstance(message, dict):
        if message.get("type") == "flag" and message.get("kind") in FLAG_KINDS:
            return Flag(str(message["kind"]), str(message.get("detail", ""))[:300])
        return None
    if message[0] == "decoy":
        return Flag("decoy", f"{message[1]} bytes written on the decoy descriptor")
    return None if message[1].kind == "truncated" else Flag("tampering", str(message[1]))


def _drain_flags(worker: _Worker, flags: dict, wait: float = 0.3) -> None:
    """After a violation: keep the flags already on their way (signed flag frames, other
    tampering), so a reviewer sees everything the submission tried, not just the first."""
    end = time.monotonic() + wait
    while (message := worker.next(end - time.monotonic())) not in ("timeout", None):
        if (flag := _flag_of(message)) is not None:
            flags[flag] = None
            if flag.kind == "tampering":
                return  # nothing after a bad frame can be read


class _Violation(Exception):
    """The worker broke the protocol: no later frame of it can be trusted."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


class Phase(Enum):
    """Where a worker is in the protocol: `ready` is due, then `start` or `done` between
    items, then one `result` or `error` for the running item."""
    IMPORTING = "importing"
    BETWEEN = "between"
    RUNNING = "running"


class Stop(Enum):
    """Why the engine stopped following a worker."""
    CARRY_ON = "carry on"
    """an item ended the worker (a crash, its own time limit): a new worker takes the rest"""
    IMPORT_FAILED = "import failed"
    VIOLATION = "violation"
    BUDGET = "budget"
    """the submission's whole grading time is used up"""
    DONE = "done"


def worker_env(scratch: Path, threads: int | None = None) -> dict:
    """The worker's whole environment: nothing of the grader's own is passed on."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "HOME": str(scratch), "TMPDIR": str(scratch), "PYTHONPATH": str(PACKAGE_PARENT),
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "KERAS_BACKEND": "tensorflow",
           "TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg"}
    if threads:
        env.update(TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS="1",
                   OMP_NUM_THREADS=str(threads))
    return env


def _prepare_work_dir(work_dir: Path, sandbox: sandbox_mod.Sandbox) -> Path:
    """The scratch folder, writable for the user the worker runs as; the work folder itself
    only passable, not listable."""
    scratch = work_dir / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    os.chmod(work_dir, 0o711)
    if sandbox.user and sandbox.scratch_mb:
        sandbox_mod.bound_scratch(scratch, sandbox.scratch_mb, sandbox.user)
    if sandbox.user:
        entry = pwd.getpwnam(sandbox.user)
        for path in [scratch, *scratch.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
    return scratch


def _readable(path: Path) -> None:
    """Let the worker's user read `path` (a file or a folder tree) that the grader wrote."""
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if not p.is_symlink():
            os.chmod(p, (p.stat().st_mode | 0o444 | (0o111 if p.is_dir() else 0)) & 0o7777)


def collect(module_file: Path, submission_dir: Path | None, items: list[Item],
            inputs: WorkerInputs | GradingInputs | Callable[[], WorkerInputs], work_dir: Path, *,
            sandbox: sandbox_mod.Sandbox | None = None, threads: int | None = None,
            tail_bytes: int = 8192, startup_limit: float = STARTUP_LIMIT,
            seed: int = DEFAULT_HELDOUT_SEED, item_seeds: dict[str, int] | None = None,
            progress: Callable[[str], None] | None = None) -> Collection:
    """Run the collect halves of `items` in sandboxed worker processes. The worker sees
    `submission_dir` read-only (None: only the module)."""
    sandbox = sandbox or sandbox_mod.default()
    work_dir = Path(work_dir).resolve()
    scratch = _prepare_work_dir(work_dir, sandbox)
    try:
        return _collect(module_file, submission_dir, items, inputs, work_dir, scratch, sandbox,
                        threads, tail_bytes, startup_limit, seed, item_seeds, progress)
    finally:
        if sandbox.user and sandbox.scratch_mb:  # what the submission wrote goes with it
            sandbox_mod.release_scratch(scratch)


def _collect(module_file, submission_dir, items, inputs, work_dir: Path, scratch: Path,
             sandbox: sandbox_mod.Sandbox, threads, tail_bytes, startup_limit, seed, item_seeds,
             progress) -> Collection:
    # The worker sees its own copy of the module, so nothing else of its folder shows.
    (work_dir / "module").mkdir(exist_ok=True)
    module_file = Path(shutil.copy(Path(module_file), work_dir / "module" / Path(module_file).name))
    submission_dir = Path(submission_dir).resolve() if submission_dir else module_file.parent
    item_seeds = item_seeds or {i.id: item_seed(seed, i.id) for i in items}
    _readable(module_file.parent)
    env = worker_env(scratch, threads)
    read_only = [module_file.parent, submission_dir]
    # The first worker imports TensorFlow while the inputs are made and written; so does
    # the one that will run the second parts, while the first one works.
    # What all of this submission's workers may send together (restarts included).
    budget = channel.Budget()
    first = _Worker(sandbox, read_only, scratch, env, tail_bytes, budget)
    spare = _Worker(sandbox, read_only, scratch, env, tail_bytes, budget) \
        if any(i.check in SECOND_PARTS for i in items) else None
    try:
        if callable(inputs):
            inputs = inputs()
        if isinstance(inputs, GradingInputs):
            inputs = inputs.for_worker()
        blob = inputs.to_bytes()
    except BaseException:
        first.kill()
        if spare is not None:
            spare.kill()
        raise
    result = Collection({})
    flags: dict[Flag, None] = {}
    tail = b""
    start = time.monotonic()
    budget_end = start + startup_limit + sum(i.time_limit for i in items) + BUDGET_MARGIN

    def run(job_items: list[Item], outcomes: dict, until: float, worker=None, notes=None,
            on_start=None) -> Stop:
        nonlocal tail
        job = {"module": str(module_file), "submission_dir": str(submission_dir),
               "scratch": str(scratch),
               "items": [{"id": i.id, "check": i.check, "params": i.params,
                          "seed": item_seeds[i.id]} for i in job_items]}
        worker = worker or _Worker(sandbox, read_only, scratch, env, tail_bytes, budget)
        worker.send_job(job, blob)
        stop = _run_worker(worker, job_items, outcomes, flags, startup_limit, until, inputs.asked,
                           on_start, notes)
        if sandbox.confined and (strays := worker.strays()):
            flags[Flag("processes_left", f"{strays} process(es) still running at the end")] = None
        worker.kill()
        tail = (tail + worker.tail)[-tail_bytes:]
        return stop

    try:
        remaining, stop = run_order(items), Stop.CARRY_ON
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
        # Second parts (restoring a checkpoint, say) run in a fresh worker that inherits only
        # the scratch folder, so nothing the first part held in memory can reach them.
        for item in items:
            first_part = result.outcomes.get(item.id)
            if item.check not in SECOND_PARTS or not isinstance(first_part, Observed):
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
            outcome = second.get(item.id, Failed("skipped", "not run"))
            if isinstance(outcome, Observed) and isinstance(outcome.observation, dict) \
                    and isinstance(first_part.observation, dict):
                result.outcomes[item.id] = Observed({**first_part.observation, **outcome.observation},
                                                    first_part.seconds + outcome.seconds)
            elif isinstance(outcome, Observed):
                result.outcomes[item.id] = Failed("failed", "the observations were malformed",
                                                  first_part.seconds + outcome.seconds)
            else:
                result.outcomes[item.id] = Failed(outcome.status, "in a fresh process, after saving: "
                                                  + outcome.message, first_part.seconds + outcome.seconds)
    finally:
        if spare is not None:
            spare.kill()
    result.output = tail.decode("utf-8", "replace")
    _finish(items, result.outcomes, scratch, flags)
    result.flags = list(flags)
    return result


def _finish(items: list[Item], outcomes: dict[str, Outcome], scratch: Path,
            flags: dict | None = None) -> None:
    """The trusted steps some checks take after the worker, here where its scratch folder
    is (reading the event files it wrote, for instance): judging needs no files after it.
    Files past the readers' bounds make the item `integrity` (and raise a flag): recorded,
    never judged on a part of them, never able to exhaust this process."""
    for item in items:
        outcome, finish = outcomes.get(item.id), FINISH.get(item.check)
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


def _run_worker(worker: _Worker, items: list[Item], outcomes: dict, flags: dict,
                startup_limit: float, budget_end: float, asked: Callable[[Item], bytes],
                progress: Callable[[str], None] | None = None, notes: list | None = None) -> Stop:
    """Follow one worker through its items, giving it each item's inputs (`asked`) when
    the item starts; the first worker's import notes go to `notes`. Returns why it stopped
    (Stop.CARRY_ON: a new worker should carry on with the items left)."""
    order = [i.id for i in items]
    by_id = {i.id: i for i in items}
    state, current, position = Phase.IMPORTING, None, 0
    started = time.monotonic()
    deadline = min(started + startup_limit, budget_end)

    def fail_rest(status: str, message: str, seconds: float = 0.0) -> None:
        for item_id in order[position - (current is not None):]:
            outcomes.setdefault(item_id, Failed(status, message, seconds if item_id == current else 0.0))

    try:
        while True:
            message = worker.next(deadline - time.monotonic())
            now = time.monotonic()
            if message == "timeout" and now < deadline:
                continue
            if message == "timeout":
                own_limit = state is Phase.RUNNING and now - started >= by_id[current].time_limit - 0.5
                if now >= budget_end - 0.5 and not own_limit:
                    fail_rest("timeout", "the submission used up its whole grading time",
                              now - started)
                    return Stop.BUDGET
                if state is Phase.IMPORTING:
                    fail_rest("timeout", "the submission did not finish importing within "
                              f"{startup_limit:.0f} s")
                    return Stop.BUDGET
                if state is Phase.BETWEEN:
                    raise _Violation("protocol", f"the worker stalled for {GAP_LIMIT:.0f} s between items")
                outcomes[current] = Failed("timeout", f"stopped after the item's time limit of "
                                           f"{by_id[current].time_limit:.0f} s. Hint: look for an "
                                           "endless loop or a run far longer than asked", now - started)
                return Stop.CARRY_ON if now < budget_end else Stop.BUDGET
            if message is None or (isinstance(message, tuple) and message[0] == "channel"
                                   and message[1].kind == "truncated"):
                # The process ended (or died while writing a frame).
                how = worker.exit_description()
                last = _tail_line(worker.tail)
                why = f"the grading process ended ({how})" + (f"; last output: {last}" if last else "")
                if state is Phase.IMPORTING:
                    fail_rest("crashed", why + " while importing the submission")
                    return Stop.IMPORT_FAILED
                if state is Phase.BETWEEN:
                    raise _Violation("protocol", f"the worker ended between items ({how})")
                outcomes[current] = Failed("crashed", why, now - started)
                return Stop.CARRY_ON
            if isinstance(message, tuple):
                flag = _flag_of(message)
                raise _Violation(flag.kind, flag.detail)
            kind = message.get("type")
            if kind == "flag":
                if message.get("kind") not in FLAG_KINDS:
                    raise _Violation("protocol", f"a flag of unknown kind {str(message.get('kind'))[:40]!r}")
                flags[_flag_of(message)] = None
                continue
            if state is Phase.IMPORTING and kind == "ready":
                state, deadline = Phase.BETWEEN, min(now + GAP_LIMIT, budget_end)
                said = message.get("notes")
                if notes is not None and not notes and isinstance(said, list):
                    notes.extend(str(n)[:400] for n in said[:MAX_NOTES])
            elif state is Phase.IMPORTING and kind == "import_error":
                fail_rest("error", "the module failed to import: " + str(message.get("message")))
                return Stop.IMPORT_FAILED
            elif state is Phase.BETWEEN and kind == "start" and position < len(order) \
                    and message.get("item") == order[position]:
                state, current, started = Phase.RUNNING, order[position], now
                position += 1
                worker.send_item(asked(by_id[current]))
                if progress is not None:
                    progress(current)
                deadline = min(now + by_id[current].time_limit, budget_end)
            elif state is Phase.BETWEEN and kind == "done" and position == len(order):
                return Stop.DONE
            elif state is Phase.RUNNING and kind in ("result", "error") and message.get("item") == current:
                if kind == "result":
                    outcomes[current] = Observed(message.get("observation"), now - started)
                elif message.get("tampered"):
                    flags[Flag("tampering", "changed the code of the grader's checks")] = None
                    outcomes[current] = Failed("integrity", str(message.get("message")), now - started)
                else:
                    text = str(message.get("message"))
                    if message.get("not_implemented"):
                        text = "not implemented yet: " + text
                    outcomes[current] = Failed("error", text, now - started)
                state, current, deadline = Phase.BETWEEN, None, min(now + GAP_LIMIT, budget_end)
            else:
                what = f"{kind!r}" + (f" for {message.get('item')!r}" if "item" in message else "")
                expected = {Phase.IMPORTING: "ready", Phase.BETWEEN: "the next start or done",
                            Phase.RUNNING: f"the result of {current!r}"}[state]
                raise _Violation("protocol", f"a {what} frame where {expected} was due")
    except _Violation as violation:
        flags[Flag(violation.kind, str(violation))] = None
        _drain_flags(worker, flags)
        fail_rest("integrity", f"not graded: the grading process broke the protocol ({violation})",
                  time.monotonic() - started)
        return Stop.VIOLATION


def judge(items: list[Item], outcomes: dict[str, Outcome], inputs: GradingInputs) -> list[ItemResult]:
    results = []
    for item in items:
        outcome = outcomes.get(item.id, Failed("skipped", "not run"))
        if isinstance(outcome, Observed):
            _, judge_fn = CHECKS[item.check]
            ctx = JudgeContext(inputs.weights, inputs.train_labels, inputs.probe_for(item.id),
                               inputs.heldout_labels, inputs.train_images, inputs.heldout_images)
            try:
                fraction, message = judge_fn(outcome.observation, ctx, item.params)
            except Exception as exc:  # noqa: BLE001
                # Observations (and files in scratch) came from the submission's process:
                # whatever cannot be judged scores 0, and never stops the grading.
                fraction, message = 0.0, f"the observations were malformed ({type(exc).__name__}: {exc})"[:500]
            fraction = round(float(min(max(fraction, 0.0), 1.0)), 6)
            status = "passed" if fraction == 1.0 else "partial" if fraction > 0 else "failed"
            results.append(ItemResult(item.id, item.title, round(item.points * fraction, 4),
                                      item.points, status, message, round(outcome.seconds, 2),
                                      item.visibility))
        else:
            results.append(ItemResult(item.id, item.title, 0.0, item.points, outcome.status,
                                      outcome.message, round(outcome.seconds, 2), item.visibility))
    return results


def grading_seed(rubric: Rubric) -> int:
    return DEFAULT_HELDOUT_SEED if rubric.heldout_seed is None else rubric.heldout_seed


def report(name: str, items: list[Item], found: Collection, inputs: GradingInputs,
           rubric: Rubric, seconds: float) -> Report:
    """Judge what was collected (here, where the held-out labels are) into a report."""
    return Report(name, judge(items, found.outcomes, inputs), rubric=rubric.source,
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
                        sandbox=sandbox, threads=threads, startup_limit=startup_limit,
                        seed=grading_seed(rubric))
    finally:
        if own_dir:
            shutil.rmtree(work_dir, ignore_errors=True)
    return report(name or str(module_file), items, found, inputs, rubric, time.monotonic() - start)


def collect_submission(source: str | os.PathLike, items: list[Item],
                       inputs: WorkerInputs | Callable[[], WorkerInputs], *,
                       item_seeds: dict[str, int], own_folder: bool = False, strict: bool = False,
                       sandbox: sandbox_mod.Sandbox | None = None, threads: int | None = None,
                       startup_limit: float = STARTUP_LIMIT, label: str = "",
                       progress: Callable[[str], None] | None = None) -> Collection:
    """Prepare one submission (.py, .ipynb, .zip or a folder), collect its observations
    and clean up: the half of grading that runs submission code, here or on a cluster
    worker. With `own_folder` (a student checking their own file) the submission's folder
    is its file's folder; otherwise only what the submission itself holds is shown to it.
    A submission that cannot be read yields "skipped" outcomes with the reason (with
    `strict`, its SubmissionError is raised instead)."""
    from .submission import materialize

    source = Path(source)
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in label)[:40]
    work = Path(tempfile.mkdtemp(prefix=f"grader-{safe}-" if safe else "grader-"))
    try:
        os.chmod(work, 0o711)
        try:
            module_file, folder = materialize(source, work / "in")
        except SubmissionError as exc:
            if strict:
                raise
            return Collection({i.id: Failed("skipped", str(exc)) for i in items}, import_failed=True)
        if own_folder and source.is_file():
            folder = source.resolve().parent
        _readable(work / "in")
        return collect(module_file, folder, items, inputs, work / "run", sandbox=sandbox,
                       threads=threads, startup_limit=startup_limit, item_seeds=item_seeds,
                       progress=progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def grade_submission(source: str | os.PathLike, rubric: Rubric,
                     inputs: GradingInputs | Future, *, include_hidden: bool = True,
                     only: list[str] | None = None, name: str | None = None,
                     own_folder: bool = False, strict: bool = False,
                     sandbox: sandbox_mod.Sandbox | None = None, threads: int | None = None,
                     startup_limit: float = STARTUP_LIMIT,
                     progress: Callable[[str], None] | None = None) -> Report:
    """Collect and judge one submission: the one grading path of `grader check`, `grader
    batch`, the notebook checks and the Gradescope entry point (`grader batch --scheduler`
    runs the collecting half, `collect_submission`, on a cluster worker and judges here).
    `inputs` may still be in the making (a Future): the worker imports TensorFlow
    meanwhile. `only` keeps the items with these ids; `progress` hears each item start."""
    items = [i for i in rubric.select(include_hidden) if only is None or i.id in only]
    start = time.monotonic()
    seeds = {i.id: item_seed(grading_seed(rubric), i.id) for i in items}

    def resolved() -> GradingInputs:
        return inputs.result() if isinstance(inputs, Future) else inputs

    found = collect_submission(source, items, lambda: resolved().for_worker(), item_seeds=seeds,
                               own_folder=own_folder, strict=strict, sandbox=sandbox,
                               threads=threads, startup_limit=startup_limit, label=name or "",
                               progress=progress)
    return report(name or str(source), items, found, resolved(), rubric, time.monotonic() - start)


def unreadable_report(name: str, rubric: Rubric, include_hidden: bool, message: str) -> Report:
    """The report of a submission that could not be graded at all, with the reason."""
    return Report(name, [ItemResult(i.id, i.title, 0.0, i.points, "skipped", message, 0.0,
                                    i.visibility) for i in rubric.select(include_hidden)],
                  rubric=rubric.source, import_failed=True)
