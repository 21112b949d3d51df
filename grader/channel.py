"""The worker's result channel: length-prefixed frames of JSON plus an optional .npz.

Only JSON and numpy arrays (loaded with allow_pickle=False) cross it, so nothing the
student's process writes there can run code in the grading process.
"""
from __future__ import annotations

import io
import json
import os
import struct

import numpy as np

MAX_HEADER = 1 << 20
MAX_PAYLOAD = 512 << 20


class ChannelError(Exception):
    """The other side sent something that is not a valid frame."""


def _split(value, arrays: dict, path: str):
    if isinstance(value, np.ndarray):
        arrays[path] = value
        return {"__array__": path}
    if isinstance(value, dict):
        return {k: _split(v, arrays, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_split(v, arrays, f"{path}.{i}") for i, v in enumerate(value)]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _join(value, arrays):
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            return arrays[value["__array__"]]
        return {k: _join(v, arrays) for k, v in value.items()}
    if isinstance(value, list):
        return [_join(v, arrays) for v in value]
    return value


def encode(message: dict) -> bytes:
    arrays: dict = {}
    header = json.dumps(_split(message, arrays, "a")).encode()
    payload = b""
    if arrays:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        payload = buffer.getvalue()
    return struct.pack(">IQ", len(header), len(payload)) + header + payload


def send(fd: int, message: dict) -> None:
    data = memoryview(encode(message))
    while data:
        written = os.write(fd, data)
        data = data[written:]


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def receive(fd: int) -> dict | None:
    """The next message, or None at end of stream."""
    prefix = _read_exact(fd, 12)
    if prefix is None:
        return None
    header_len, payload_len = struct.unpack(">IQ", prefix)
    if header_len > MAX_HEADER or payload_len > MAX_PAYLOAD:
        raise ChannelError(f"frame too large ({header_len} + {payload_len} bytes)")
    header = _read_exact(fd, header_len)
    payload = _read_exact(fd, payload_len) if payload_len else b""
    if header is None or payload is None:
        return None
    try:
        message = json.loads(header)
        arrays = {}
        if payload:
            with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        return _join(message, arrays)
    except (ValueError, KeyError, OSError) as exc:
        raise ChannelError(f"malformed frame ({exc})") from None
