"""One sandboxed worker process, as the grading process sees it: started through the
sandbox with nothing of the grader's environment, its channel, decoy and output read by
threads; and the folders it may see."""
from __future__ import annotations

import fcntl
import os
import platform
import pwd
import queue
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from .. import channel, sandbox as sandbox_mod
from ..paths import PACKAGE_PARENT

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


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
        # The most the children reaped inside the sandbox have cost, per reaper (the worker;
        # with bwrap also the namespace's PID 1, which reaps orphans), sampled from /proc.
        self._reaped: dict[str, tuple[int, int]] = {}

    def send_job(self, job, inputs: bytes) -> None:
        """The key, the channel's descriptor number, the job and the inputs, on stdin: no
        file of the job is in the worker's view. Each item's own inputs follow when it
        starts (`send_item`). A thread writes, in order: the worker reads only once
        TensorFlow is imported, and a submission playing the worker may never read."""
        self._stdin.put(channel.bootstrap(self._key, self._chan_fd, job.to_dict(), inputs))
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
            message = self.messages.get(timeout=min(max(timeout, 0.01), 3600.0))
        except queue.Empty:
            return "timeout"
        self.sample()
        return message

    def _pids(self) -> tuple[int | None, int | None]:
        """(the namespace's PID 1, the worker) as host pids; PID 1 is None unconfined (the
        trampoline exec'd the worker itself)."""
        if not self.confined:
            return None, self.process.pid
        init = sandbox_mod.children_of(self.process.pid)[:1]
        worker = sandbox_mod.children_of(init[0])[:1] if init else []
        return (init[0] if init else None), (worker[0] if worker else None)

    def sample(self) -> None:
        """Note what the children reaped in the sandbox have cost so far. Read from the
        sandbox's side, so a child the audit hook never saw (_posixsubprocess.fork_exec,
        a fork through ctypes) counts too. PID 1's counters are kept only while the worker
        is alive: once PID 1 has reaped the worker, they include the worker's own."""
        init, worker = self._pids()
        if worker is None:
            return
        outer = sandbox_mod.reaped(init) if init is not None else None
        own = sandbox_mod.reaped(worker)
        if own is None:
            return
        for role, counters in (("the worker", own), ("the sandbox's init", outer)):
            if counters is not None:
                before = self._reaped.get(role, (0, 0))
                self._reaped[role] = (max(before[0], counters[0]), max(before[1], counters[1]))

    def children(self) -> str:
        """What the sandbox saw of child processes, as a flag's detail ("" if none): the
        children reaped (by the worker, or as orphans by the namespace's PID 1) and those
        left unreaped. Call while the worker is alive (sample() is taken first)."""
        self.sample()
        said = [f"{role} reaped children that ran {faults} page faults and {ticks / _TICKS:.2f} s of CPU"
                for role, (faults, ticks) in self._reaped.items() if faults or ticks]
        _, worker = self._pids()
        zombies = sum(sandbox_mod.is_zombie(pid) for pid in sandbox_mod.children_of(worker)) \
            if worker is not None else 0
        if zombies:
            said.append(f"{zombies} ended child process(es) of the worker not yet reaped")
        return ("child processes ran in the sandbox: " + "; ".join(said)) if said else ""

    def special_files_in_tmp(self) -> list[tuple[str, str]]:
        """FIFOs, sockets and device nodes in the sandbox's private /tmp (which ends with
        it), seen through the worker's (or PID 1's) /proc/<pid>/root; [] unconfined."""
        if not self.confined:
            return []
        for pid in self._pids()[::-1]:
            if pid is not None:
                found = sandbox_mod.special_files(f"/proc/{pid}/root/tmp")
                if found or os.path.isdir(f"/proc/{pid}/root/tmp"):
                    return [("/tmp/" + path, what) for path, what in found]
        return []

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


def worker_env(scratch: Path, threads: int | None = None) -> dict:
    """The worker's whole environment: nothing of the grader's own is passed on."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
           "HOME": str(scratch), "TMPDIR": str(scratch), "PYTHONPATH": str(PACKAGE_PARENT),
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0", "KERAS_BACKEND": "tensorflow",
           "TF_CPP_MIN_LOG_LEVEL": "2", "MPLBACKEND": "Agg",
           "GRADER_PROCESSOR": platform.processor()}  # what `uname -p` says: see worker.main
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
    _font_list(scratch / ".cache" / "matplotlib")  # the worker's HOME is scratch
    if sandbox.user:
        entry = pwd.getpwnam(sandbox.user)
        for path in [scratch, *scratch.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
    return scratch


def _font_list(folder: Path) -> None:
    """matplotlib's font list, made in this process (once) and written where the worker's
    matplotlib looks for it. Keras imports matplotlib, which without that list runs
    `fc-list` in child processes; an honest worker starts none, so every child the sandbox
    counts (_Worker.children) is the submission's."""
    try:
        from matplotlib import font_manager
    except ImportError:
        return
    folder.mkdir(parents=True, exist_ok=True)
    font_manager.json_dump(font_manager.fontManager,
                           folder / f"fontlist-v{font_manager.FontManager.__version__}.json")


def _readable(path: Path) -> None:
    """Let the worker's user read `path` (a file or a folder tree) that the grader wrote."""
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if not p.is_symlink():
            os.chmod(p, (p.stat().st_mode | 0o444 | (0o111 if p.is_dir() else 0)) & 0o7777)


class Standby:
    """A worker started ahead of its check, in the work folder that check will use: the
    same sandbox, view (its module folder, still empty; the submission's folder; the
    exercise's package) and environment as a worker started by the check itself, so it
    imports TensorFlow while nobody waits. It has imported nothing of the submission
    (the module is copied into its module folder when the check comes, then named in
    the job), serves one check and is discarded with it. `key` says what it was started
    for; a check with any other key discards it and starts its own."""

    def __init__(self, sandbox: sandbox_mod.Sandbox, folder: Path, exercise, key,
                 threads: int | None = None, tail_bytes: int = 8192, label: str = "warm"):
        self.key, self.sandbox, self.folder = key, sandbox, Path(folder).resolve()
        self.threads, self.tail_bytes = threads, tail_bytes
        self.root = Path(tempfile.mkdtemp(prefix=f"grader-{label}-"))
        self.worker: _Worker | None = None
        self.scratch: Path | None = None
        try:
            os.chmod(self.root, 0o711)
            self.run_dir = self.root / "run"
            self.scratch = _prepare_work_dir(self.run_dir, sandbox)
            self.module_dir = self.run_dir / "module"
            self.module_dir.mkdir()
            _readable(self.module_dir)
            self.read_only = [self.module_dir, self.folder,
                              *[Path(p) / exercise.name for p in exercise.search_path]]
            self.env = worker_env(self.scratch, threads)
            self.budget = channel.Budget()
            self.worker = _Worker(sandbox, self.read_only, self.scratch, self.env, tail_bytes,
                                  self.budget)
        except BaseException:
            self.discard()
            raise

    def serves(self, sandbox: sandbox_mod.Sandbox, folder: Path, exercise,
               threads: int | None) -> bool:
        """Would a check of a submission in `folder` start its first worker exactly like
        this one (sandbox, view, environment), and is this one still waiting for its job
        (alive, nothing sent, nothing heard)?"""
        view = [self.module_dir, Path(folder).resolve(),
                *[Path(p) / exercise.name for p in exercise.search_path]]
        return (self.worker is not None and self.sandbox == sandbox and self.read_only == view
                and self.env == worker_env(self.scratch, threads)
                and self.worker.process.poll() is None and self.worker.messages.empty())

    def take(self) -> _Worker:
        """The worker, for the one check that uses it (the folder goes with that check)."""
        worker, self.worker = self.worker, None
        return worker

    def discard(self) -> None:
        """Kill the worker if it is still here and remove the work folder."""
        if self.worker is not None:
            self.worker.kill()
            self.worker = None
        if self.scratch is not None and self.sandbox.user and self.sandbox.scratch_mb:
            sandbox_mod.release_scratch(self.scratch)
        shutil.rmtree(self.root, ignore_errors=True)
