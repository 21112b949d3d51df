"""Reading a TensorFlow GraphDef without TensorFlow: the nodes of a serialized graph, and
the chain of tf.data datasets that ends at its output (`dataset_chain`).

A dataset's graph (`tf.data.Dataset._as_serialized_graph`) is a GraphDef proto; the
grader decodes the protobuf wire format itself, so judging never imports TensorFlow. The
bytes come from a submission's process, so they are read defensively: at most MAX_BYTES,
MAX_NODES nodes, MAX_FIELDS fields decoded in all and MAX_SECONDS of reading. The reader
knows the few messages it needs (GraphDef, NodeDef, AttrValue, TensorProto, the function
library) and never recurses: a nested message it does not need is skipped by its length
whatever it holds, so nesting costs nothing. A varint longer than ten bytes, a length past
the end of its message, a wire type a field cannot have or a dangling input is
`GraphError`, one line saying what was found.
"""
from __future__ import annotations

import re
import struct
import time
from dataclasses import dataclass, field

MAX_BYTES = 8 << 20
"""bytes of one graph (an honest pipeline's is 156 KB: its 50 example images, 153,600 bytes)"""
MAX_NODES = 1_000
"""nodes of the graph, and nodes of its library's functions (an honest pipeline has under 30)"""
MAX_FUNCTIONS = 100
"""functions in the graph's library (one per map or filter; an honest pipeline has none)"""
MAX_FIELDS = 200_000
"""protobuf fields decoded in all (an honest pipeline's graph has about 300)"""
MAX_ATTRS = 64
"""attributes of one node (dataset ops have under 10)"""
MAX_TEXT = 1_000
"""bytes of a name, an op, an input or a string attribute (TF's are under 100)"""
MAX_DIMS = 32
"""dimensions of a constant's shape (TensorFlow allows 254; the pipeline's have 4)"""
MAX_CHAIN = 100
"""datasets from the output back to the source (an honest pipeline chains under 10)"""
MAX_SECONDS = 5.0
"""of reading one graph (an honest one takes about a millisecond)"""

# DataType enum values (tensorflow/core/framework/types.proto)
DT_INT32, DT_UINT8, DT_INT16, DT_INT8, DT_INT64, DT_BOOL = 3, 4, 5, 6, 9, 10
DT_UINT16, DT_UINT32, DT_UINT64 = 17, 22, 23
_ITEM_SIZES = {DT_INT32: 4, DT_UINT8: 1, DT_INT16: 2, DT_INT8: 1, DT_INT64: 8, DT_BOOL: 1,
               DT_UINT16: 2, DT_UINT32: 4, DT_UINT64: 8}
_SIGNED = {DT_INT32, DT_INT16, DT_INT8, DT_INT64}
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


class GraphError(ValueError):
    """The bytes are not a graph the reader accepts (the message says what was found)."""


@dataclass(frozen=True)
class Tensor:
    """A constant's value as far as the reader decodes it."""
    dtype: int
    shape: tuple[int, ...] | None
    """None: unknown rank"""
    value: int | bool | None
    """a scalar integer or boolean's value; None for anything else"""


@dataclass(frozen=True)
class Function:
    """An attribute naming a function of the library (a map's `f`)."""
    name: str


@dataclass(frozen=True)
class Node:
    name: str
    op: str
    inputs: tuple[str, ...]
    attrs: dict = field(default_factory=dict)
    """name -> int, bool, float, str, Tensor or Function; None for the kinds not decoded
    (lists, shapes, types, placeholders)"""


@dataclass(frozen=True)
class Graph:
    nodes: dict[str, Node]
    """by name, in the graph's order"""
    functions: dict[str, tuple[str, ...]]
    """the library's functions: name -> the ops of their nodes"""


@dataclass(frozen=True)
class Step:
    """One dataset of a chain."""
    op: str
    """the op, as TensorFlow names it (ShuffleDatasetV3)"""
    kind: str
    """the op without 'Dataset' and its version (Shuffle)"""
    args: dict
    """its scalar constant inputs by name (batch_size, drop_remainder, buffer_size, count,
    seed...; None when an input is not a constant scalar) and its reshuffle_each_iteration
    attribute, when it has one"""
    function_ops: tuple[str, ...] = ()
    """for a map or a filter: the ops of its function"""


class _Reader:
    """The wire format over one buffer, with the field budget and deadline of one read."""

    def __init__(self, data: bytes, deadline: float):
        self.data, self.left, self.deadline = data, MAX_FIELDS, deadline

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        data, value, shift = self.data, 0, 0
        while True:
            if pos >= end:
                raise GraphError(f"a varint runs past the end of its message at byte {pos}")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                return value, pos
            shift += 7
            if shift >= 70:
                raise GraphError(f"a varint longer than ten bytes ending at byte {pos}")

    def fields(self, start: int, end: int):
        """(number, wire type, value) of each field in data[start:end]: an int for a
        varint, bytes for a fixed field, a (start, end) span for a length-delimited one."""
        pos = start
        while pos < end:
            self.left -= 1
            if self.left < 0:
                raise GraphError(f"more than {MAX_FIELDS} protobuf fields")
            if self.left % 4096 == 0 and time.monotonic() > self.deadline:
                raise GraphError(f"more than {MAX_SECONDS:g} s of reading")
            key, pos = self.varint(pos, end)
            number, wire = key >> 3, key & 7
            if number == 0:
                raise GraphError(f"field number 0 at byte {pos}")
            if wire == _VARINT:
                value, pos = self.varint(pos, end)
            elif wire in (_FIXED64, _FIXED32):
                size = 8 if wire == _FIXED64 else 4
                if pos + size > end:
                    raise GraphError(f"a fixed field runs past the end of its message at byte {pos}")
                value, pos = self.data[pos:pos + size], pos + size
            elif wire == _BYTES:
                length, pos = self.varint(pos, end)
                if length > end - pos:
                    raise GraphError(f"a length of {length} bytes at byte {pos}, past the end of "
                                     f"its message ({end - pos} bytes left)")
                value, pos = (pos, pos + length), pos + length
            else:
                raise GraphError(f"wire type {wire} (field {number}) at byte {pos}")
            yield number, wire, value

    def text(self, span, what: str) -> str:
        start, end = span
        if end - start > MAX_TEXT:
            raise GraphError(f"{what} of {end - start} bytes, more than {MAX_TEXT}")
        return self.data[start:end].decode("utf-8", "replace")

    def packed(self, wire: int, value, what: str) -> list[int]:
        """A repeated varint field's values: one, or a packed run of them."""
        if wire == _VARINT:
            return [value]
        _expect(wire, _BYTES, what)
        out, (pos, end) = [], value
        while pos < end:
            self.left -= 1
            if self.left < 0:
                raise GraphError(f"more than {MAX_FIELDS} protobuf fields")
            number, pos = self.varint(pos, end)
            out.append(number)
            if len(out) > 1:  # only scalars are decoded: one value is all a judge reads
                break
        return out


def _expect(wire: int, expected: int, what: str) -> None:
    if wire != expected:
        raise GraphError(f"{what} has wire type {wire}, expected {expected}")


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _shape(reader: _Reader, span) -> tuple[int, ...] | None:
    dims: list[int] = []
    for number, wire, value in reader.fields(*span):
        if number == 2:  # dim
            _expect(wire, _BYTES, "a dimension")
            if len(dims) >= MAX_DIMS:
                raise GraphError(f"a constant of more than {MAX_DIMS} dimensions")
            size = 0
            for n, w, v in reader.fields(*value):
                if n == 1:
                    _expect(w, _VARINT, "a dimension's size")
                    size = _signed(v)
            dims.append(size)
        elif number == 3 and wire == _VARINT and value:  # unknown_rank
            return None
    return tuple(dims)


def _tensor(reader: _Reader, span) -> Tensor:
    dtype, shape, content, values = 0, (), None, []
    for number, wire, value in reader.fields(*span):
        if number == 1:
            _expect(wire, _VARINT, "a tensor's dtype")
            dtype = value
        elif number == 2:
            _expect(wire, _BYTES, "a tensor's shape")
            shape = _shape(reader, value)
        elif number == 4:
            _expect(wire, _BYTES, "a tensor's content")
            content = value
        elif number in (7, 10, 11, 16, 17) and not values:  # int, int64, bool, uint32, uint64
            values = reader.packed(wire, value, "a tensor's values")
    scalar = shape == ()
    result = None
    if scalar and dtype in _ITEM_SIZES:
        size = _ITEM_SIZES[dtype]
        if content is not None and content[1] - content[0] == size:
            raw = reader.data[content[0]:content[1]]
            result = int.from_bytes(raw, "little", signed=dtype in _SIGNED)
        elif values:
            result = _signed(values[0]) if dtype in _SIGNED else values[0]
        elif content is None:
            result = 0  # proto3 leaves a zero out
        if result is not None and dtype == DT_BOOL:
            result = bool(result)
    return Tensor(dtype, shape, result)


def _attr(reader: _Reader, span):
    found = None
    for number, wire, value in reader.fields(*span):
        if number == 2:  # s
            _expect(wire, _BYTES, "a string attribute")
            found = reader.text(value, "a string attribute")
        elif number == 3:  # i
            _expect(wire, _VARINT, "an integer attribute")
            found = _signed(value)
        elif number == 4:  # f
            _expect(wire, _FIXED32, "a float attribute")
            found = struct.unpack("<f", value)[0]
        elif number == 5:  # b
            _expect(wire, _VARINT, "a boolean attribute")
            found = bool(value)
        elif number == 8:  # tensor
            _expect(wire, _BYTES, "a tensor attribute")
            found = _tensor(reader, value)
        elif number == 10:  # func: NameAttrList, whose name is field 1 (its attrs are skipped)
            _expect(wire, _BYTES, "a function attribute")
            name = ""
            for n, w, v in reader.fields(*value):
                if n == 1:
                    _expect(w, _BYTES, "a function's name")
                    name = reader.text(v, "a function's name")
            found = Function(name)
        else:  # list, type, shape, placeholder: not decoded
            found = None
    return found


def _node(reader: _Reader, span) -> Node:
    name, op, inputs, attrs = "", "", [], {}
    for number, wire, value in reader.fields(*span):
        if number == 1:
            _expect(wire, _BYTES, "a node's name")
            name = reader.text(value, "a node's name")
        elif number == 2:
            _expect(wire, _BYTES, "a node's op")
            op = reader.text(value, "a node's op")
        elif number == 3:
            _expect(wire, _BYTES, "a node's input")
            if len(inputs) >= MAX_NODES:
                raise GraphError(f"a node with more than {MAX_NODES} inputs")
            inputs.append(reader.text(value, "a node's input"))
        elif number == 5:
            _expect(wire, _BYTES, "a node's attribute")
            if len(attrs) >= MAX_ATTRS:
                raise GraphError(f"a node with more than {MAX_ATTRS} attributes")
            key, entry = "", None
            for n, w, v in reader.fields(*value):
                if n == 1:
                    _expect(w, _BYTES, "an attribute's name")
                    key = reader.text(v, "an attribute's name")
                elif n == 2:
                    _expect(w, _BYTES, "an attribute's value")
                    entry = _attr(reader, v)
            attrs[key] = entry
    if not name or not op:
        raise GraphError(f"a node without {'a name' if not name else 'an op'}")
    return Node(name, op, tuple(inputs), attrs)


def _library(reader: _Reader, span, budget: list[int]) -> dict[str, tuple[str, ...]]:
    functions: dict[str, tuple[str, ...]] = {}
    for number, wire, value in reader.fields(*span):
        if number != 1:  # gradients and registered gradients: not read
            continue
        _expect(wire, _BYTES, "a library function")
        if len(functions) >= MAX_FUNCTIONS:
            raise GraphError(f"more than {MAX_FUNCTIONS} functions in the library")
        name, ops = "", []
        for n, w, v in reader.fields(*value):
            if n == 1:  # signature: OpDef, whose name is field 1
                _expect(w, _BYTES, "a function's signature")
                for n2, w2, v2 in reader.fields(*v):
                    if n2 == 1:
                        _expect(w2, _BYTES, "a function's name")
                        name = reader.text(v2, "a function's name")
            elif n == 3:  # node_def
                _expect(w, _BYTES, "a function's node")
                budget[0] -= 1
                if budget[0] < 0:
                    raise GraphError(f"more than {MAX_NODES} nodes in the library's functions")
                ops.append(_node(reader, v).op)
        functions[name] = tuple(ops)
    return functions


def parse_graph(data: bytes) -> Graph:
    """The nodes and library functions of a serialized GraphDef; GraphError when the bytes
    are not one within the module's bounds."""
    if not isinstance(data, (bytes, bytearray)):
        raise GraphError("the graph is not bytes")
    if len(data) > MAX_BYTES:
        raise GraphError(f"the graph is {len(data)} bytes, more than {MAX_BYTES >> 20} MB")
    reader = _Reader(bytes(data), time.monotonic() + MAX_SECONDS)
    spans, library = [], None
    # Count the nodes before decoding any: a graph claiming a million costs one pass.
    for number, wire, value in reader.fields(0, len(data)):
        if number == 1:
            _expect(wire, _BYTES, "a node")
            if len(spans) >= MAX_NODES:
                raise GraphError(f"the graph holds more than {MAX_NODES} nodes")
            spans.append(value)
        elif number == 2:
            _expect(wire, _BYTES, "the function library")
            library = value
    nodes: dict[str, Node] = {}
    for span in spans:
        node = _node(reader, span)
        if node.name in nodes:
            raise GraphError(f"two nodes named {node.name[:60]!r}")
        nodes[node.name] = node
    functions = _library(reader, library, [MAX_NODES]) if library else {}
    return Graph(nodes, functions)


_DATASET_OP = re.compile(r"[A-Za-z0-9_]*Dataset(V\d+)?")
# The scalar inputs after the input dataset, by op: what TensorFlow 2.21 writes.
_ARGUMENTS = {
    "ShuffleDataset": ("buffer_size", "seed", "seed2"),
    "ShuffleDatasetV2": ("buffer_size", "seed_generator"),
    "ShuffleDatasetV3": ("buffer_size", "seed", "seed2", "seed_generator"),
    "BatchDataset": ("batch_size",),
    "BatchDatasetV2": ("batch_size", "drop_remainder"),
    "ParallelBatchDataset": ("batch_size", "num_parallel_calls", "drop_remainder"),
    "PaddedBatchDatasetV2": ("batch_size",),
    "RepeatDataset": ("count",),
    "PrefetchDataset": ("buffer_size",),
    "TakeDataset": ("count",),
    "SkipDataset": ("count",),
    "ParallelMapDataset": ("num_parallel_calls",),
    "ParallelMapDatasetV2": ("num_parallel_calls",),
}


def _is_dataset(node: Node | None) -> bool:
    return node is not None and _DATASET_OP.fullmatch(node.op) is not None


def _data_inputs(node: Node) -> list[str]:
    """The node names of its data inputs ("name:0" -> "name"; control inputs "^name" left out)."""
    return [i.split(":", 1)[0] for i in node.inputs if not i.startswith("^")]


def _kind(op: str) -> str:
    return re.sub(r"Dataset(V\d+)?$", "", op)


def _step(graph: Graph, node: Node) -> Step:
    inputs = _data_inputs(node)
    args: dict = {}
    for name, source in zip(_ARGUMENTS.get(node.op, ()), inputs[1:]):
        const = graph.nodes.get(source)
        value = const.attrs.get("value") if const is not None and const.op == "Const" else None
        args[name] = value.value if isinstance(value, Tensor) else None
    if "reshuffle_each_iteration" in node.attrs:
        args["reshuffle_each_iteration"] = node.attrs["reshuffle_each_iteration"]
    function = node.attrs.get("f") or node.attrs.get("predicate")
    ops = graph.functions.get(function.name, ()) if isinstance(function, Function) else ()
    return Step(node.op, _kind(node.op), args, ops)


def dataset_chain(graph: Graph) -> list[Step]:
    """The datasets from the source to the graph's output, following each dataset's first
    input back from the `_Retval` node (TensorFlow 2.21 names it "dataset"). A dataset of
    several inputs (zip, concatenate) is followed through its first one."""
    returned = [n for n in graph.nodes.values() if n.op == "_Retval"]
    if len(returned) != 1:
        raise GraphError(f"{len(returned)} _Retval nodes, expected the one of a dataset's graph")
    chain, seen = [], set()
    names = _data_inputs(returned[0])
    node = graph.nodes.get(names[0]) if names else None
    if not _is_dataset(node):
        raise GraphError("the graph's output is not a dataset")
    while node is not None:
        if node.name in seen:
            raise GraphError(f"the chain of datasets loops at {node.name[:60]!r}")
        if len(chain) >= MAX_CHAIN:
            raise GraphError(f"more than {MAX_CHAIN} datasets in a chain")
        seen.add(node.name)
        chain.append(_step(graph, node))
        names = _data_inputs(node)
        if names and names[0] not in graph.nodes:
            raise GraphError(f"input {names[0][:60]!r} names no node")
        following = graph.nodes.get(names[0]) if names else None
        node = following if _is_dataset(following) else None
    chain.reverse()
    return chain


def read_chain(data: bytes) -> list[Step]:
    """The chain of datasets of a serialized dataset graph (GraphError: not one)."""
    return dataset_chain(parse_graph(data))
