"""Reading the files students hand in as data: a regular file opened without following a
link and with no other hard link to it, and read up to a bound."""
from __future__ import annotations

import errno
import os
import stat as stat_mod

from . import names
from .errors import SubmissionError

MAX_NOTEBOOK_BYTES = 50 << 20      # a notebook (images in outputs make them large)
MAX_MODULE_BYTES = 1 << 20         # a .py module, and the code of a notebook


def mb(size: int) -> str:
    return f"{size / (1 << 20):.1f} MB"


def open_plain(path, dir_fd: int | None = None, label: str = "") -> int:
    """A descriptor of the regular file at `path`, opened without following a link (checked
    on the open file, so a file swapped for a link after the folder was scanned is refused
    too), with no other hard link to it (a hard link to /etc/shadow is a regular file)."""
    label = label or names.student_id(os.fsdecode(path))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SubmissionError(f"{label}: is a symbolic link; the grader follows no links. "
                                  "Put the file itself there.") from None
        raise SubmissionError(f"{label}: could not be opened ({exc.strerror}).") from None
    info = os.fstat(fd)
    problem = ("is not a regular file (a pipe or a device)" if not stat_mod.S_ISREG(info.st_mode)
               else f"has {info.st_nlink} hard links; the grader reads files with one"
               if info.st_nlink > 1 else "")
    if problem:
        os.close(fd)
        raise SubmissionError(f"{label}: {problem}. Put a copy of the file itself there.")
    return fd


def read_plain(path, limit: int, label: str = "") -> bytes:
    """The bytes of the regular file at `path` (see open_plain), at most `limit` of them."""
    label = label or names.student_id(os.fsdecode(path))
    with os.fdopen(open_plain(path, label=label), "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise SubmissionError(f"{label}: is more than the {mb(limit)} allowed; submit the "
                              "work without data or outputs.")
    return data
