"""The signed channel between worker and engine (grader/channel.py): what a frame signed
with the right key can still not do to the grading process."""
from __future__ import annotations

import io
import os
import threading
import zipfile

import numpy as np
import pytest

from grader import channel


def _round_trip(message=None, body=None):
    """Send one frame over a pipe (a message, or a raw (prefix, body) pair signed with the
    key) from a thread, and read it here."""
    key = channel.new_key()
    read_fd, write_fd = os.pipe()

    def send():
        writer = channel.Writer(write_fd, channel.mac_from(bytearray(key)))
        try:
            if body is not None:
                prefix, data = body
                view = memoryview(prefix + channel._tag(writer._mac, 0, prefix, data) + data)
                while view:
                    view = view[os.write(write_fd, view):]
            else:
                writer.send(message)
        finally:
            os.close(write_fd)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        return channel.Reader(read_fd, key).receive()
    finally:
        os.close(read_fd)
        sender.join()


def _frame(payload: bytes) -> tuple[bytes, bytes]:
    header = b'{"type": "result", "observation": {"__array__": "a.x"}}'
    return channel._PREFIX.pack(len(header), len(payload)), header + payload


def test_arrays_travel_exactly():
    sent = {"type": "result", "observation": {"x": np.arange(12, dtype=np.float32).reshape(3, 4)}}
    got = _round_trip(sent)
    assert got["observation"]["x"].tolist() == sent["observation"]["x"].tolist()


def test_a_compressed_member_is_refused_before_it_is_unpacked():
    """A signed frame whose DEFLATE member would unpack to 256 MB: malformed, never unpacked."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("a.x.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False,
                                                          "shape": (1 << 28,)})
            zeros = bytes(1 << 20)
            for _ in range(256):
                member.write(zeros)
    assert len(buffer.getvalue()) < 2 << 20
    with pytest.raises(channel.ChannelError, match="compressed or oversized"):
        _round_trip(body=_frame(buffer.getvalue()))


def test_an_array_claiming_more_than_its_bytes_is_refused_before_allocation():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        with archive.open("a.x.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False,
                                                          "shape": (1 << 40,)})
            member.write(bytes(64))
    with pytest.raises(channel.ChannelError, match="claims more than it holds"):
        _round_trip(body=_frame(buffer.getvalue()))


def test_one_submission_sends_a_bounded_number_of_frames_and_bytes(monkeypatch):
    """Signed frames past the stream's bounds end the stream as malformed, whoever signs."""
    monkeypatch.setattr(channel, "MAX_FRAMES", 5)
    key = channel.new_key()
    read_fd, write_fd = os.pipe()

    def send():
        writer = channel.Writer(write_fd, channel.mac_from(bytearray(key)))
        try:
            for _ in range(8):
                writer.send({"type": "flag", "kind": "network", "detail": "x"})
        except OSError:
            pass
        finally:
            os.close(write_fd)

    sender = threading.Thread(target=send)
    sender.start()
    reader = channel.Reader(read_fd, key)
    try:
        assert [reader.receive()["type"] for _ in range(5)] == ["flag"] * 5
        with pytest.raises(channel.ChannelError, match="more than 5 frames") as caught:
            reader.receive()
        assert caught.value.kind == "malformed"
    finally:
        os.close(read_fd)
        sender.join()
    monkeypatch.setattr(channel, "MAX_STREAM", 1000)
    sent = {"type": "result", "observation": {"x": np.zeros(1000, np.float32)}}
    with pytest.raises(channel.ChannelError, match="MB from one submission's workers"):
        _round_trip(sent)


def test_the_bounds_are_shared_by_all_the_workers_of_one_submission():
    """A crash costs only its item and a fresh worker carries on: the second worker's
    reader starts from what the first one left of the budget, not from a new one."""
    budget = channel.Budget(frames=3, size=10_000)
    assert budget.take(4_000) and budget.take(4_000)
    assert not budget.take(4_000)  # a third worker's first frame: past the bytes
    budget = channel.Budget(frames=2, size=10_000)
    assert budget.take(1) and budget.take(1) and not budget.take(1)


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_an_array_named_twice_in_a_header_is_a_protocol_error():
    """A header naming one 4096x4096 array as the kernel of 40 layers would make the judges
    work 40 times on it: every array is named once, or the frame is malformed."""
    header = ('{"type": "result", "observation": {"head": ['
              + ", ".join(['[{"__array__": "a.k"}, {"__array__": "a.b"}, "relu"]'] * 40)
              + "]}}").encode()
    payload = _npz(**{"a.k": np.zeros((64, 64), np.float32), "a.b": np.zeros(64, np.float32)})
    with pytest.raises(channel.ChannelError, match="referenced more than once") as caught:
        _round_trip(body=(channel._PREFIX.pack(len(header), len(payload)), header + payload))
    assert caught.value.kind == "malformed"


def test_one_array_sent_in_two_places_travels_as_two_arrays():
    """The worker's own side names each place an array is sent from: never refused."""
    kernel = np.arange(6, dtype=np.float32).reshape(2, 3)
    got = _round_trip({"type": "result", "observation": {"a": kernel, "b": [kernel, kernel]}})
    a, (b, c) = got["observation"]["a"], got["observation"]["b"]
    assert a.tolist() == b.tolist() == c.tolist() == kernel.tolist()
    assert not np.shares_memory(a, b) and not np.shares_memory(b, c)


def test_the_values_of_a_frame_are_bounded_even_in_no_bytes():
    """An array of an empty dtype holds a trillion values in no bytes: past MAX_ELEMENTS
    values a frame is malformed, before anything is allocated."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        with archive.open("a.x.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "|V0", "fortran_order": False,
                                                          "shape": (10 ** 12,)})
    with pytest.raises(channel.ChannelError, match="values in one frame") as caught:
        _round_trip(body=_frame(buffer.getvalue()))
    assert caught.value.kind == "malformed"


@pytest.mark.parametrize("reference", ['["a.x"]', "7"])
def test_an_array_reference_that_is_not_a_name_is_malformed(reference):
    header = ('{"type": "result", "observation": {"__array__": ' + reference + "}}").encode()
    payload = _npz(**{"a.x": np.zeros(3)})
    with pytest.raises(channel.ChannelError, match="not a name"):
        _round_trip(body=(channel._PREFIX.pack(len(header), len(payload)), header + payload))
