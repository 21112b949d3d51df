"""Run a command with the limits batch grading puts on untrusted code.

    python -m grader.sandbox [--memory-mb N] [--hide DIR]... [--user NAME] [--no-network] -- COMMAND...

Applied in this order, then COMMAND replaces this process: no core files, a cap on
the address space (--memory-mb), a cap on the size of any file written, a network
namespace of its own with no interfaces up (--no-network, needs root), a mount
namespace of its own in which each --hide folder is covered by an empty tmpfs (needs
root; the gradebook, the rubric and other students' work stay out of sight even when
no unprivileged user can be used), and last the switch to an unprivileged user (--user).
"""
from __future__ import annotations

import argparse
import ctypes
import os
import pwd
import resource
import sys

CLONE_NEWNET = 0x40000000
CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE = 16384, 1 << 18
FAILED = 111  # exit code when a limit could not be applied


def _fail(message: str) -> None:
    print(f"sandbox: {message}", file=sys.stderr)
    sys.exit(FAILED)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="grader.sandbox")
    parser.add_argument("--memory-mb", type=int, default=0)
    parser.add_argument("--file-mb", type=int, default=256)
    parser.add_argument("--user", default="")
    parser.add_argument("--no-network", action="store_true")
    parser.add_argument("--hide", action="append", default=[])
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        _fail("no command given")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if args.memory_mb:
        limit = args.memory_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_FSIZE, (args.file_mb << 20, args.file_mb << 20))
    if args.no_network:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNET) != 0:
            _fail(f"could not cut the network (unshare: {os.strerror(ctypes.get_errno())})")
    if args.hide:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWNS) != 0 or libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) != 0:
            _fail(f"could not make a private mount namespace ({os.strerror(ctypes.get_errno())})")
        for folder in args.hide:
            if libc.mount(b"tmpfs", os.fsencode(folder), b"tmpfs", 0, b"size=16k,mode=0700") != 0:
                _fail(f"could not hide {folder} ({os.strerror(ctypes.get_errno())})")
    if args.user:
        try:
            entry = pwd.getpwnam(args.user)
        except KeyError:
            _fail(f"no user named {args.user!r}")
        os.setgroups([])
        os.setgid(entry.pw_gid)
        os.setuid(entry.pw_uid)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        _fail(f"cannot run {command[0]} as {args.user or 'the current user'} ({exc.strerror})")


if __name__ == "__main__":
    main()
