"""Reading the checkpoints a submission wrote (grader/checkpoints.py) without TensorFlow:
the same tensors TensorFlow reads, and bounded whatever the files hold."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from grader import checkpoints
from grader.checkpoints import Unreadable
from grader.events import Bound

MAGIC = (0xDB4775248B80FB57).to_bytes(8, "little")


def _tf_view(prefix: str) -> dict[str, tuple[str, tuple, np.ndarray | None]]:
    """{key: (dtype name, shape, value or None for a string tensor)} as TensorFlow reads them."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(prefix)
    dtypes = reader.get_variable_to_dtype_map()
    return {key: (dtypes[key].name, tuple(shape),
                  None if dtypes[key] == tf.string else reader.get_tensor(key))
            for key, shape in reader.get_variable_to_shape_map().items()}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Real checkpoints, written once by TensorFlow, with what TensorFlow reads back from them:
    'managed' (step, model, Adam; three saves kept two by a CheckpointManager), 'kinds'
    (several dtypes, a scalar, a zero-size tensor, a string), 'shards' (three data files)
    and 'sliced' (one tensor split in parts by the sharding policy)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    root = tmp_path_factory.mktemp("checkpoints")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    optimizer = keras.optimizers.Adam()
    optimizer.apply_gradients([(tf.ones_like(v), v) for v in model.trainable_variables])
    checkpoint = tf.train.Checkpoint(step=tf.Variable(4, dtype=tf.int64), model=model,
                                     optimizer=optimizer)
    manager = tf.train.CheckpointManager(checkpoint, str(root / "managed"), max_to_keep=2)
    for _ in range(3):
        manager.save()
    kinds = tf.train.Checkpoint(
        half=tf.Variable(np.array([[0.5, -2.0, 65504.0]], np.float16)),
        flags=tf.Variable([True, False, True]),
        counts=tf.Variable(np.array([[1, -2], [3, 2**31 - 1]], np.int32)),
        scalar=tf.Variable(2.5),
        empty=tf.Variable(tf.zeros((0, 3))),
        wide=tf.Variable(np.arange(6, dtype=np.float64).reshape(1, 2, 3)),
        brain=tf.Variable(tf.constant([1.5, -3.0], tf.bfloat16)),
        name=tf.Variable("a string"))
    parts = tf.train.Checkpoint(a=tf.Variable(np.arange(100, dtype=np.float32)),
                                b=tf.Variable(np.arange(50, dtype=np.int64)),
                                c=tf.Variable(np.ones(100, np.float32)))

    def sharded(size):  # 400 bytes puts each tensor in its own file; 450 splits one
        policy = tf.train.experimental.MaxShardSizePolicy(max_shard_size=size)
        return tf.train.CheckpointOptions(experimental_sharding_callback=policy)

    prefixes = {"managed": manager.checkpoints, "kinds": [kinds.write(str(root / "kinds" / "k"))],
                "shards": [parts.write(str(root / "shards" / "s"), options=sharded(400))],
                "sliced": [parts.write(str(root / "sliced" / "s"), options=sharded(450))]}
    views = {prefix: _tf_view(prefix) for found in prefixes.values() for prefix in found}
    return {"root": root, "prefixes": prefixes, "views": views}


def _same(ours: np.ndarray, theirs: np.ndarray) -> bool:
    return (ours.dtype == theirs.dtype and ours.shape == theirs.shape
            and ours.tobytes() == theirs.tobytes())


def _agrees(prefix: str, view: dict) -> None:
    """Does `read` list every tensor TensorFlow lists, with its dtype and shape, and return
    every numeric value TensorFlow returns, byte for byte?"""
    found = checkpoints.read(prefix)
    assert set(found.entries) == set(view)
    for key, (dtype, shape, value) in view.items():
        assert found.entries[key] == (dtype, shape), key
        if value is not None:
            assert _same(found.values[key], value), key
    assert set(found.values) == {key for key, (_, _, value) in view.items() if value is not None}


def test_listing_and_latest_follow_the_manager(saved):
    """Are the two checkpoints the manager kept listed in order, the last one the latest?"""
    folder = saved["root"] / "managed"
    kept = saved["prefixes"]["managed"]
    assert [os.path.basename(p) for p in kept] == ["ckpt-2", "ckpt-3"]
    assert checkpoints.listing(folder) == kept
    assert checkpoints.latest(folder) == kept[-1]


def test_a_managed_checkpoint_reads_as_tensorflow_reads_it(saved):
    """Step, model and optimizer tensors: same keys, dtypes, shapes and bytes as TensorFlow."""
    for prefix in saved["prefixes"]["managed"]:
        _agrees(prefix, saved["views"][prefix])
    found = checkpoints.read(saved["prefixes"]["managed"][-1])
    assert found.values["step/.ATTRIBUTES/VARIABLE_VALUE"] == 4
    assert found.values["save_counter/.ATTRIBUTES/VARIABLE_VALUE"] == 3
    assert found.entries["_CHECKPOINTABLE_OBJECT_GRAPH"] == ("string", ())


def test_dtypes_scalars_and_empty_tensors_read_as_tensorflow_reads_them(saved):
    """float16, bool, int32, float64, bfloat16, a scalar and a (0, 3) tensor: exact; the
    string variable listed, not read."""
    [prefix] = saved["prefixes"]["kinds"]
    _agrees(prefix, saved["views"][prefix])
    found = checkpoints.read(prefix)
    assert found.values["empty/.ATTRIBUTES/VARIABLE_VALUE"].shape == (0, 3)
    assert found.values["flags/.ATTRIBUTES/VARIABLE_VALUE"].tolist() == [True, False, True]
    assert found.entries["name/.ATTRIBUTES/VARIABLE_VALUE"] == ("string", ())


def test_several_data_shards_are_read(saved):
    """Three tensors in three data files: each read from its own file."""
    [prefix] = saved["prefixes"]["shards"]
    assert len(list((saved["root"] / "shards").glob("s.data-*-of-00003"))) == 3
    _agrees(prefix, saved["views"][prefix])


def test_a_partitioned_tensor_is_listed_without_its_parts_or_value(saved):
    """Tensors the sharding policy split: listed as TensorFlow lists them, not read, and
    the keys of their parts not listed; the tensors left whole read as TensorFlow reads them."""
    [prefix] = saved["prefixes"]["sliced"]
    view = saved["views"][prefix]
    found = checkpoints.read(prefix)
    assert set(found.entries) == set(view)
    split = [key for key in view if view[key][2] is not None and key not in found.values]
    assert split and all(found.entries[key] == view[key][:2] for key in split)
    assert all(_same(found.values[key], view[key][2]) for key in found.values)


def test_want_chooses_the_values_read_and_the_budget_counts_only_those(saved, monkeypatch):
    prefix = saved["prefixes"]["managed"][-1]
    monkeypatch.setattr(checkpoints, "MAX_VALUES", 5)
    with pytest.raises(Bound, match="more than 5 values"):
        checkpoints.read(prefix)
    found = checkpoints.read(prefix, want=lambda key, dtype, shape: key.startswith("step/"))
    assert list(found.values) == ["step/.ATTRIBUTES/VARIABLE_VALUE"]
    assert len(found.entries) == len(saved["views"][prefix])


def test_latest_falls_back_to_the_highest_number(saved, tmp_path):
    """A state file naming a missing checkpoint, none, or a link: the highest-numbered
    present one (ckpt-10 after ckpt-9); no checkpoint at all: None."""
    index = saved["prefixes"]["kinds"][0] + ".index"
    for n in (9, 10, 2):
        (tmp_path / f"ckpt-{n}.index").write_bytes(Path(index).read_bytes())
    (tmp_path / "other.index").mkdir()
    os.symlink(index, tmp_path / "ckpt-11.index")
    highest = str(tmp_path / "ckpt-10")
    assert checkpoints.listing(tmp_path) == [str(tmp_path / f"ckpt-{n}") for n in (2, 9, 10)]
    assert checkpoints.latest(tmp_path) == highest
    state = tmp_path / "checkpoint"
    state.write_text('model_checkpoint_path: "/elsewhere/ckpt-9"\n')
    assert checkpoints.latest(tmp_path) == str(tmp_path / "ckpt-9")
    state.write_text('model_checkpoint_path: "ckpt-11"\n')
    assert checkpoints.latest(tmp_path) == highest
    state.unlink()
    os.symlink(saved["root"] / "managed" / "checkpoint", state)
    assert checkpoints.latest(tmp_path) == highest
    empty = tmp_path / "empty"
    empty.mkdir()
    assert checkpoints.latest(empty) is None and checkpoints.listing(tmp_path / "none") == []


def test_a_state_file_names_a_checkpoint_by_its_escaped_name(tmp_path):
    """The state file's name is a text-format string: octal escapes for non-ASCII bytes."""
    name = "étape-1"
    _write(tmp_path, name, _table([(b"", HEADER)]))
    _write(tmp_path, "z-2", _table([(b"", HEADER)]))
    escaped = "".join(f"\\{b:03o}" if b > 127 else chr(b) for b in name.encode())
    (tmp_path / "checkpoint").write_text(f'model_checkpoint_path: "{escaped}"\n')
    assert checkpoints.latest(tmp_path) == str(tmp_path / name)


# --- hostile files, built by a small table writer that follows the format ----------------

def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    return bytes(out + bytes([n]))


def _int(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def _message(number: int, body: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(body)) + body


def _entry(dtype: int, shape, offset: int, size: int, shard: int = 0) -> bytes:
    dims = b"".join(_message(2, _int(1, d)) for d in shape)
    return _int(1, dtype) + _message(2, dims) + _int(3, shard) + _int(4, offset) + _int(5, size)


HEADER = _int(1, 1)  # one data shard, little-endian


def _block(entries) -> bytes:
    body = b"".join(_varint(0) + _varint(len(k)) + _varint(len(v)) + k + v for k, v in entries)
    return body + (0).to_bytes(4, "little") + (1).to_bytes(4, "little") + b"\0" * 5


def _table(entries, index_handle: tuple[int, int] | None = None) -> bytes:
    """A table of one data block holding `entries`, (key, value) in increasing key order."""
    data = _block(entries)
    index = _block([(b"\xff", _varint(0) + _varint(len(data) - 5))])
    handle = index_handle or (len(data), len(index) - 5)
    footer = (_varint(0) + _varint(0) + _varint(handle[0]) + _varint(handle[1])).ljust(40, b"\0")
    return data + index + footer + MAGIC


def _write(folder, name: str, index: bytes, data: bytes | None = b"") -> str:
    (folder / f"{name}.index").write_bytes(index)
    if data is not None:
        (folder / f"{name}.data-00000-of-00001").write_bytes(data)
    return str(folder / name)


def _one(dtype: int, shape, offset: int, size: int, key=b"t/.ATTRIBUTES/VARIABLE_VALUE") -> bytes:
    return _table([(b"", HEADER), (key, _entry(dtype, shape, offset, size))])


def test_the_table_writer_here_writes_what_the_reader_reads(tmp_path):
    prefix = _write(tmp_path, "ok", _one(3, (2,), 4, 8), data=b"\0" * 4 + b"\1\0\0\0\2\0\0\0")
    found = checkpoints.read(prefix)
    assert found.values["t/.ATTRIBUTES/VARIABLE_VALUE"].tolist() == [1, 2]


@pytest.mark.parametrize("damage, message", [
    (lambda index: index[:len(index) // 2], "magic number"),
    (lambda index: index[:20], "shorter than a table's footer"),
    (lambda index: index[:-1] + b"\0", "magic number"),
    (lambda index: index[:-48] + b"\xff" * 40 + MAGIC, "varint longer than 10 bytes"),
])
def test_a_damaged_real_index_is_unreadable(saved, tmp_path, damage, message):
    """Truncated, wrong magic, a footer of varints that never end: Unreadable, saying what."""
    index = Path(saved["prefixes"]["managed"][-1] + ".index").read_bytes()
    prefix = _write(tmp_path, "ckpt-1", damage(index))
    with pytest.raises(Unreadable, match=message) as caught:
        checkpoints.read(prefix)
    assert str(caught.value).startswith("ckpt-1.index: expected a TensorFlow checkpoint")
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("index, message", [
    (_table([(b"", HEADER)], index_handle=(10_000, 30)), "past|end at byte"),
    (_table([(b"", HEADER)], index_handle=(0, 1 << 40)), "end at byte"),
    (_one(1, (3,), 0, 8), r"shape \[3\] and dtype float32 stored in 8 bytes, not 12"),
    (_one(1, (2,), 1 << 62, 8), "past the end of the file"),
    (_one(1, (-1, 2), 0, 8), "dimension of size -1"),
    (_one(1, (2,), 0, 8, key=b""), "out of order"),
    (_table([(b"", HEADER), (b"b", _entry(1, (1,), 0, 4)), (b"a", _entry(1, (1,), 0, 4))]),
     "out of order"),
    (_table([(b"", _int(1, 1) + _int(2, 1))]), "big-endian"),
    (_table([(b"", _int(1, 0))]), "0 data shards"),
    (_table([(b"", HEADER), (b"t", _entry(1, (1,), 0, 4, shard=3))]), "shard 3 of 1"),
    (_table([(b"", HEADER), (b"t", _varint(1 << 3) + b"\xff" * 12)]), "varint"),
    (_table([(b"", HEADER), (b"t", _varint(2 << 3 | 2) + _varint(1000))]), "1000 bytes"),
    (_table([(b"", HEADER), (b"t", _varint(1 << 3 | 3))]), "wire type 3"),
    (_table([(b"t", _entry(1, (1,), 0, 4))]), "no header"),
])
def test_a_crafted_index_is_unreadable(tmp_path, index, message):
    """Handles past the end, sizes that disagree with shapes, offsets past the data file,
    negative sizes, keys out of order, big-endian, shards that are not there, varints that
    never end, fields longer than their message, group wire types: Unreadable."""
    prefix = _write(tmp_path, "ckpt-1", index, data=b"\0" * 8)
    with pytest.raises(Unreadable, match=message) as caught:
        checkpoints.read(prefix)
    assert "\n" not in str(caught.value) and "CheckpointManager" in str(caught.value)


def test_a_compressed_block_is_unreadable(tmp_path):
    index = bytearray(_one(1, (1,), 0, 4))
    index[len(_block([(b"", HEADER), (b"t/.ATTRIBUTES/VARIABLE_VALUE", _entry(1, (1,), 0, 4))])) - 5] = 1
    with pytest.raises(Unreadable, match="compressed block"):
        checkpoints.read(_write(tmp_path, "c", bytes(index), data=b"\0" * 4))


def test_a_shape_of_2_to_the_40_values_is_a_bound_unless_not_wanted(tmp_path):
    """Its size agrees with its shape (4 TB): Bound before any allocation; listed when not
    wanted; with a size that disagrees, Unreadable."""
    shape = (1 << 20, 1 << 20)
    prefix = _write(tmp_path, "big", _one(1, shape, 0, 4 << 40))
    with pytest.raises(Bound, match="values to read"):
        checkpoints.read(prefix)
    found = checkpoints.read(prefix, want=lambda key, dtype, shape: False)
    assert found.entries == {"t/.ATTRIBUTES/VARIABLE_VALUE": ("float32", shape)} and not found.values
    with pytest.raises(Unreadable, match="stored in 4 bytes"):
        checkpoints.read(_write(tmp_path, "lie", _one(1, shape, 0, 4)))


def test_too_many_dimensions_entries_or_bytes_are_bounds(tmp_path, monkeypatch):
    with pytest.raises(Bound, match="more than 8 dimensions"):
        checkpoints.read(_write(tmp_path, "dims", _one(1, (1,) * 9, 0, 4)))
    many = [(b"", HEADER)] + [(b"k%04d" % i, _entry(1, (1,), 0, 4)) for i in range(20)]
    prefix = _write(tmp_path, "many", _table(many), data=b"\0" * 4)
    assert len(checkpoints.read(prefix).values) == 20
    monkeypatch.setattr(checkpoints, "MAX_ENTRIES", 19)
    with pytest.raises(Bound, match="more than 19 tensors"):
        checkpoints.read(prefix)
    empty = _block([])  # an index naming one empty data block a hundred times
    index = _block([(b"i%03d" % i, _varint(0) + _varint(len(empty) - 5)) for i in range(100)])
    footer = (_varint(0) + _varint(0) + _varint(len(empty)) + _varint(len(index) - 5))
    with pytest.raises(Bound, match="more than 19 tensors"):
        checkpoints.read(_write(tmp_path, "blocks", empty + index + footer.ljust(40, b"\0") + MAGIC))
    monkeypatch.setattr(checkpoints, "MAX_INDEX", 100)
    with pytest.raises(Bound, match="index of more than 100 bytes"):
        checkpoints.read(prefix)
    monkeypatch.setattr(checkpoints, "MAX_INDEX", 16 << 20)
    monkeypatch.setattr(checkpoints, "MAX_SECONDS", -1.0)
    with pytest.raises(Bound, match="s of reading a checkpoint"):
        checkpoints.read(_write(tmp_path, "one", _one(1, (1,), 0, 4), data=b"\0" * 4))


def test_prefix_compressed_keys_cannot_grow_past_a_bound(tmp_path):
    """Each entry keeps all of the key before it and adds a byte: Bound at MAX_KEY bytes,
    not quadratic memory."""
    entries = [_varint(0) + _varint(1000) + _varint(0) + b"a" * 1000]
    entries += [_varint(1000 + i) + _varint(1) + _varint(0) + b"b" for i in range(5000)]
    data = b"".join(entries) + (0).to_bytes(4, "little") + (1).to_bytes(4, "little")
    index = _block([(b"\xff", _varint(0) + _varint(len(data)))])
    table = data + b"\0" * 5 + index
    footer = (_varint(0) + _varint(0) + _varint(len(data) + 5) + _varint(len(index) - 5))
    table += footer.ljust(40, b"\0") + MAGIC
    with pytest.raises(Bound, match="key of more than 4096 bytes"):
        checkpoints.read(_write(tmp_path, "keys", table))


def test_links_fifos_and_missing_files_are_refused_without_blocking(saved, tmp_path):
    """A symbolic-link index, a hard-linked index, a FIFO as the data file, a missing data
    file: Unreadable naming the file; opening the FIFO does not wait for a writer."""
    real = saved["prefixes"]["kinds"][0]
    os.symlink(real + ".index", tmp_path / "link.index")
    with pytest.raises(Unreadable, match="link.index: is a symbolic link"):
        checkpoints.read(tmp_path / "link")
    hard = _write(tmp_path, "hard", Path(real + ".index").read_bytes(), data=None)
    os.link(hard + ".index", tmp_path / "other")
    with pytest.raises(Unreadable, match="hard.index: has 2 hard links"):
        checkpoints.read(hard)
    fifo = _write(tmp_path, "fifo", Path(real + ".index").read_bytes(), data=None)
    os.mkfifo(fifo + ".data-00000-of-00001")
    with pytest.raises(Unreadable, match="fifo.data-00000-of-00001: is not a regular file"):
        checkpoints.read(fifo)
    gone = _write(tmp_path, "gone", Path(real + ".index").read_bytes(), data=None)
    with pytest.raises(Unreadable, match="gone.data-00000-of-00001: could not be opened"):
        checkpoints.read(gone)
    assert checkpoints.read(gone, want=lambda *_: False).entries  # no data file needed
