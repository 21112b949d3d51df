"""Reading TensorFlow 2 checkpoints without TensorFlow: which tensors a checkpoint holds,
and the values of those the grader asks for.

A checkpoint `folder/ckpt-2` is an index, `ckpt-2.index` (an SSTable mapping each tensor's
key to a BundleEntryProto: dtype, shape, shard, offset, size), and data shards,
`ckpt-2.data-00000-of-00001`, holding the tensors' raw little-endian bytes. The grader
parses both itself, protobuf wire format included, so that scoring never imports
TensorFlow nor runs student code.

The files were written by a submission, so they are read defensively: only regular files
with one hard link, opened without following a link and without blocking (no FIFO, device
or symbolic link); an index of at most MAX_INDEX bytes, read whole, every block of it
inside the file; at most MAX_ENTRIES tensors, keys of at most MAX_KEY bytes, shapes of at
most MAX_DIMS dimensions; at most MAX_VALUES values read in all, only those the caller
wants, each tensor with one seek and one read of exactly its size, checked against its
shape first; at most MAX_SECONDS of reading. A file not in the format is `Unreadable`;
past a bound is `events.Bound`, which the engine records as `integrity`.

Not verified: the crc32c checksums of the blocks and of the tensors (no crc32c library
is installed in the kit's environment), so a damaged value that still has the right size
is read as it is. Not read: string, resource
and variant tensors (the object graph among them) and quantized types, only listed with
their dtype and shape; partitioned tensors (entries with slices, which TensorFlow writes
with a MaxShardSizePolicy smaller than a tensor), listed only, their parts not; files in
big-endian order or with compressed blocks, refused as Unreadable (TensorFlow writes
neither on the machines we grade on).
"""
from __future__ import annotations

import importlib.util
import os
import re
import time
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from . import names
from .errors import SubmissionError
from .events import Bound
from .plainfile import open_plain

# Measured on a checkpoint of the exercise's model (frozen VGG16 convolution base, a Dense
# head, Adam, step), as a CheckpointManager writes it: 37 tensors, a 2.5 KB index, keys of
# at most 81 bytes, 14.7 M values in a 59 MB data file. The bounds leave a wide margin.
MAX_INDEX = 16 << 20
MAX_ENTRIES = 10_000
MAX_KEY = 4096
"""bytes of one key, the shared prefix included"""
MAX_DIMS = 8
MAX_VALUES = 1 << 26
"""values read from one checkpoint in all, those `want` accepts"""
MAX_LISTED = 10_000
"""entries `listing` looks at in a checkpoint folder"""
MAX_STATE = 64 << 10
"""bytes of the `checkpoint` state file (TensorFlow's is a few hundred)"""
MAX_SECONDS = 30.0

_MAGIC = 0xDB4775248B80FB57  # the last 8 bytes of a TensorFlow table, little-endian
_FOOTER = 48                 # two block handles, padded, then the magic
_TRAILER = 5                 # after each block: compression type, masked crc32c

DTYPES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8",
          7: "string", 8: "complex64", 9: "int64", 10: "bool", 11: "qint8", 12: "quint8",
          13: "qint32", 14: "bfloat16", 15: "qint16", 16: "quint16", 17: "uint16",
          18: "complex128", 19: "float16", 20: "resource", 21: "variant", 22: "uint32",
          23: "uint64"}
"""TensorFlow's DataType enum; a number not here is named `dtype N`"""
_NUMPY = {name: np.dtype(code) for name, code in [
    ("float32", "<f4"), ("float64", "<f8"), ("int32", "<i4"), ("uint8", "u1"),
    ("int16", "<i2"), ("int8", "i1"), ("complex64", "<c8"), ("int64", "<i8"),
    ("bool", "u1"), ("uint16", "<u2"), ("complex128", "<c16"), ("float16", "<f2"),
    ("uint32", "<u4"), ("uint64", "<u8")]}
_ITEMSIZE = {name: dtype.itemsize for name, dtype in _NUMPY.items()}
# bfloat16 values are read as TensorFlow returns them, with ml_dtypes' type (installed with
# TensorFlow), imported only when one is read: the import takes half a second.
if importlib.util.find_spec("ml_dtypes") is not None:
    _ITEMSIZE["bfloat16"] = 2
NUMERIC = frozenset(_ITEMSIZE)
"""the dtype names whose values `read` returns"""


def _numpy(dtype: str) -> np.dtype:
    if dtype == "bfloat16":
        from ml_dtypes import bfloat16
        return np.dtype(bfloat16)
    return _NUMPY[dtype]


Want = Callable[[str, str, tuple], bool]


class Unreadable(ValueError):
    """A file that is not a TensorFlow checkpoint as TensorFlow writes it (the message says
    what was found)."""


@dataclass
class Checkpoint:
    """The tensors of one checkpoint."""
    prefix: str
    entries: dict[str, tuple[str, tuple[int, ...]]]
    """every tensor's key: (dtype name, shape), numeric or not"""
    values: dict[str, np.ndarray]
    """the numeric tensors `want` accepted, with their dtype and shape"""


@dataclass
class _Entry:
    dtype: str
    shape: tuple[int, ...]
    shard: int = 0
    offset: int = 0
    size: int = 0
    sliced: bool = False


class _Malformed(Exception):
    """What was found where the format says otherwise (turned into Unreadable by `read`)."""


def _text(key: bytes) -> str:
    """A key as text, one to one (bytes that are not UTF-8 as surrogates, as os.fsdecode)."""
    return key.decode("utf-8", "surrogateescape")


def _shown(key: str) -> str:
    text = names.student_id(key)
    return text if len(text) <= 80 else text[:77] + "..."


def _unreadable(label: str, found: str) -> Unreadable:
    return Unreadable(f"{label}: expected a TensorFlow checkpoint as tf.train.Checkpoint writes "
                      f"it, found {found}; save it again with tf.train.CheckpointManager and "
                      "leave its files as written.")


# --- protobuf wire format and TensorFlow's table format ---------------------------------

def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """The unsigned varint at buf[pos:end] (at most 10 bytes) and the position after it."""
    result = shift = 0
    while shift < 64:
        if pos >= end:
            raise _Malformed(f"a varint cut short at byte {pos}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result & 0xFFFF_FFFF_FFFF_FFFF, pos
        shift += 7
    raise _Malformed(f"a varint longer than 10 bytes ending at byte {pos}")


def _signed(value: int) -> int:
    """A varint as the int64 it encodes."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _fields(buf: bytes, pos: int, end: int) -> Iterator[tuple[int, int, int | tuple[int, int]]]:
    """(field number, wire type, value) of each field of the message at buf[pos:end]; the
    value is an int, or (start, stop) of a length-delimited field's bytes."""
    while pos < end:
        tag, pos = _varint(buf, pos, end)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            if end - pos < width:
                raise _Malformed(f"a protobuf field cut short at byte {pos}")
            value, pos = int.from_bytes(buf[pos:pos + width], "little"), pos + width
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if length > end - pos:
                raise _Malformed(f"a protobuf field of {length} bytes where {end - pos} are left")
            value, pos = (pos, pos + length), pos + length
        else:
            raise _Malformed(f"protobuf wire type {wire}, which checkpoints do not use")
        if number == 0:
            raise _Malformed("a protobuf field numbered 0")
        yield number, wire, value


def _block(data: bytes, offset: int, size: int, limit: int) -> Iterator[tuple[bytes, bytes]]:
    """The (key, value) entries of the table block at data[offset:offset + size], which
    must end, with its trailer, at or before `limit`."""
    if offset + size + _TRAILER > limit:
        raise _Malformed(f"a block at bytes {offset}-{offset + size} of a table whose blocks "
                         f"end at byte {limit}")
    if data[offset + size] != 0:
        raise _Malformed(f"a compressed block (type {data[offset + size]})")
    if size < 4:
        raise _Malformed(f"a block of {size} bytes, too short for its restart count")
    restarts = int.from_bytes(data[offset + size - 4:offset + size], "little")
    if restarts * 4 > size - 4:
        raise _Malformed(f"a block of {size} bytes claiming {restarts} restart points")
    pos, end, key = offset, offset + size - 4 - restarts * 4, b""
    while pos < end:
        shared, pos = _varint(data, pos, end)
        fresh, pos = _varint(data, pos, end)
        length, pos = _varint(data, pos, end)
        if shared > len(key) or fresh + length > end - pos:
            raise _Malformed(f"a block entry at byte {pos} that does not fit its block")
        if shared + fresh > MAX_KEY:
            raise Bound(f"a checkpoint key of more than {MAX_KEY} bytes")
        key = key[:shared] + data[pos:pos + fresh]
        pos += fresh
        yield key, data[pos:pos + length]
        pos += length


def _within(count: int, deadline: float) -> None:
    if count > MAX_ENTRIES:
        raise Bound(f"more than {MAX_ENTRIES} tensors in a checkpoint")
    if time.monotonic() > deadline:
        raise Bound(f"more than {MAX_SECONDS:.0f} s of reading a checkpoint")


def _table(data: bytes, deadline: float) -> Iterator[tuple[bytes, bytes]]:
    """The (key, value) entries of the TensorFlow table `data`, in their (increasing) order."""
    if len(data) < _FOOTER:
        raise _Malformed(f"a file of {len(data)} bytes, shorter than a table's footer")
    if int.from_bytes(data[-8:], "little") != _MAGIC:
        raise _Malformed("no table magic number in its last 8 bytes")
    limit = len(data) - _FOOTER
    pos = limit
    for _ in range(2):  # the metaindex handle: TensorFlow leaves that block empty
        _, pos = _varint(data, pos, len(data) - 8)
    index_offset, pos = _varint(data, pos, len(data) - 8)
    index_size, pos = _varint(data, pos, len(data) - 8)
    blocks, count, last = 0, 0, None
    for _, handle in _block(data, index_offset, index_size, limit):
        blocks += 1  # each costs work, even an empty one: bounded like the entries
        _within(blocks, deadline)
        offset, at = _varint(handle, 0, len(handle))
        size, _ = _varint(handle, at, len(handle))
        for key, value in _block(data, offset, size, limit):
            count += 1
            _within(count - 1, deadline)  # - 1: the header is no tensor
            if last is not None and key <= last:
                raise _Malformed(f"keys out of order or repeated at {_shown(_text(key))!r}")
            last = key
            yield key, value


def _shape(buf: bytes, start: int, stop: int) -> tuple[int, ...]:
    dims = []
    for number, wire, value in _fields(buf, start, stop):
        if number == 3 and value:
            raise _Malformed("a tensor shape of unknown rank")
        if number != 2:
            continue
        if wire != 2:
            raise _Malformed(f"a shape dimension of wire type {wire}")
        if len(dims) == MAX_DIMS:
            raise Bound(f"a tensor of more than {MAX_DIMS} dimensions in a checkpoint")
        size = 0
        for inner, inner_wire, inner_value in _fields(buf, *value):
            if inner == 1:
                if inner_wire != 0:
                    raise _Malformed(f"a dimension size of wire type {inner_wire}")
                size = _signed(inner_value)
        if size < 0:
            raise _Malformed(f"a dimension of size {size}")
        dims.append(size)
    return tuple(dims)


_ENTRY_WIRES = {1: 0, 2: 2, 3: 0, 4: 0, 5: 0, 6: 5, 7: 2}


def _entry(value: bytes) -> _Entry:
    """A BundleEntryProto."""
    entry = _Entry("dtype 0", ())
    for number, wire, field in _fields(value, 0, len(value)):
        if number in _ENTRY_WIRES and wire != _ENTRY_WIRES[number]:
            raise _Malformed(f"field {number} of a tensor entry in wire type {wire}")
        if number == 1:
            entry.dtype = DTYPES.get(field, f"dtype {field}")
        elif number == 2:
            entry.shape = _shape(value, *field)
        elif number == 3:
            entry.shard = field
        elif number == 4:
            entry.offset = _signed(field)
        elif number == 5:
            entry.size = _signed(field)
        elif number == 7:
            entry.sliced = True
    if entry.offset < 0 or entry.size < 0:
        raise _Malformed(f"a tensor at offset {entry.offset} of size {entry.size}")
    return entry


def _header(value: bytes) -> int:
    """The number of data shards a BundleHeaderProto announces."""
    shards, endianness = 1, 0
    for number, wire, field in _fields(value, 0, len(value)):
        if number in (1, 2) and wire != 0:
            raise _Malformed(f"field {number} of the header in wire type {wire}")
        if number == 1:
            shards = _signed(field)
        elif number == 2:
            endianness = field
    if endianness != 0:
        raise _Malformed("a big-endian checkpoint (only little-endian ones are read)")
    if not 1 <= shards <= 99_999:
        raise _Malformed(f"a header announcing {shards} data shards")
    return shards


def _values_in(entry: _Entry) -> int:
    count = 1
    for size in entry.shape:
        count *= size
    return count


def _parse(data: bytes, deadline: float) -> tuple[int, dict[str, _Entry]]:
    """The number of shards and the tensors of a checkpoint index."""
    shards, tensors = None, {}
    for key, value in _table(data, deadline):
        if key == b"":
            shards = _header(value)
            continue
        if key.startswith(b"\0"):
            continue  # a part of a partitioned tensor, keyed by its slice: TensorFlow lists none
        name, entry = _text(key), _entry(value)
        if entry.dtype in NUMERIC and not entry.sliced:
            expected = _values_in(entry) * _ITEMSIZE[entry.dtype]
            if entry.size != expected:
                raise _Malformed(f"tensor {_shown(name)!r} of shape {list(entry.shape)} and "
                                 f"dtype {entry.dtype} stored in {entry.size} bytes, not {expected}")
        tensors[name] = entry
    if shards is None:
        raise _Malformed("no header entry (the empty key)")
    for name, entry in tensors.items():
        if entry.shard >= shards:
            raise _Malformed(f"tensor {_shown(name)!r} in shard {entry.shard} of {shards}")
    return shards, tensors


# --- files ---------------------------------------------------------------------------

def _open(path: str, label: str, prefix_label: str) -> int:
    try:
        return open_plain(path, label=label)
    except SubmissionError as exc:
        raise Unreadable(f"{exc} Checkpoint {prefix_label} needs its .index and all its .data "
                         "files, as TensorFlow wrote them.") from None


def _read_index(path: str, label: str, prefix_label: str) -> bytes:
    with os.fdopen(_open(path, label, prefix_label), "rb") as handle:
        data = handle.read(MAX_INDEX + 1)
    if len(data) > MAX_INDEX:
        size = f"{MAX_INDEX >> 20} MB" if MAX_INDEX >= 1 << 20 else f"{MAX_INDEX} bytes"
        raise Bound(f"a checkpoint index of more than {size}")
    return data


def _read_shard(path: str, label: str, prefix_label: str, wanted: list[tuple[str, _Entry]],
                deadline: float) -> dict[str, np.ndarray]:
    """The tensors `wanted` of one data shard, each read with one seek and one read."""
    found = {}
    with os.fdopen(_open(path, label, prefix_label), "rb", buffering=0) as handle:
        length = os.fstat(handle.fileno()).st_size
        for name, entry in sorted(wanted, key=lambda item: item[1].offset):
            if time.monotonic() > deadline:
                raise Bound(f"more than {MAX_SECONDS:.0f} s of reading a checkpoint")
            if entry.offset + entry.size > length:
                raise _unreadable(label, f"tensor {_shown(name)!r} at bytes {entry.offset}-"
                                  f"{entry.offset + entry.size}, past the end of the file "
                                  f"({length} bytes)")
            raw = np.empty(entry.size, np.uint8)  # bfloat16 arrays have no buffer to read into
            view, got = memoryview(raw), 0
            handle.seek(entry.offset)
            while got < entry.size:
                step = handle.readinto(view[got:])
                if not step:
                    raise _unreadable(label, f"tensor {_shown(name)!r} cut short at byte "
                                      f"{entry.offset + got} (the file shrank while read)")
                got += step
            dtype = _numpy(entry.dtype)
            if entry.dtype == "bool":
                array = raw != 0
            else:
                array = raw.view(dtype)
                if not dtype.isnative:
                    array = array.astype(dtype.newbyteorder("="))
            found[name] = array.reshape(entry.shape)
    return found


def read(prefix: str | os.PathLike, want: Want | None = None) -> Checkpoint:
    """The tensors of the checkpoint at `prefix` (`folder/ckpt-2`): every tensor's dtype
    and shape, and the values of the numeric ones `want(key, dtype name, shape)` accepts
    (default: all of them). Unreadable when the files are not a checkpoint, Bound past the
    module's bounds (MAX_VALUES counts the values `want` accepts)."""
    deadline = time.monotonic() + MAX_SECONDS
    prefix = os.fspath(prefix)
    prefix_label = names.student_id(os.path.basename(prefix))
    label = prefix_label + ".index"
    data = _read_index(prefix + ".index", label, prefix_label)
    try:
        shards, tensors = _parse(data, deadline)
    except _Malformed as exc:
        raise _unreadable(label, str(exc)) from None
    entries = {name: (entry.dtype, entry.shape) for name, entry in tensors.items()}
    chosen = [(name, entry) for name, entry in tensors.items()
              if entry.dtype in NUMERIC and not entry.sliced
              and (want is None or want(name, entry.dtype, entry.shape))]
    if sum(_values_in(entry) for _, entry in chosen) > MAX_VALUES:
        raise Bound(f"more than {MAX_VALUES} values to read from a checkpoint")
    by_shard: dict[int, list[tuple[str, _Entry]]] = {}
    for item in chosen:
        by_shard.setdefault(item[1].shard, []).append(item)
    values = {}
    for shard, wanted in sorted(by_shard.items()):
        name = f"{os.path.basename(prefix)}.data-{shard:05d}-of-{shards:05d}"
        values.update(_read_shard(os.path.join(os.path.dirname(prefix), name),
                                  names.student_id(name), prefix_label, wanted, deadline))
    return Checkpoint(prefix, entries, {name: values[name] for name, _ in chosen})


_NUMBER = re.compile(r"-(\d+)\Z")


def _order(name: str) -> tuple[int, str]:
    match = _NUMBER.search(name)
    return (int(match[1]) if match else -1, name)


def listing(folder: str | os.PathLike) -> list[str]:
    """The prefixes (`folder/ckpt-2`) of the checkpoints in `folder`, one per regular
    `.index` file, in the order of the number that ends them (unnumbered ones first);
    empty when the folder cannot be listed. Bound past MAX_LISTED entries in the folder."""
    folder = os.fspath(folder)
    found, looked = [], 0
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                looked += 1
                if looked > MAX_LISTED:
                    raise Bound(f"more than {MAX_LISTED} entries in a checkpoint folder")
                if (entry.name.endswith(".index") and len(entry.name) > len(".index")
                        and entry.is_file(follow_symlinks=False)):
                    found.append(entry.name[:-len(".index")])
    except OSError:
        return []
    return [os.path.join(folder, name) for name in sorted(found, key=_order)]


_STATE = re.compile(rb'^[ \t]*model_checkpoint_path[ \t]*:[ \t]*"((?:[^"\\\n]|\\.)*)"', re.M)
_ESCAPE = re.compile(rb"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|(.))", re.S)
_ESCAPED = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b", b"f": b"\f",
            b"v": b"\v"}


def _unescape(text: bytes) -> bytes:
    """A text-format protobuf string's bytes (C escapes, octal for non-ASCII bytes)."""
    def one(match: re.Match) -> bytes:
        if match[1]:
            return bytes([int(match[1], 8) & 0xFF])
        if match[2]:
            return bytes([int(match[2], 16)])
        return _ESCAPED.get(match[3], match[3])
    return _ESCAPE.sub(one, text)


def latest(folder: str | os.PathLike) -> str | None:
    """The prefix of the newest checkpoint in `folder`: the one the `checkpoint` state file
    names, when it is present in the folder (matched by its last component only: nothing
    outside the folder is read), else the highest-numbered present one; None when there
    is none."""
    present = listing(folder)
    if not present:
        return None
    try:
        with os.fdopen(open_plain(os.path.join(os.fspath(folder), "checkpoint"),
                                  label="checkpoint"), "rb") as handle:
            state = handle.read(MAX_STATE + 1)
    except SubmissionError:
        state = b""
    match = _STATE.search(state) if len(state) <= MAX_STATE else None
    if match:
        named = os.path.basename(_unescape(match[1]))
        for prefix in present:
            if os.fsencode(os.path.basename(prefix)) == named:
                return prefix
    return present[-1]
