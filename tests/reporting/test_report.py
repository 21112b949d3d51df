"""`grader report OUT`: the class report's numbers against the gradebook, computed here
independently; a self-contained, escaped page; its PNGs; and the edge cases a real batch
brings (no manual items, no details, one failed submission, no flags)."""
from __future__ import annotations

import base64
import contextlib
import io
import json
import re
import shutil
import statistics
import sys
from pathlib import Path

import pytest

import class_fixture  # noqa: E402  (tests/: on the path through tests/conftest.py)

from grader import cli  # noqa: E402
from grader.answers import Answer, Answers  # noqa: E402
from grader.engine import Flag, ItemResult, Report  # noqa: E402
from grader.errors import KitError  # noqa: E402
from grader.records.gradebook import Gradebook  # noqa: E402
from grader.verbs import report  # noqa: E402
from grader.reporting.numbers import normalised  # noqa: E402
from grader.reporting import figures  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"
NAMES = ["scores.png", "items.png", "feedback.png", "accuracy.png", "time.png", "flags.png",
         "manual.png"]


@pytest.fixture(scope="module")
def klass(tmp_path_factory):
    """(OUT of the class fixture, the report's numbers, what it printed)."""
    out = class_fixture.build(tmp_path_factory.mktemp("class") / "out")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        numbers = report.main(str(out))
    return out, numbers, printed.getvalue()


@pytest.fixture
def book(klass):
    gradebook = Gradebook(klass[0] / "gradebook.sqlite")
    yield gradebook
    gradebook.close()


def _totals(book) -> dict[str, float]:
    given = {}
    for m in book.manual():
        given[m["student"]] = given.get(m["student"], 0.0) + m["score"]
    return {r["student"]: r["score"] + given.get(r["student"], 0.0) for r in book.submissions()}


def test_totals_and_counts_match_the_gradebook(klass, book):
    _, numbers, _ = klass
    totals = _totals(book)
    assert numbers["submissions"] == 7
    assert numbers["counts"] == {"graded": 6, "failed": 1, "timed_out": 0}
    assert numbers["totals"] == pytest.approx(totals)
    assert numbers["totals"]["ada"] == pytest.approx(110 + 10)  # the manual grade counts
    assert numbers["mean_total"] == pytest.approx(statistics.mean(totals.values()))
    assert numbers["median_total"] == pytest.approx(statistics.median(totals.values()))
    rubric = json.loads(book.get_meta("rubric_items"))
    manual_points = sum(m["points"] for m in book.manual_items())
    assert numbers["max_total"] == pytest.approx(sum(i["points"] for i in rubric) + manual_points)


def test_items_pass_rates_and_means_in_rubric_order(klass, book):
    _, numbers, _ = klass
    rubric = json.loads(book.get_meta("rubric_items"))
    manual = book.manual_items()
    assert [i["id"] for i in numbers["items"]] == [i["id"] for i in rubric] + [m["id"] for m in manual]
    students = [r["student"] for r in book.submissions()]
    by_id = {i["id"]: i for i in numbers["items"]}
    for item in rubric:
        scores = [next(i["score"] for i in book.items(s) if i["item"] == item["id"]) for s in students]
        assert by_id[item["id"]]["pass_rate"] == pytest.approx(
            sum(s == item["points"] for s in scores) / len(students)), item["id"]
        assert by_id[item["id"]]["mean_fraction"] == pytest.approx(
            sum(scores) / len(scores) / item["points"]), item["id"]
    # bo, cy and fay lost preprocess, gus could not be read: 3 of 7 at full marks
    assert by_id["preprocess"]["pass_rate"] == pytest.approx(3 / 7)
    # the manual item: over the one grade given
    assert by_id["compare_scratch"]["n"] == 1
    assert by_id["compare_scratch"]["pass_rate"] == 1.0
    assert by_id["compare_scratch"]["mean_fraction"] == 1.0


def test_feedback_grouped_by_normalised_message(klass, book):
    _, numbers, _ = klass
    bgr = [s["student"] for s in book.submissions()
           if any(i["item"] == "preprocess" and "BGR" in i["message"] for i in book.items(s["student"]))]
    assert bgr == ["bo", "cy", "fay"]
    preprocess = numbers["messages"]["preprocess"]
    assert len(preprocess) == 1 and preprocess[0]["count"] == 3
    assert "BGR order" in preprocess[0]["example"] and "123.68" in preprocess[0]["example"]
    assert "123.68" not in preprocess[0]["message"] and len(preprocess[0]["message"]) <= 120
    top = numbers["top_messages"][0]
    assert (top["item"], top["count"]) == ("preprocess", 3)
    # accuracies differ per student: one group of the three that lost points
    lost = [s for s in ("bo", "cy", "fay", "ada", "dee", "eve")
            if next(i for i in book.items(s) if i["item"] == "accuracy")["score"] < 10]
    assert numbers["messages"]["accuracy"] == [
        {"item": "accuracy", "message": "accuracy # on # unseen images", "count": len(lost),
         "example": "accuracy 0.110 on 1000 unseen images"}]
    assert numbers["messages"]["frozen"][0]["message"] == (
        "the convolutions changed during training: conv#_# kernel moved by #")
    every = [g for groups in numbers["messages"].values() for g in groups]
    assert not any(g["message"] == "all good" for g in every)
    assert not any("could not be read" in g["message"] for g in every)  # gus: said once, above
    assert "interface" not in numbers["messages"]


def test_normalised():
    assert normalised("accuracy  0.113 on\n500 unseen images") == "accuracy # on # unseen images"
    assert normalised("moved by -1.5e-05, not 3") == "moved by #, not #"
    assert len(normalised("x " * 200)) == 120


def test_accuracy_panels(klass, book):
    _, numbers, _ = klass
    assert list(numbers["accuracy"]) == ["accuracy_quick", "accuracy"]
    params = {i["id"]: i["params"] for i in json.loads(book.get_meta("rubric_items"))}
    for item, found in numbers["accuracy"].items():
        expected = {s["student"]: i["details"]["accuracy"] for s in book.submissions()
                    for i in book.items(s["student"]) if i["item"] == item and i["details"]}
        assert dict(zip(found["students"], found["values"])) == pytest.approx(expected)
        assert "gus" not in found["students"]
        assert (found["lower"], found["upper"]) == (params[item]["lower"], params[item]["upper"])
        assert found["below"] + found["between"] + found["above"] == len(expected)
        assert found["below"] == sum(v <= found["lower"] for v in expected.values())


def test_time_flags_and_manual_progress(klass, book):
    _, numbers, _ = klass
    seconds = {r["student"]: r["seconds"] for r in book.submissions()}
    assert numbers["seconds"]["total"] == pytest.approx(sum(seconds.values()))
    assert numbers["seconds"]["slowest"][0] == {"student": "dee", "seconds": 62.0}
    kinds = {}
    for flag in book.flags():
        kinds.setdefault(flag["kind"], set()).add(flag["student"])
    assert {k: v["submissions"] for k, v in numbers["flags"].items()} == {k: len(v) for k, v in kinds.items()}
    assert numbers["flags"]["introspection"]["flags"] == 1
    assert numbers["flagged"] == ["dee", "fay"]
    progress = numbers["manual"]["compare_scratch"]
    assert {s: progress[s] for s in ("to grade", "graded", "needs review")} == {
        "to grade": 6, "graded": 1, "needs review": 0}
    assert progress["mean"] == 10.0


def test_page_is_self_contained_and_embeds_the_pngs(klass):
    out, numbers, printed = klass
    folder = out / "report"
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert sorted(p.name for p in folder.iterdir()) == sorted(NAMES + ["report.html"])
    assert numbers["figures"] == NAMES
    for name in NAMES:
        data = (folder / name).read_bytes()
        assert data.startswith(PNG), name
        assert b"Software" not in data and b"Matplotlib" not in data, name  # no version
        assert f'src="data:image/png;base64,{base64.b64encode(data).decode()}"' in page, name
    assert "<script" not in page.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)
    assert "<link" not in page.lower() and "@import" not in page
    assert "searched the process&#39;s memory" in page  # FLAG_KINDS' description
    assert "expected the ImageNet mean subtracted" in page
    # the terminal summary
    lines = printed.strip().splitlines()
    assert len(lines) <= 8
    assert lines[0] == "report of 7 submission(s): graded 6, failed 1, timed out 0"
    assert "lowest pass rates: preprocess 43%" in printed
    assert "flags: 2 flag(s), 2 submission(s) to review" in printed
    assert "manual grading: 1 graded, 6 to grade, 0 need review" in printed
    assert lines[-1] == f"report: {folder / 'report.html'}"


def test_figures_are_deterministic(klass, tmp_path):
    out, _, _ = klass
    with contextlib.redirect_stdout(io.StringIO()):
        report.main(str(out), dest=str(tmp_path / "again"))
    for name in ("items.png", "feedback.png"):
        assert (tmp_path / "again" / name).read_bytes() == (out / "report" / name).read_bytes()


def test_hostile_names_and_messages_are_escaped(tmp_path):
    out = class_fixture.build(tmp_path / "out")
    book = Gradebook(out / "gradebook.sqlite")
    try:
        name = '<b>x</b><script>alert(1)</script>'
        hostile = "<img src=x onerror=alert(2)> costs $\\frac{1}{$ 3 \x1b[2J"
        items = [ItemResult(i["id"], i["title"], 0.0, i["points"], "failed", hostile, 1.0,
                            i["visibility"]) for i in json.loads(book.get_meta("rubric_items"))]
        book.record(name, "submissions/x.py", "hash-x", "rubric",
                    Report(name, items, seconds=3.0, flags=[Flag("network", hostile)]),
                    "graded", answers=Answers({"compare_scratch": Answer("an answer")}))
        # a grade given for another answer than the one recorded: needs review
        book.save_manual(name, "compare_scratch", 4.0, [0], "", "old-digest", "ta", 0)
        book.set_similar([("bo", name, 0.9)])  # recorded both ways: one pair
    finally:
        book.close()
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        numbers = report.main(str(out), dest=str(tmp_path / "r"))
    page = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    assert "<b>x</b>" not in page and "<script" not in page and "<img src=x" not in page
    assert "&lt;b&gt;x&lt;/b&gt;&lt;script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert numbers["totals"][name] == 4.0
    assert numbers["flags"]["network"] == {"flags": 1, "submissions": 1,
                                           "description": numbers["flags"]["network"]["description"]}
    assert numbers["flags"]["similar"]["flags"] == 1 and numbers["flags"]["similar"]["submissions"] == 2
    assert numbers["similar"] == [{"a": name, "b": "bo", "score": 0.9, "evidence": "0.90"}]
    assert "3 flag(s), 4 submission(s) to review, 1 similar pair(s)" in printed.getvalue()
    progress = numbers["manual"]["compare_scratch"]
    assert (progress["graded"], progress["needs review"], progress["to grade"]) == (1, 1, 6)
    assert progress["mean"] == pytest.approx(7.0)
    # in a group of its own, drawn in the feedback figure ($...$ taken as text, not as TeX)
    assert [g["count"] for g in numbers["messages"]["preprocess"]] == [3, 1]
    assert numbers["messages"]["preprocess"][1]["example"] == " ".join(hostile.split())


def _bare_book(out: Path, rows: list[tuple[str, str, float]], rubric: bool = True) -> Path:
    """A gradebook without manual items, details or flags: (student, status, fraction)."""
    out.mkdir(parents=True)
    book = Gradebook(out / "gradebook.sqlite")
    try:
        specs = [("a", "First", 2.0), ("b", "Second", 3.0)]
        if rubric:
            book.set_meta("rubric_items", json.dumps([
                {"id": i, "title": t, "points": p, "check": "x", "visibility": "visible",
                 "params": {}} for i, t, p in specs]))
        book.set_manual_items([])
        for student, status, fraction in rows:
            items = [ItemResult(i, t, p * fraction, p, "passed" if fraction == 1 else "failed",
                                "all good" if fraction == 1 else f"off by {fraction}", 0.5, "visible")
                     for i, t, p in specs]
            book.record(student, f"{student}.py", "h", "r",
                        Report(student, items, seconds=1.0, import_failed=status == "failed"),
                        status, "could not read it" if status == "failed" else "")
    finally:
        book.close()
    return out


@pytest.mark.parametrize("rows, rubric", [
    ([("solo", "failed", 0.0)], True),          # a single submission, which could not be read
    ([("one", "graded", 1.0), ("two", "timed_out", 0.5)], False),  # no rubric recorded
])
def test_bare_batches(tmp_path, rows, rubric):
    out = _bare_book(tmp_path / "out", rows, rubric)
    with contextlib.redirect_stdout(io.StringIO()) as printed:
        numbers = report.main(str(out))
    assert [i["id"] for i in numbers["items"]] == ["a", "b"]
    assert numbers["manual"] == {} and numbers["flags"] == {} and numbers["accuracy"] == {}
    for name in NAMES:
        assert (out / "report" / name).read_bytes().startswith(PNG)
    page = (out / "report" / "report.html").read_text(encoding="utf-8")
    assert "No manual items in this rubric." in page and "No flags." in page
    assert "manual grading" not in printed.getvalue() and "flags: none" in printed.getvalue()
    if rows[0][1] == "failed":
        assert numbers["items"][0]["pass_rate"] == 0.0 and numbers["messages"] == {}
        assert numbers["totals"] == {"solo": 0.0} and numbers["median_total"] == 0.0
        assert "could not read it" in page
    else:
        assert numbers["items"][1]["pass_rate"] == 0.5
        assert numbers["messages"]["a"][0] == {"item": "a", "message": "off by #", "count": 1,
                                               "example": "off by 0.5"}


def test_missing_gradebook_is_one_line(tmp_path):
    with pytest.raises(KitError) as caught:
        report.main(str(tmp_path))
    assert "\n" not in str(caught.value) and "gradebook.sqlite" in str(caught.value)
    assert not (tmp_path / "report").exists()
    assert cli.main(["report", str(tmp_path / "nowhere")]) == 2


def test_an_error_leaves_no_half_written_report(klass, tmp_path, monkeypatch):
    out = tmp_path / "out"
    shutil.copytree(klass[0], out)
    before = {p.name: p.read_bytes() for p in (out / "report").iterdir()}

    def broken(numbers):
        raise RuntimeError("drawing failed")

    monkeypatch.setattr(figures, "_time", broken)
    with pytest.raises(RuntimeError):
        report.main(str(out), dest=str(tmp_path / "new"))
    assert not (tmp_path / "new").exists()
    with pytest.raises(RuntimeError):
        report.main(str(out))  # over the previous report: kept as it was
    assert {p.name: p.read_bytes() for p in (out / "report").iterdir()} == before
    assert not [p for p in list(out.iterdir()) + list(tmp_path.iterdir())
                if p.name.startswith(".") and p.name != ".exports.lock"]  # the exports' own lock


def test_a_folder_of_other_files_is_not_replaced(klass, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(KitError, match="other files"):
        report.main(str(klass[0]), dest=str(tmp_path))
    assert (tmp_path / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("x")
    with pytest.raises(KitError, match="found a file"):
        report.main(str(klass[0]), dest=str(tmp_path / "file"))
