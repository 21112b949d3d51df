"""Names from a class folder as data (grader.names)."""
from __future__ import annotations

import os

from grader.names import csv_cell, file_name, file_names, shown, student_id


def test_ids_are_one_to_one_and_printable():
    names = ["caf\udce9", "caf\\xe9", "a\nb", "a\\nb", "\x85", "\udc85", "\xa0", "x\u202ey", "ok é"]
    ids = [student_id(n) for n in names]
    assert len(set(ids)) == len(ids) and all(i.isprintable() for i in ids)
    assert ids[0] == "caf\\xe9" and ids[1] == "caf\\\\xe9" and ids[-1] == "ok é"
    assert student_id(os.fsdecode(b"caf\xe9")) == ids[0]


def test_shown_spells_out_what_is_not_printable():
    assert shown("a\u202eb\x1b[2K\n") == "a\\u202eb\\x1b[2K\\n"


def test_csv_cells_never_start_a_formula():
    for value in ["=1+1", "+1", "@SUM(1)", "\tx", "\rx", "-infinity", "-nan", "-1e5", "-2+3"]:
        assert csv_cell(value).startswith("'"), value
    for value in ["-3", "-3.25", "ada", "", 7]:
        assert csv_cell(value) == value


def test_file_names_are_safe_and_never_shared():
    long = "é" * 100
    twin = file_name(long)
    assert twin != long and len(twin.encode()) < 200
    named = file_names([long, twin, "x", "a/b", ".hidden", "l" * 254])
    assert len(set(named.values())) == len(named)
    assert named["x"] == "x"
    assert all("/" not in n and not n.startswith(".") and len(n.encode()) <= 200 for n in named.values())
