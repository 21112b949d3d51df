"""Reading TensorBoard event files without TensorFlow: which scalars were logged.

Event files are TFRecord files (length, CRC, payload, CRC) of `Event` protos; the
grader reads them itself so that scoring never runs TensorFlow or student code.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path


def _records(path: Path):
    with open(path, "rb") as handle:
        while True:
            header = handle.read(12)
            if len(header) < 12:
                return
            (length,) = struct.unpack("<Q", header[:8])
            payload = handle.read(length)
            handle.read(4)
            if len(payload) < length:
                return
            yield payload


def scalars(log_dir: str | os.PathLike) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value)]} for every scalar in the event files under `log_dir`."""
    from tensorboard.compat.proto import event_pb2

    found: dict[str, list[tuple[int, float]]] = {}
    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        return found
    for path in sorted(log_dir.rglob("events.out.tfevents.*")):
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
