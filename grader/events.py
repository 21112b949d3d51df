"""Reading TensorBoard event files without TensorFlow: which scalars were logged.

Event files are TFRecord files (length, CRC, payload, CRC) of `Event` protos; the
grader reads them itself so that scoring never runs TensorFlow or student code.

The files were written by a submission, so they are read defensively: only regular
files (no FIFO, device or symbolic link, which could block or never end), each file once
however many hard links it has, records of at most MAX_RECORD bytes, and at most
MAX_SCALARS values kept (tags are still collected after that, up to MAX_TAGS). More than
MAX_FILES files, more than MAX_ENTRIES folders and files looked at, more than MAX_BYTES of
records in all, or more than MAX_SECONDS of reading (the walk included) is no honest
run's output: `Bound` is raised, and the engine records the item as
`integrity` instead of judging part of what was left.
"""
from __future__ import annotations

import os
import stat
import struct
import time
from pathlib import Path

MAX_FILES = 200
MAX_ENTRIES = 10_000
"""folders and files the walk looks at under a log folder (an honest run writes a few)"""
MAX_RECORD = 1 << 20
MAX_BYTES = 64 << 20
MAX_SCALARS = 100_000
MAX_TAGS = 1_000
MAX_SECONDS = 30.0


class Bound(Exception):
    """The files went past one of the reader's bounds (the message says which)."""


def _records(path: Path, budget: list[int], seen: set):
    """The records of one event file; `budget` holds the bytes left for all the files,
    `seen` the (device, inode) of the files already read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode) or (info.st_dev, info.st_ino) in seen:
            return
        seen.add((info.st_dev, info.st_ino))
        while True:
            header = handle.read(12)
            if len(header) < 12:
                return
            (length,) = struct.unpack("<Q", header[:8])
            if length > MAX_RECORD:
                return
            if 16 + length > budget[0]:
                raise Bound(f"more than {MAX_BYTES >> 20} MB of event records in all")
            payload = handle.read(length)
            handle.read(4)
            if len(payload) < length:
                return
            budget[0] -= 16 + length
            yield payload


def event_files(log_dir: Path, deadline: float | None = None) -> list[Path]:
    """The event files under `log_dir`, folder by folder in name order, without following
    symbolic links into folders. Bound past MAX_FILES of them, past MAX_ENTRIES entries
    looked at (counted while a folder is listed, so a folder of millions stops early), or
    past `deadline` (time.monotonic)."""
    found, looked, todo = [], 0, [Path(log_dir)]
    while todo:
        folder = todo.pop()
        if deadline is not None and time.monotonic() > deadline:
            raise Bound(f"more than {MAX_SECONDS:.0f} s of reading event files")
        entries = []
        try:
            with os.scandir(folder) as listing:
                for entry in listing:
                    looked += 1
                    if looked > MAX_ENTRIES:
                        raise Bound(f"more than {MAX_ENTRIES} folders and files in the log folder")
                    entries.append(entry)
        except OSError:
            continue
        entries.sort(key=lambda e: e.name)
        folders = []
        for entry in entries:
            try:
                is_folder = entry.is_dir()
            except OSError:
                continue
            if is_folder:
                if not entry.is_symlink():
                    folders.append(Path(entry.path))
            elif entry.name.startswith("events.out.tfevents."):
                if len(found) >= MAX_FILES:
                    raise Bound(f"more than {MAX_FILES} event files")
                found.append(Path(entry.path))
        todo.extend(reversed(folders))
    return found


def scalars(log_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value)]} for every scalar in the event files under `log_dir`;
    Bound when the files go past the module's bounds."""
    from tensorboard.compat.proto import event_pb2

    found: dict[str, list[tuple[int, float]]] = {}
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        return found
    budget, seen, kept = [MAX_BYTES], set(), 0
    deadline = time.monotonic() + MAX_SECONDS
    for path in event_files(log_dir, deadline):
        for payload in _records(path, budget, seen):
            if time.monotonic() > deadline:
                raise Bound(f"more than {MAX_SECONDS:.0f} s of reading event files")
            event = event_pb2.Event()
            try:
                event.ParseFromString(payload)
            except Exception:  # a damaged record: skip it, keep what parsed
                continue
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    number = value.simple_value
                elif value.HasField("tensor") and value.tensor.float_val:
                    number = value.tensor.float_val[0]
                elif value.HasField("tensor") and value.tensor.tensor_content:
                    number = struct.unpack("<f", value.tensor.tensor_content[:4])[0]
                else:
                    continue
                if value.tag not in found and len(found) >= MAX_TAGS:
                    continue
                values = found.setdefault(value.tag, [])
                if kept < MAX_SCALARS:
                    values.append((event.step, float(number)))
                    kept += 1
    return found


def scalar_tags(log_dir: str | os.PathLike) -> set[str]:
    return set(scalars(log_dir))
