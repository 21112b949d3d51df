"""Reading the event files a submission wrote (grader/events.py): bounded whatever it left."""
from __future__ import annotations

import os

import pytest

from grader import events


@pytest.fixture(scope="module")
def event_file(tmp_path_factory):
    """A real event file with 50 'loss' scalars, written by tf.summary."""
    import tensorflow as tf

    folder = tmp_path_factory.mktemp("logs")
    with tf.summary.create_file_writer(str(folder)).as_default():
        for step in range(50):
            tf.summary.scalar("loss", 1.0 / (step + 1), step=step)
    [path] = list(folder.glob("events.out.tfevents.*"))
    return path


def test_scalars_are_read(event_file):
    found = events.scalars(event_file.parent)
    assert len(found["loss"]) == 50 and found["loss"][0] == (0, 1.0)


def test_hard_links_are_read_once_and_all_files_share_one_byte_budget(event_file, tmp_path, monkeypatch):
    folder = tmp_path / "logs"
    folder.mkdir()
    for i in range(12):
        os.link(event_file, folder / f"events.out.tfevents.{i}")
    assert len(events.scalars(folder)["loss"]) == 50  # one inode, read once
    copies = tmp_path / "copies"
    copies.mkdir()
    for i in range(4):
        (copies / f"events.out.tfevents.{i}").write_bytes(event_file.read_bytes())
    size = event_file.stat().st_size
    monkeypatch.setattr(events, "MAX_BYTES", size * 4)  # room for all four copies
    assert len(events.scalars(copies)["loss"]) == 200
    monkeypatch.setattr(events, "MAX_BYTES", size * 2)  # room for two of the four copies
    with pytest.raises(events.Bound, match="MB of event records"):
        events.scalars(copies)


def test_too_many_files_or_too_long_a_read_is_a_bound(event_file, tmp_path, monkeypatch):
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(3):
        (folder / f"events.out.tfevents.{i}").write_bytes(event_file.read_bytes())
    monkeypatch.setattr(events, "MAX_FILES", 3)
    assert len(events.scalars(folder)["loss"]) == 150
    monkeypatch.setattr(events, "MAX_FILES", 2)
    with pytest.raises(events.Bound, match="more than 2 event files"):
        events.scalars(folder)
    monkeypatch.setattr(events, "MAX_FILES", 200)
    monkeypatch.setattr(events, "MAX_SECONDS", -1.0)
    with pytest.raises(events.Bound, match="of reading"):
        events.scalars(folder)


def test_kept_values_and_tags_are_bounded(event_file, monkeypatch):
    monkeypatch.setattr(events, "MAX_SCALARS", 7)
    assert len(events.scalars(event_file.parent)["loss"]) == 7
    monkeypatch.setattr(events, "MAX_TAGS", 0)
    assert events.scalars(event_file.parent) == {}


def test_the_walk_is_bounded_by_entries_and_time_and_keeps_its_order(event_file, tmp_path, monkeypatch):
    """A tree of many folders stops the walk at MAX_ENTRIES (or the deadline) before any
    file is read; the files found come folder by folder in name order, links to folders
    not followed."""
    root = tmp_path / "tree"
    for path in ["b/events.out.tfevents.2", "a/z/events.out.tfevents.1", "events.out.tfevents.0",
                 "a/events.out.tfevents.9"]:
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(event_file.read_bytes())
    (root / "c").symlink_to(root / "a")
    assert [p.relative_to(root).as_posix() for p in events.event_files(root)] == [
        "events.out.tfevents.0", "a/events.out.tfevents.9", "a/z/events.out.tfevents.1",
        "b/events.out.tfevents.2"]
    for i in range(30):
        (root / "b" / f"empty{i}").mkdir()
    monkeypatch.setattr(events, "MAX_ENTRIES", 20)
    with pytest.raises(events.Bound, match="more than 20 folders and files"):
        events.scalars(root)
    monkeypatch.setattr(events, "MAX_ENTRIES", 10_000)
    with pytest.raises(events.Bound, match="of reading"):
        events.event_files(root, deadline=0.0)
