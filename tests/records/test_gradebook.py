"""grader.records.gradebook and exports: manual grades beside the autograded ones."""
from __future__ import annotations

import csv
import json
import sqlite3

import pytest

import class_fixture
from grader.answers import Answer, Answers
from grader.engine import ItemResult, Report
from grader.errors import KitError
from grader.records import exports
from grader.records.gradebook import Conflict, Gradebook, open_existing


def _regrade(book: Gradebook, student: str, answer: str, images=()) -> None:
    row = book.submission(student)
    report = Report(student, [ItemResult(i["item"], i["title"], 0.0, i["max_score"], "failed",
                                         "regraded", 0.0, i["visibility"]) for i in book.items(student)])
    book.record(student, row["source"], "new-hash", "rubric", report, "graded",
                answers=Answers({"compare_scratch": Answer(answer, list(images))}))


def test_regrading_keeps_manual_scores_and_a_changed_answer_needs_review(tmp_path):
    out = class_fixture.build(tmp_path / "out")
    book = Gradebook(out / "gradebook.sqlite")
    assert book.manual_status("ada") == {"compare_scratch": "graded"}
    text, images = (book.answers("ada")["compare_scratch"][k] for k in ("text", "images"))
    _regrade(book, "ada", text, images)  # same answer: still graded, score kept
    assert book.manual_status("ada") == {"compare_scratch": "graded"}
    assert book.manual_scores("ada") == {"compare_scratch": 10.0}
    assert book.items("ada")[0]["message"] == "regraded"
    _regrade(book, "ada", text + " Edited after grading.", images)
    assert book.manual_status("ada") == {"compare_scratch": "needs review"}
    assert book.manual_scores("ada") == {"compare_scratch": 10.0}
    items = book.manual_items()  # the item now worth less than the grade given
    book.set_manual_items([{**items[0], "points": 5}])
    assert book.manual_status("eve") == {"compare_scratch": "to grade"}
    _regrade(book, "ada", text, images)
    assert book.manual_status("ada") == {"compare_scratch": "needs review"}
    book.set_manual_items(items)
    # cy answered nothing: no answers row, and the item is still to grade
    assert book.answers("cy") == {} and book.manual_status("cy") == {"compare_scratch": "to grade"}


def test_a_save_over_a_newer_version_is_refused(tmp_path):
    out = class_fixture.build(tmp_path / "out")
    first, second = Gradebook(out / "gradebook.sqlite"), Gradebook(out / "gradebook.sqlite")
    digest = first.answers("bo")["compare_scratch"]["digest"]
    assert first.save_manual("bo", "compare_scratch", 6, [0, 1], "ok", digest, "ta-one", 0) == 1
    with pytest.raises(Conflict, match=r"bo, compare_scratch: ta-one saved a grade at .* reload"):
        second.save_manual("bo", "compare_scratch", 2, [], "no", digest, "ta-two", 0)
    [kept] = second.manual("bo")
    assert (kept["score"], kept["grader"], kept["ticked"], kept["version"]) == (6, "ta-one", [0, 1], 1)
    assert second.save_manual("bo", "compare_scratch", 7, [0, 1], "after reload", digest, "ta-two", 1) == 2
    with pytest.raises(KeyError):
        first.save_manual("nobody", "compare_scratch", 1, [], "", "", "ta", 0)


def test_exports_carry_the_manual_scores_and_comments(tmp_path):
    out = class_fixture.build(tmp_path / "out")
    table = {r["student"]: r for r in csv.DictReader((out / "grades.csv").open())}
    assert table["ada"]["compare_scratch"] == "10" and table["ada"]["manual"] == "graded"
    assert table["bo"]["compare_scratch"] == "" and table["bo"]["manual"] == "1 to grade"
    assert float(table["ada"]["total"]) == float(table["ada"]["max"]) == 120
    feedback = (out / "feedback" / "ada.md").read_text()
    assert "graded by a person" in feedback and "Clear, with numbers." in feedback
    assert "Not graded yet by a person" in (out / "feedback" / "bo.md").read_text()
    results = json.loads((out / "gradescope" / "ada" / "results.json").read_text())
    manual = [t for t in results["tests"] if t["number"] == "compare_scratch"]
    assert manual == [{"name": manual[0]["name"], "number": "compare_scratch", "score": 10.0,
                       "max_score": 10.0, "status": "passed",
                       "output": "graded by a person: Clear, with numbers.", "visibility": "visible"}]
    bo = json.loads((out / "gradescope" / "bo" / "results.json").read_text())
    assert "compare_scratch" not in [t["number"] for t in bo["tests"]]  # not graded: not a test yet
    moodle = list(csv.reader((out / exports.MOODLE_FILE).open()))
    assert moodle[0][0] == "username" and moodle[0][2] == "feedback"
    # what students may see now: before the release, not the hidden accuracy item's 10
    assert moodle[1][:2] == ["ada", "110"] and "Clear, with numbers." in moodle[1][2]
    book = Gradebook(out / "gradebook.sqlite")
    exports.write_all(book, out, released=True)
    assert list(csv.reader((out / exports.MOODLE_FILE).open()))[1][:2] == ["ada", "120"]
    assert "will be shown when the grades are released" not in (out / "feedback" / "ada.md").read_text()


def test_a_grade_for_an_item_no_longer_in_the_rubric_is_kept_and_counted_nowhere(tmp_path):
    out = class_fixture.build(tmp_path / "out")
    book = Gradebook(out / "gradebook.sqlite")
    items = book.manual_items()
    items[0]["id"] = "compare_renamed"
    book.set_manual_items(items)
    assert book.manual("ada") == [] and book.manual_status("ada") == {"compare_renamed": "to grade"}
    assert [(g["student"], g["item"], g["score"]) for g in book.leftover()] == [("ada", "compare_scratch", 10.0)]
    exports.write_all(book, out)
    ada = {r["student"]: r for r in csv.DictReader((out / "grades.csv").open())}["ada"]
    assert ada["compare_renamed"] == "" and float(ada["total"]) == 110  # the 10 counted nowhere


def test_a_gradebook_from_before_manual_items_opens_and_migrates(tmp_path):
    path = tmp_path / "gradebook.sqlite"
    old = sqlite3.connect(path)
    old.executescript("""
        CREATE TABLE submissions (student TEXT PRIMARY KEY, source TEXT NOT NULL,
            content_hash TEXT NOT NULL, grader_version TEXT NOT NULL, rubric_hash TEXT NOT NULL,
            status TEXT NOT NULL, score REAL NOT NULL, max_score REAL NOT NULL,
            seconds REAL NOT NULL, message TEXT NOT NULL, graded_at REAL NOT NULL);
        CREATE TABLE items (student TEXT NOT NULL, position INTEGER NOT NULL, item TEXT NOT NULL,
            title TEXT NOT NULL, score REAL NOT NULL, max_score REAL NOT NULL, status TEXT NOT NULL,
            message TEXT NOT NULL, seconds REAL NOT NULL, visibility TEXT NOT NULL,
            PRIMARY KEY (student, item));
        INSERT INTO submissions VALUES ('ada', 'a.py', 'h', '0', 'r', 'graded', 5, 5, 1, '', 0);
        INSERT INTO items VALUES ('ada', 0, 'interface', 'T', 5, 5, 'passed', 'ok', 1, 'visible');
    """)
    old.close()
    book = Gradebook(path)
    assert book.items("ada")[0]["details"] == {} and book.submission("ada")["answers_problem"] == ""
    assert book.manual_items() == [] and book.manual_status("ada") == {}
    exports.write_all(book, tmp_path)
    assert (tmp_path / "grades.csv").read_text().splitlines()[0] == \
        "student,interface,total,max,status,flags,files"


def test_a_folder_without_a_gradebook_is_one_line(tmp_path):
    with pytest.raises(KitError, match=r"expected the output folder of `grader batch`"):
        open_existing(tmp_path)
    (tmp_path / "gradebook.sqlite").write_text("not a database, but text long enough to look " * 20)
    with pytest.raises(KitError, match=r"expected a gradebook \(SQLite\)"):
        open_existing(tmp_path)


def test_a_save_rewrites_the_csvs_and_that_students_files_only(tmp_path):
    out = class_fixture.build(tmp_path / "out")
    book = Gradebook(out / "gradebook.sqlite")
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and "bo" not in p.parts
              and p.name not in ("bo.md", "grades.csv", exports.MOODLE_FILE, "gradebook.sqlite",
                                 "gradebook.sqlite-wal", "gradebook.sqlite-shm", ".exports.lock")}
    digest = book.answers("bo")["compare_scratch"]["digest"]
    book.save_manual("bo", "compare_scratch", 4, [], "Numbers, no reasons.", digest, "ta", 0)
    exports.write_all(book, out, only="bo")
    assert "Numbers, no reasons." in (out / "feedback" / "bo.md").read_text()
    results = json.loads((out / "gradescope" / "bo" / "results.json").read_text())
    assert [t["score"] for t in results["tests"] if t["number"] == "compare_scratch"] == [4]
    assert {r["student"]: r["compare_scratch"] for r in csv.DictReader((out / "grades.csv").open())}["bo"] == "4"
    assert {p: p.stat().st_mtime_ns for p in before} == before  # nobody else's files touched


def test_every_export_shows_a_total_rounded_once_the_same_way(tmp_path):
    """A total with more digits than a cent (cy's accuracy items, partly met) reads the same
    in grades.csv, moodle.csv and the feedback, and moodle.csv states the maximum."""
    import re

    out = class_fixture.build(tmp_path / "out")
    book = Gradebook(out / "gradebook.sqlite")
    digest = (book.answers("cy").get("compare_scratch") or {}).get("digest", "")
    book.save_manual("cy", "compare_scratch", 0.0, [], "No answer given.", digest, "ta", 0)
    raw = book.submission("cy")["score"]
    exports.write_all(book, out, released=True)
    book.close()
    assert raw != round(raw, 2)
    grades = {r["student"]: r for r in csv.DictReader((out / "grades.csv").open())}
    moodle = {r["username"]: r for r in csv.DictReader((out / exports.MOODLE_FILE).open())}
    total = grades["cy"]["total"]
    assert total == exports.points(raw) and re.fullmatch(r"\d+\.\d{1,2}", total)
    assert list(moodle["cy"].values())[1] == total
    assert f"Score shown: {total} / 120" in (out / "feedback" / "cy.md").read_text()
    assert moodle["cy"]["maximum"] == grades["cy"]["max"] == "120"
    assert "eve" not in moodle  # her written question is still to grade: held back
