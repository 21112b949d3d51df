"""Reading TensorBoard event files without TensorFlow: which scalars were logged.

Event files are TFRecord files (length, CRC, payload, CRC) of `Event` protos; the
grader reads them itself so that scoring never runs TensorFlow or student code.

The files were written by a submission, so they are read defensively: only regular
files (no FIFO, device or symbolic link, which could block or never end), at most
MAX_FILES of them, records of at most MAX_RECORD bytes and MAX_BYTES per file.
"""
from __future__ import annotations

import os
import stat
import struct
from pathlib import Path

MAX_FILES = 200
MAX_RECORD = 1 << 20
MAX_BYTES = 64 << 20


def _records(path: Path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return
        read = 0
        while read < MAX_BYTES:
            header = handle.read(12)
            if len(header) < 12:
                return
            (length,) = struct.unpack("<Q", header[:8])
            if length > MAX_RECORD:
                return
            payload = handle.read(length)
            handle.read(4)
            if len(payload) < length:
                return
            read += 16 + length
            yield payload


def event_files(log_dir: Path) -> list[Path]:
    """The event files under `log_dir`, without following symbolic links."""
    found = []
    for folder, dirs, files in os.walk(log_dir, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            if name.startswith("events.out.tfevents."):
                found.append(Path(folder) / name)
                if len(found) >= MAX_FILES:
                    return found
    return found


def scalars(log_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value)]} for every scalar in the event files under `log_dir`."""
    from tensorboard.compat.proto import event_pb2

    found: dict[str, list[tuple[int, float]]] = {}
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        return found
    for path in event_files(log_dir):
        for payload in _records(path):
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
                found.setdefault(value.tag, []).append((event.step, float(number)))
    return found


def scalar_tags(log_dir: str | os.PathLike) -> set[str]:
    return set(scalars(log_dir))
