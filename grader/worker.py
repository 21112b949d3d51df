"""The worker process: imports the submission and runs the collect half of each check.

Started by the engine as `python -m grader.worker`, usually inside the sandbox. Before
any of the submission's code runs it reads, from stdin, the channel key, the channel's
descriptor number, the job and the grading inputs (no file of the job is in its view); it
then closes stdin, turns the key into a MAC object
and erases it (see channel.py). Nothing about the channel is in argv, the environment
or a file. The descriptor number in argv is a decoy: nothing legitimate writes to it.

While the submission runs, an audit hook (PEP 578) notes what a person reviewing the
grading should know about: imports of the grader's internals, looks at /proc/*/fd,
writes outside the scratch folder, network attempts (sendmsg and sockets included), and,
from the submission's own code, introspection of the process (gc, frames read from a
traceback or generator, ctypes), child processes (a child is not watched: that it was
started is the flag), signals, and changes to files' owners, times or extended
attributes. Each becomes a signed `flag` frame. The hook does not stop anything: the
sandbox does that. What raises no audit event (a fork through _posixsubprocess, a FIFO)
the engine measures from the sandbox's side, and grader/provenance.py reads in the source.
"""
from __future__ import annotations

import io
import json
import os
import re
import struct
import sys
import time
import traceback
from pathlib import Path
from types import MappingProxyType

from .exercise import PUBLIC_KIT
from .job import Job
from .cells import SKIPPED, cell_line

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
INTROSPECTION = {"gc.get_objects", "gc.get_referrers", "gc.get_referents",
                 "sys._current_frames", "sys._getframe", "ctypes.string_at", "ctypes.dlsym", "ctypes.cdata",
                 "ctypes.addressof", "ctypes.call_function", "ctypes.dlopen"}
PROCESS_EVENTS = {"subprocess.Popen", "os.system", "os.posix_spawn", "os.exec", "os.spawn",
                  "os.fork", "os.forkpty", "pty.spawn"}
METADATA_EVENTS = {"os.utime", "os.chown", "os.setxattr", "os.removexattr", "os.chflags"}
SIGNAL_EVENTS = {"os.kill", "os.killpg", "signal.pthread_kill"}
_FAMILIES = {1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK", 17: "AF_PACKET"}
FRAME_ATTRIBUTES = {"tb_frame", "gi_frame", "cr_frame", "ag_frame"}
"""the frame attributes whose reading raises object.__getattr__ (f_back, f_locals and
f_globals raise nothing: the static scan, provenance.py, names those)"""
PATH_EVENTS = {"open", "os.listdir", "os.scandir", "os.mkdir", "os.remove", "os.rename",
               "os.rmdir", "os.symlink", "os.link", "os.chmod", "os.truncate", "shutil.rmtree"}
MAX_FLAGS = 20


MAX_NOTES = 20


MAX_MESSAGE = 300
"""characters of an error's message in its one line (the failing line's text: MAX_CODE)"""
MAX_CODE = 120
MAX_READ = 20_000
"""characters of an error's message read (TensorFlow's wrapping included)"""
_FRAME = re.compile(r'^[ \t]*File "(?P<file>[^"\n]+)", line (?P<line>\d+), in [^\n]*$', re.M)
"""a frame TensorFlow lists in an error's message (AutoGraph's "in user code:", the
"defined at" of a graph execution error)"""
_RAISED = re.compile(r"^\s*(?P<type>[A-Za-z_][\w.]*): (?P<message>.*)$", re.S)
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_KERAS_CALL = re.compile(r"Exception encountered when calling (?P<layer>[^\n]*?)\.\s*\n\s*\x1b\[1m"
                         r"(?P<message>.*)\x1b\[0m\s*\n\s*Arguments received by ", re.S)
"""Keras' wrapping of an error raised in a layer's call (keras/src/utils/traceback_utils.py)"""


class Source:
    """The module being graded, read before any of its code runs: its lines, and where
    each came from (a notebook's cell and line: cells.cell_line)."""

    def __init__(self, module_file: str = "", text: str = ""):
        self.file, self.text = module_file, text
        self.lines = text.splitlines()

    @classmethod
    def read(cls, module_file: str) -> Source:
        try:
            with open(module_file, encoding="utf-8", errors="replace") as handle:
                return cls(module_file, handle.read())
        except OSError:
            return cls(module_file)

    def place(self, lineno: int) -> str:
        """Where line `lineno` is in the student's own terms, and its text when known."""
        origin = cell_line(self.text, lineno) if self.text else None
        where = f"{origin[0]}, line {origin[1]}" if origin else f"line {lineno}"
        code = self.lines[lineno - 1].strip() if 0 < lineno <= len(self.lines) else ""
        if len(code) > MAX_CODE:
            code = code[:MAX_CODE - 3] + "..."
        return f"{where}: `{code}`" if code else where


def _unwrapped(exc: BaseException) -> tuple[str, str, list[tuple[str, int]]]:
    """(type, message, frames named in the message) of the error a student should read.
    AutoGraph raises the error of a tf.function's code as "in user code:", the frames,
    then "NameError: name 'x' is not defined": its type and message are those last ones.
    A graph execution error lists the frames where the failing op was defined, then the
    op's message. Keras wraps an error in a layer's call with the layer and its arguments:
    the message is the error's own, and the layer is named after it."""
    name = type(exc).__name__
    try:
        text = exc.msg if isinstance(exc, SyntaxError) and isinstance(exc.msg, str) else str(exc)
    except Exception:  # noqa: BLE001 - a submission's exception may refuse to be a string
        text = ""
    text = text[:MAX_READ]  # the regular expressions below stay fast on what is left
    wrapped = text.lstrip().startswith("in user code:") or "defined at (most recent call last):" in text
    found = list(_FRAME.finditer(text)) if wrapped else []
    frames = [(m["file"], int(m["line"])) for m in found]
    if found:
        rest = text[found[-1].end():]
        if text.lstrip().startswith("in user code:"):
            # after the last frame: its source line(s), a blank line, then the error itself
            parts = rest.strip("\n").split("\n\n", 1)
            raised = _RAISED.match(parts[-1].strip()) if len(parts) > 1 else None
            if raised:
                name, rest = raised["type"].rsplit(".", 1)[-1], raised["message"]
        text = rest
    layers = []
    for _ in range(5):  # a layer inside a layer: one wrapping each
        keras_call = _KERAS_CALL.search(text)
        if not keras_call:
            break
        layers.append(keras_call["layer"])
        text = keras_call["message"]
    text = _ANSI.sub("", text) + (f" (in {layers[0]})" if layers else "")
    return name, " ".join(text.split()), frames


def describe(exc: BaseException, module_file: str = "", source: Source | None = None) -> str:
    """One line: the error's type and message (the error AutoGraph wrapped, not its
    wrapping), then where in the submission it happened and that line's text: a
    notebook's "code cell 7 (In [12]), line 3", a module's own line (not said when
    `module_file` is empty). The innermost line of the submission is the place: a frame
    TensorFlow lists in the message (inside a tf.function) before the traceback's."""
    name, text, frames = _unwrapped(exc)
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE - 3] + "..."
    lineno = None
    if module_file:
        inside = [line for file, line in frames if file == module_file]
        called = [f.lineno for f in traceback.extract_tb(exc.__traceback__)
                  if f.filename == module_file and f.lineno]
        lineno = (inside or called or [None])[-1]
        if isinstance(exc, SyntaxError) and exc.lineno and exc.filename == module_file:
            lineno = exc.lineno
    where = ""
    if lineno:
        where = f", at {(source or Source.read(module_file)).place(lineno)}"
    return f"{name}{': ' + text if text else ''}{where}"


def skipped_notes(module) -> list[str]:
    """What a notebook's tolerant import skipped (cells.SKIPPED), one line each."""
    notes = []
    entries = module.__dict__.get(SKIPPED)
    for entry in list(entries)[:MAX_NOTES] if isinstance(entries, list) else []:
        try:
            where, statement, exc = entry
            what = f"`{statement}`" if statement else "the cell, which does not parse"
            why = describe(exc) if isinstance(exc, BaseException) else str(exc)
            notes.append(f"{where}: skipped {what}: {why}"[:400])
        except Exception:  # noqa: BLE001 - the list lives in the submission's namespace
            continue
    return notes


def _read_exactly(fd: int, size: int) -> bytearray:
    buffer = bytearray(size)
    view, got = memoryview(buffer), 0
    while got < size:
        n = os.readv(fd, [view[got:]])
        if n == 0:
            raise SystemExit("grader.worker: its input ended early")
        got += n
    return buffer


def read_sized(fd: int) -> bytearray:
    """What channel.sized wrote."""
    (length,) = struct.unpack(">Q", _read_exactly(fd, 8))
    return _read_exactly(fd, length)


def _arrays(data) -> dict:
    """The arrays of an npz the engine wrote (channel.sized's payload)."""
    import numpy as np

    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _read_bootstrap():
    """(MAC object, channel fd, job, inputs as npz bytes, the descriptor each item's
    inputs come on) from stdin, leaving no copy of the key. Stdin becomes /dev/null."""
    from . import channel

    key = _read_exactly(0, channel.KEY_BYTES)
    (length,) = struct.unpack(">I", _read_exactly(0, 4))
    boot = json.loads(_read_exactly(0, length))
    inputs = read_sized(0)
    mac = channel.mac_from(key)
    del key
    asked = os.dup(0)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    return mac, int(boot["fd"]), Job.from_dict(boot["job"]), inputs, asked


_WRAPPERS = (os.sep + "ctypes" + os.sep, os.sep + "inspect.py", os.sep + "subprocess.py",
             os.sep + "multiprocessing" + os.sep, os.sep + "os.py", "<frozen os>", os.sep + "pty.py",
             os.sep + "socket.py", os.sep + "signal.py")


def _is_wrapper(filename: str) -> bool:
    return any(part in filename for part in _WRAPPERS)


class Libraries:
    """Which frames are a library's: the code of a module the import system loaded, run in
    that module's own namespace. A frame's file name alone proves nothing (code compiled
    under a library's file name looks like the library); the frame's globals must also be
    the namespace of the module that file was loaded as. The modules loaded before the
    submission runs are remembered (the grader's own are dropped from sys.modules later);
    the ones imported afterwards are looked up in sys.modules."""

    def __init__(self):
        self.known = {id(vars(m)): m for m in list(sys.modules.values())
                      if isinstance(m, type(sys)) and isinstance(getattr(m, "__dict__", None), dict)}

    def owns(self, frame) -> bool:
        namespace = frame.f_globals
        module = self.known.get(id(namespace))
        if module is None:
            name = dict.get(namespace, "__name__") if type(namespace) is dict else None
            module = sys.modules.get(name) if isinstance(name, str) else None
        if module is None or not isinstance(module, type(sys)) or module.__dict__ is not namespace:
            return False
        code_file = frame.f_code.co_filename
        return code_file.startswith("<frozen ") or code_file == dict.get(namespace, "__file__")


class Watch:
    """The audit hook: turns events that deserve a person's look into flag frames."""

    def __init__(self, send, module_file: str, scratch: Path, public: frozenset = PUBLIC_KIT):
        self.send, self.module_file, self.public = send, module_file, public
        # Paths are judged by what they resolve to as well as by their text, so neither
        # /dev/fd nor /proc/self/root/... hides where they lead.
        self.scratches = tuple(dict.fromkeys((str(scratch), os.path.realpath(scratch))))
        self.libraries = Libraries()
        self.pid = os.getpid()
        self.seen: dict[tuple[str, str], None] = {}
        self.counts: dict[str, int] = {}
        self.busy = False

    def flag(self, kind: str, detail: str) -> None:
        if (kind, detail) in self.seen or self.counts.get(kind, 0) >= MAX_FLAGS:
            return
        self.seen[(kind, detail)] = None
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.send({"type": "flag", "kind": kind, "detail": detail[:300]})

    def _from_submission(self, depth: int = 2) -> bool:
        """Did the submission's own code make this call, directly or through the standard
        library's thin wrappers (ctypes' CDLL, inspect's frame functions, subprocess)? The
        caller is the submission's unless it is a library's frame (Libraries.owns), so code
        compiled under a library's file name counts as the submission's. Calls that
        libraries make on the submission's behalf are not flagged."""
        frame = sys._getframe(depth)  # past this method and the hook's own frames
        while frame is not None and _is_wrapper(frame.f_code.co_filename):
            frame = frame.f_back
        if frame is None:
            return False
        return frame.f_code.co_filename == self.module_file or not self.libraries.owns(frame)

    def _outside_scratch(self, path: str) -> bool:
        """`path` resolved: /proc/self/root/... is judged as what it leads to."""
        return not any(path == base or path.startswith(base + os.sep) for base in self.scratches) \
            and not path.startswith(("/dev/", "/proc/"))

    def __call__(self, event: str, args: tuple) -> None:
        # A forked child inherits this hook and the signer, not the frame count: it stays
        # silent (its start was flagged in the worker).
        if self.busy or os.getpid() != self.pid:
            return
        if event == "import":
            name = str(args[0])
            if (name == "grader" or name.startswith("grader.")) and name not in self.public:
                self._guarded("internal_import", f"imported {name}")
        elif event in PATH_EVENTS:
            self._path_event(event, args)
        elif event in ("socket.connect", "socket.sendto", "socket.bind"):
            address = args[1] if len(args) > 1 else None
            if not isinstance(address, (str, bytes)):  # AF_UNIX addresses are paths
                self._guarded("network", f"{event.split('.')[1]} to {address!r}")
        elif event == "socket.sendmsg":  # any: a message can carry descriptors over AF_UNIX
            address = args[1] if len(args) > 1 else None
            self._guarded("network", "sendmsg " + (f"to {address!r}" if address is not None
                                                   else "on a connected socket"))
        elif event == "object.__getattr__":
            if len(args) > 1 and args[1] in FRAME_ATTRIBUTES:
                self._if_submission("introspection", f"read {args[1]}")
        elif event in INTROSPECTION:
            self._if_submission("introspection", f"called {event}")
        elif event in PROCESS_EVENTS:
            self._if_submission("subprocess", f"{event} {_program(args)}")
        elif event == "socket.__new__":
            family = args[1] if len(args) > 1 else None
            self._if_submission("network", f"created a socket ({_FAMILIES.get(family, family)})")
        elif event in METADATA_EVENTS:
            self._if_submission("file_metadata", f"{event} {_target(args)}")
        elif event in SIGNAL_EVENTS:
            self._if_submission("signal", f"{event} {_target(args)}"
                                + (f" signal {args[1]}" if len(args) > 1 else ""))

    def _if_submission(self, kind: str, detail: str) -> None:
        """Flag it if the submission's own code made the call (see _from_submission)."""
        self.busy = True
        try:
            if self._from_submission(3):
                self.flag(kind, detail)
        finally:
            self.busy = False

    def _guarded(self, kind: str, detail: str) -> None:
        self.busy = True
        try:
            self.flag(kind, detail)
        finally:
            self.busy = False

    def _path_event(self, event: str, args: tuple) -> None:
        raw = args[0] if args else None
        if isinstance(raw, int) or raw is None:
            return
        try:
            text = os.fsdecode(raw)
            path = os.path.abspath(text)
        except (TypeError, ValueError):
            return
        self.busy = True  # realpath's own calls are not the submission's
        try:
            # from the text, not from abspath's: '..' after a link leaves where the link led
            resolved = os.path.realpath(text)
        except (OSError, ValueError):
            resolved = path
        finally:
            self.busy = False
        seen = (path, resolved)
        if any(_lists_descriptors(p) for p in seen):
            self._guarded("proc_fd", f"{event} {path}")
        elif event == "open":
            mode, flags = (args[1] if len(args) > 1 else "r"), (args[2] if len(args) > 2 else 0)
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & WRITE_FLAGS)
            if writing and self._outside_scratch(resolved):
                self._guarded("write_outside_scratch", f"opened {path} for writing")
        elif event not in ("os.listdir", "os.scandir") and self._outside_scratch(resolved):
            self._guarded("write_outside_scratch", f"{event} {path}")


def _program(args: tuple) -> str:
    """What an audited process start runs, as far as its arguments tell, in 80 characters."""
    for arg in args:
        if isinstance(arg, (str, bytes)):
            return os.fsdecode(arg)[:80]
        if isinstance(arg, (list, tuple)) and arg and isinstance(arg[0], (str, bytes)):
            return " ".join(os.fsdecode(a) for a in arg if isinstance(a, (str, bytes)))[:80]
    return "(a fork)"


def _target(args: tuple) -> str:
    """The path, descriptor or pid an audited call was about, in 120 characters."""
    if not args:
        return ""
    first = args[0]
    if isinstance(first, (str, bytes, os.PathLike)):
        try:
            return os.path.abspath(os.fsdecode(first))[:120]
        except (TypeError, ValueError):
            return "(a path)"
    return str(first) if isinstance(first, int) else type(first).__name__


def _lists_descriptors(path: str) -> bool:
    """A path into a process's descriptor table: /proc/<pid>/fd, /proc/<pid>/task/<tid>/fd
    (and their fdinfo), whatever link led there (/dev/fd is one)."""
    parts = path.split(os.sep)
    return len(parts) >= 4 and parts[1] == "proc" and any(p in ("fd", "fdinfo") for p in parts[3:])


def _hide_internals() -> None:
    """Drop the grader's modules from sys.modules (the worker keeps its own references):
    a submission importing them gets fresh copies, which know no key, and is flagged."""
    for name in [n for n in sys.modules if n == "grader" or n.startswith("grader.")]:
        del sys.modules[name]


def main() -> None:
    from . import channel

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # h5py (imported with Keras) reads platform.uname(), whose processor field runs
    # `uname -p` in a child. Given by the engine instead, an honest worker starts no process
    # at all, so every child the sandbox counts (engine/process.py) is the submission's.
    import platform

    platform.uname().__dict__.setdefault("processor", os.environ.pop("GRADER_PROCESSOR", ""))
    # TensorFlow first: the engine makes and writes the inputs meanwhile, then sends the job.
    import keras
    import tensorflow  # noqa: F401

    mac, fd, job, blob, asked = _read_bootstrap()
    writer = channel.Writer(fd, mac)
    del mac
    send = writer.send

    from .exercise import load
    from .modules import load_module

    exercise = load(job.exercise, job.search_path)
    # Each item's own questions come when it starts (context.given).
    scratch = Path(job.scratch)
    ctx = exercise.worker_context(_arrays(blob), scratch, Path(job.submission_dir))
    del blob

    # Keep our own references before the submission runs, in read-only mappings: patching
    # the grader's module attributes afterwards changes nothing here, and a changed
    # function body is noticed.
    collectors = MappingProxyType(exercise.checks.collectors())
    code_objects = MappingProxyType({name: fn.__code__ for name, fn in collectors.items()})
    set_seed = keras.utils.set_random_seed
    module_file = job.module
    source = Source.read(module_file)  # before any of its code runs
    sys.addaudithook(Watch(send, module_file, scratch, exercise.public_names()))
    _hide_internals()
    if job.search_path:  # the submission's own copy of grader.exercises finds the exercise too
        import importlib

        importlib.import_module("grader.exercises").__path__.extend(job.search_path)
    try:
        module = load_module(module_file, "submission")
    except BaseException as exc:  # SystemExit and KeyboardInterrupt at import included
        send({"type": "import_error", "message": describe(exc, module_file, source)})
        return
    send({"type": "ready", "notes": skipped_notes(module)})
    for item in job.items:
        collect = collectors[item.check]
        send({"type": "start", "item": item.id})
        ctx.given(_arrays(read_sized(asked)))
        if any(fn.__code__ is not code_objects[name] for name, fn in collectors.items()):
            send({"type": "error", "item": item.id, "tampered": True,
                  "message": "the submission modified the grader's code; nothing is graded"})
            continue
        # Every random choice (initialisers, shuffling) repeats on a second grading.
        set_seed(item.seed)
        start = time.perf_counter()
        try:
            observation = collect(module, ctx, item.params)
        except BaseException as exc:
            send({"type": "error", "item": item.id, "message": describe(exc, module_file, source),
                  "not_implemented": isinstance(exc, NotImplementedError),
                  "seconds": time.perf_counter() - start})
            continue
        send({"type": "result", "item": item.id, "observation": observation,
              "seconds": time.perf_counter() - start})
    send({"type": "done"})


if __name__ == "__main__":
    main()
