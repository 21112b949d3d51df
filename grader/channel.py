"""The worker's result channel: authenticated, length-prefixed frames.

A frame is a 12-byte prefix (header and payload lengths), a 32-byte tag, a JSON header
and an optional .npz payload. The tag is HMAC-SHA256 over the frame's sequence number
and its bytes, under a key that only the engine and the worker know: the engine
writes the key (with the channel's descriptor number, the job and the grading inputs)
on the worker's stdin, and the worker turns it into a MAC object and erases it before it
imports the submission. So a frame written by the submission's code (to the descriptor
it found by scanning /proc/self/fd, with this module's own functions, with anything it
finds on disk) fails authentication, and a replayed or reordered one fails too,
because the sequence number is part of what is signed.

Only JSON and numpy arrays (loaded with allow_pickle=False) cross the channel, so
nothing written there can run code in the grading process. Each array of a frame is
named once in its header (a header naming one array as forty layers' kernels would make
the judges work forty times on the bytes of one), and a frame holds at most MAX_ELEMENTS
values in all (an array of an empty dtype holds any number of them in no bytes).
"""
from __future__ import annotations

import hmac
import io
import json
import math
import os
import struct
import threading
import zipfile

import numpy as np

KEY_BYTES = 32
TAG_BYTES = 32
MAX_HEADER = 1 << 20
MAX_PAYLOAD = 512 << 20
MAX_ARRAYS = 10_000
MAX_ELEMENTS = 1 << 26
"""values the arrays of one frame may hold in all (an honest frame holds under 10 million)"""
MAX_FRAMES = 1_000
"""frames one submission's workers may send in all (an honest one sends under 50)"""
MAX_STREAM = 1 << 30
"""bytes one submission's workers may send in all (an honest one sends under 200 MB)"""
_PREFIX = struct.Struct(">IQ")
_SEQ = struct.Struct(">Q")


class ChannelError(Exception):
    """The other side sent something that is not a valid frame.

    `kind` is "tampered" (a frame the key did not sign: written by someone else),
    "malformed" (signed but not decodable) or "truncated" (the stream ended inside a
    frame, as when the process dies while writing)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def new_key() -> bytes:
    return os.urandom(KEY_BYTES)


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


def _join(value, arrays, used: set | None = None):
    """The message with its arrays put back. The worker's _split names every array once, so
    an array named twice (aliased into many places, to multiply the work of judging it) is
    a protocol error (ValueError: the frame is malformed)."""
    used = set() if used is None else used
    if isinstance(value, dict):
        if set(value) == {"__array__"}:
            name = value["__array__"]
            if not isinstance(name, str):
                raise ValueError("an array reference that is not a name")
            if name in used:
                raise ValueError(f"array {name[:60]!r} referenced more than once")
            used.add(name)
            return arrays[name]
        return {k: _join(v, arrays, used) for k, v in value.items()}
    if isinstance(value, list):
        return [_join(v, arrays, used) for v in value]
    return value


def _body(message: dict) -> tuple[bytes, bytes]:
    arrays: dict = {}
    header = json.dumps(_split(message, arrays, "a")).encode()
    payload = b""
    if arrays:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        payload = buffer.getvalue()
    return _PREFIX.pack(len(header), len(payload)), header + payload


def _tag(mac, seq: int, prefix: bytes, body: bytes) -> bytes:
    m = mac.copy()
    m.update(_SEQ.pack(seq) + prefix)
    m.update(body)
    return m.digest()


def mac_from(key: bytearray):
    """A MAC object for `key`; the caller's buffer is zeroed, so no Python object holds
    the key afterwards (the MAC object keeps it inside OpenSSL)."""
    mac = hmac.new(key, digestmod="sha256")
    key[:] = bytes(len(key))
    return mac


class Writer:
    """The worker's end: signs and writes frames in order."""

    def __init__(self, fd: int, mac):
        self._fd, self._mac, self._seq = fd, mac, 0

    def send(self, message: dict) -> None:
        prefix, body = _body(message)
        data = memoryview(prefix + _tag(self._mac, self._seq, prefix, body) + body)
        self._seq += 1
        while data:
            data = data[os.write(self._fd, data):]


class Budget:
    """What all the workers of one submission may send together (MAX_FRAMES frames,
    MAX_STREAM bytes). A crash costs only its item and a fresh worker carries on, so a
    bound per worker would let deliberate crashes multiply it; the grading process keeps
    every accepted observation until it judges."""

    def __init__(self, frames: int | None = None, size: int | None = None):
        self._lock = threading.Lock()
        self.frames = MAX_FRAMES if frames is None else frames
        self.bytes = MAX_STREAM if size is None else size

    def take(self, size: int) -> bool:
        """Count one frame of `size` bytes; False once past either bound."""
        with self._lock:
            self.frames -= 1
            self.bytes -= size
            return self.frames >= 0 and self.bytes >= 0


class Reader:
    """The engine's end: reads frames in order and checks each one's tag. Frames count
    against `budget` (shared by the workers of one submission; by default its own)."""

    def __init__(self, fd: int, key: bytes, budget: Budget | None = None):
        self._fd, self._mac, self._seq = fd, hmac.new(key, digestmod="sha256"), 0
        self._budget = budget or Budget()

    def _read_exact(self, n: int) -> bytes | None:
        chunks, got = [], 0
        while got < n:
            chunk = os.read(self._fd, min(n - got, 1 << 20))
            if not chunk:
                return None
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def receive(self) -> dict | None:
        """The next message, or None at the end of the stream."""
        prefix = self._read_exact(_PREFIX.size)
        if prefix is None:
            return None
        header_len, payload_len = _PREFIX.unpack(prefix)
        if header_len > MAX_HEADER or payload_len > MAX_PAYLOAD:
            raise ChannelError("tampered", f"a frame claiming {header_len} + {payload_len} bytes")
        # Whatever holds the key, the grading process keeps a bounded amount of what it sent.
        if not self._budget.take(header_len + payload_len):
            raise ChannelError("malformed", f"more than {MAX_FRAMES} frames or {MAX_STREAM >> 20} MB "
                                            "from one submission's workers")
        tag = self._read_exact(TAG_BYTES)
        body = self._read_exact(header_len + payload_len) if tag is not None else None
        if body is None:
            raise ChannelError("truncated", "the stream ended inside a frame")
        if not hmac.compare_digest(tag, _tag(self._mac, self._seq, prefix, body)):
            raise ChannelError("tampered", "a frame not signed by the grading worker")
        self._seq += 1
        try:
            message = json.loads(body[:header_len])
            arrays = _arrays(body[header_len:]) if payload_len else {}
            message = _join(message, arrays)
        except (ValueError, KeyError, OSError, zipfile.BadZipFile, RecursionError) as exc:
            raise ChannelError("malformed", f"malformed frame ({str(exc)[:200]})") from None
        if not isinstance(message, dict):
            raise ChannelError("malformed", "a frame that is not an object")
        return message


def _arrays(payload: bytes) -> dict[str, np.ndarray]:
    """The arrays of a frame's payload, an uncompressed npz (as np.savez writes it). Sizes
    are checked before anything is unpacked or allocated: a compressed member, or an array
    header claiming more data than its member holds, is malformed, so a signed frame can
    never make the grading process hold more than the frame's own bytes; nor more than
    MAX_ELEMENTS values, which an empty dtype would otherwise allow in no bytes."""
    arrays, elements = {}, 0
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        members = archive.infolist()
        if len(members) > MAX_ARRAYS:
            raise ValueError(f"{len(members)} arrays in one frame")
        for member in members:
            if member.compress_type != zipfile.ZIP_STORED or member.file_size > len(payload):
                raise ValueError(f"member {member.filename[:60]!r} is compressed or oversized")
            with archive.open(member) as handle:
                version = np.lib.format.read_magic(handle)
                read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                               (2, 0): np.lib.format.read_array_header_2_0}.get(version)
                if read_header is None:
                    raise ValueError(f"npy format {version}")
                shape, _, dtype = read_header(handle)
                count = math.prod(shape)  # exact: no int64 product wrapping round
                if dtype.hasobject or count * dtype.itemsize > member.file_size:
                    raise ValueError(f"array {member.filename[:60]!r} claims more than it holds")
                elements += count
                if elements > MAX_ELEMENTS:
                    raise ValueError(f"more than {MAX_ELEMENTS} values in one frame's arrays")
            with archive.open(member) as handle:
                arrays[member.filename.removesuffix(".npy")] = np.lib.format.read_array(
                    handle, allow_pickle=False)
    return arrays


def bootstrap(key: bytes, fd: int, job: dict, inputs: bytes) -> bytes:
    """What the engine writes first on the worker's stdin: the key, the job as JSON and
    the grading inputs (an npz, `sized`)."""
    text = json.dumps({"fd": fd, "job": job}).encode()
    return key + struct.pack(">I", len(text)) + text + sized(inputs)


def sized(data: bytes) -> bytes:
    """`data` after its length: how the engine writes inputs on the worker's stdin."""
    return struct.pack(">Q", len(data)) + data
