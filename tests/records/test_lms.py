"""grader.records.lms and the LMS upload files: a class downloaded from Moodle or Canvas is
read by the ids in its names, and the files written for the LMS parse back by the rules
each LMS's importer follows (Moodle's assignfeedback_offline and assignfeedback_file
importers, Canvas's gradebook import)."""
from __future__ import annotations

import csv
import datetime
import io
import json
import zipfile

import pytest

import class_fixture
from grader.answers import Answer, Answers
from grader.engine import ItemResult, Report
from grader.errors import KitError
from grader.records import exports, lms
from grader.records.gradebook import Gradebook

MOODLE_NAMES = {"ada": "Ada Lovelace_101_assignsubmission_file_", "bo": "Bo Ng_102_assignsubmission_file_",
                "cy": "Cy Twombly_103_assignsubmission_file_", "dee": "Dee Dee_104_assignsubmission_file_",
                "eve": "Eve Li_105_assignsubmission_file_", "fay": "Fay Wray_106_assignsubmission_file_",
                "gus": "Gus Grant_123456_assignsubmission_file_transfer_learning.ipynb"}
CANVAS_NAMES = {"ada": "lovelaceada_201_9001_transfer_learning.ipynb",
                "bo": "ngbo_LATE_202_9002_transfer_learning.ipynb",
                "cy": "twomblycy_203_9003_transfer_learning-1.ipynb",
                "dee": "deedee_204_9004_transfer_learning.ipynb",
                "eve": "lieve_205_9005_transfer_learning.ipynb",
                "fay": "wrayfay_206_9006_transfer_learning.ipynb",
                "gus": "grantgus_LATE_207_9007_transfer_learning.ipynb"}


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _exported(tmp_path, names: dict, roster: dict, graded: str, score: float, upload: str):
    """The fixture class under an LMS's download `names`, `graded`'s written answer given
    `score`, exported: (out, the open gradebook, the `upload` file's text, its header)."""
    out = class_fixture.build(tmp_path / "out", named=names.get, roster=roster)
    book = Gradebook(out / "gradebook.sqlite")
    _grade(book, names[graded], score)
    exports.write_all(book, out)
    text = (out / upload).read_text(encoding="utf-8")
    return out, book, text, next(csv.reader(io.StringIO(text)))


def _grade(book: Gradebook, student: str, score: float) -> None:
    digest = book.answers(student)["compare_scratch"]["digest"]
    book.save_manual(student, "compare_scratch", score, [0], "Numbers given.", digest, "ta", 0)


def test_download_names_are_read_as_their_lms_names_them():
    ada = lms.identify(MOODLE_NAMES["ada"], lms.MOODLE)
    assert (ada.layout, ada.id, ada.name, ada.late) == ("moodle", "101", "Ada Lovelace", False)
    # one file per participant, not a folder: the file's name follows the marker
    assert lms.identify(MOODLE_NAMES["gus"], lms.MOODLE).id == "123456"
    bo = lms.identify(CANVAS_NAMES["bo"], lms.CANVAS)
    assert (bo.id, bo.name, bo.late) == ("202", "ngbo", True)
    assert lms.layout_of(list(MOODLE_NAMES.values())) == lms.MOODLE
    assert lms.layout_of(list(CANVAS_NAMES.values())) == lms.CANVAS
    assert "1 marked late" not in lms.describe(list(CANVAS_NAMES.values()))
    assert "2 marked late" in lms.describe(list(CANVAS_NAMES.values()))
    # one plain name among them: the class is read as today, and the notice says why
    mixed = [*MOODLE_NAMES.values(), "late_entry.ipynb"]
    assert lms.layout_of(mixed) == lms.PLAIN
    assert "7 of 8 entries are named as an LMS download" in lms.describe(mixed)
    assert lms.identify("late_entry.ipynb", lms.PLAIN).id == "late_entry.ipynb"
    assert lms.describe(["ada.ipynb", "bo.py"]) == ""
    # Moodle 4.1 and later name a participant's folder without the last underscore
    assert lms.identify("Ada Lovelace_101_assignsubmission_file", lms.MOODLE).id == "101"
    # Canvas keeps letters of any script in the login name
    assert lms.identify("müllerjürgen_LATE_208_77_x.ipynb", lms.CANVAS) == lms.Identity(
        "canvas", "208", "müllerjürgen", True)
    # two entries with one participant id (online text beside a file): still Moodle's layout,
    # and the id is named as shared
    both = [MOODLE_NAMES["ada"], "Ada Lovelace_101_assignsubmission_onlinetext_"]
    assert lms.layout_of(both) == lms.MOODLE and lms.shared_ids(both, lms.MOODLE) == {"101": both}


def test_a_moodle_class_gives_a_worksheet_and_feedback_zip_moodle_imports(tmp_path):
    roster = lms.read_roster(_moodle_roster(tmp_path))
    out, book, text, header = _exported(tmp_path, MOODLE_NAMES, roster, "eve", 7.0, exports.MOODLE_WORKSHEET)

    # Moodle's worksheet import: columns found by header; the id is what follows "Participant "
    for required in ("Identifier", "Grade", "Last modified (grade)", "Maximum Grade"):
        assert required in header
    # no comments column: Moodle would replace the comments typed in Moodle with it (even an
    # empty cell); the feedback goes in the zip
    assert "Feedback comments" not in header
    rows = {r["Identifier"][len("Participant "):]: r for r in _rows(text)}
    # ada and eve have their written answer graded; the others' grades are not final yet
    assert set(rows) == {"101", "105"}
    # the roster says Moodle grades out of 100 (it skips a grade above that): scaled from the
    # rubric's 120 (ada shows 110 before the release: the hidden item is not earned yet)
    assert rows["101"]["Maximum Grade"] == "100" and rows["101"]["Grade"] == exports.points(110 * 100 / 120)
    _moodle_roster(tmp_path, maximum="120.00")
    book.set_meta("roster", json.dumps(lms.read_roster(tmp_path / "worksheet.csv")))
    exports.write_all(book, out)
    text = (out / exports.MOODLE_WORKSHEET).read_text(encoding="utf-8")
    rows = {r["Identifier"][len("Participant "):]: r for r in _rows(text)}
    assert rows["101"]["Full name"] == "Ada Lovelace"
    assert rows["101"]["Email address"] == "ada@example.edu"
    plain = {r["username"]: r for r in _rows((out / exports.MOODLE_FILE).read_text(encoding="utf-8"))}
    for participant, student in (("101", "ada"), ("105", "eve")):
        # the same total as moodle.csv (username, the grade, feedback), to the cent
        assert float(rows[participant]["Grade"]) == pytest.approx(
            float(list(plain[MOODLE_NAMES[student]].values())[1]), abs=0.005)
        assert float(rows[participant]["Maximum Grade"]) >= float(rows[participant]["Grade"])
    # ISO 8601 with its offset (PHP's strtotime reads it the same in any server time zone), and
    # the time the kit last set the grade, not the time of writing: a later fix in Moodle stays
    stamp = datetime.datetime.fromisoformat(rows["105"]["Last modified (grade)"])
    saved = next(g["saved_at"] for g in book.manual(MOODLE_NAMES["eve"]))
    assert stamp.utcoffset() is not None and abs(stamp.timestamp() - saved) < 1

    # Moodle's feedback zip import: explode('_', name, 5) -> name, id, plugin type, plugin, file
    with zipfile.ZipFile(out / exports.MOODLE_FEEDBACK_ZIP) as archive:
        names = archive.namelist()
        parts = [name.split("_", 4) for name in names]
        assert sorted(p[1] for p in parts) == ["101", "105"]
        assert all(p[2:4] == ["assignsubmission", "file"] and p[4] == "feedback.md" for p in parts)
        assert "# Feedback for" in archive.read(names[0]).decode()
        eve = next(n for n in names if "_105_" in n)
        assert "Numbers given." in archive.read(eve).decode()

    # eve edits the answer after it was graded: her grade is held back until reviewed
    row = book.submission(MOODLE_NAMES["eve"])
    report = Report(MOODLE_NAMES["eve"], [ItemResult(i["item"], i["title"], i["score"], i["max_score"],
                                                     i["status"], i["message"], 0.0, i["visibility"])
                                          for i in book.items(MOODLE_NAMES["eve"])])
    book.record(MOODLE_NAMES["eve"], row["source"], "changed", "rubric", report, "graded",
                answers=Answers({"compare_scratch": Answer("A new answer.")}))
    exports.write_all(book, out)
    rows = _rows((out / exports.MOODLE_WORKSHEET).read_text(encoding="utf-8"))
    assert [r["Identifier"] for r in rows] == ["Participant 101"]
    assert not (out / exports.CANVAS_FILE).exists()
    # nor is her old grade shown as final anywhere a student reads it
    assert [r["username"] for r in _rows((out / exports.MOODLE_FILE).read_text(encoding="utf-8"))] == [
        MOODLE_NAMES["ada"]]
    eve = (out / "feedback" / f"{MOODLE_NAMES['eve']}.md").read_text()
    assert "Numbers given." not in eve and "Not graded yet by a person" in eve
    grades = {r["student"]: r for r in _rows((out / "grades.csv").read_text(encoding="utf-8"))}
    assert grades[MOODLE_NAMES["eve"]]["compare_scratch"] == "7"  # the TAs still see it
    assert "needs review" in grades[MOODLE_NAMES["eve"]]["manual"]
    book.close()


def test_a_canvas_class_gives_the_gradebook_import_csv(tmp_path):
    roster = lms.read_roster(_canvas_roster(tmp_path))
    assert roster["assignments"] == ["Transfer learning (4711)"]
    out, book, text, header = _exported(tmp_path, CANVAS_NAMES, roster, "bo", 3.0, exports.CANVAS_FILE)
    assert header == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Transfer learning (4711)"]
    rows = _rows(text)
    assert rows[0]["Student"].strip() == "Points Possible"
    people = {r["ID"]: r for r in rows[1:]}
    assert set(people) == {"201", "202"}  # ada and bo are graded; the rest wait for review
    assert people["202"]["Student"] == "Ng, Bo" and people["202"]["SIS User ID"] == "s202"
    assert float(people["201"]["Transfer learning (4711)"]) <= float(rows[0]["Transfer learning (4711)"])
    assert not (out / exports.MOODLE_WORKSHEET).exists()
    book.close()


def test_a_plain_folder_writes_no_lms_upload_file(tmp_path):
    out = class_fixture.build(tmp_path / "out")
    for name in (exports.MOODLE_WORKSHEET, exports.MOODLE_FEEDBACK_ZIP, exports.CANVAS_FILE):
        assert not (out / name).exists()
    assert (out / exports.MOODLE_FILE).exists()


@pytest.mark.parametrize("content, says", [
    ("Name,Mail\nAda,ada@example.edu\n", "found the columns Name, Mail"),
    (b"Identifier\n\xff\xfe\n", "expected a UTF-8 CSV roster"),
])
def test_a_roster_that_is_not_an_lms_export_is_refused_in_one_line(tmp_path, content, says):
    path = tmp_path / "roster.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(KitError) as error:
        lms.read_roster(path)
    assert says in str(error.value) and "\n" not in str(error.value)


def test_batch_reads_the_roster_before_it_writes_anything(tmp_path):
    from grader.verbs import batch

    (tmp_path / "class").mkdir()
    (tmp_path / "roster.csv").write_text("Name\nAda\n")
    with pytest.raises(KitError, match="expected a roster exported from Moodle"):
        batch.main(str(tmp_path / "class"), str(tmp_path / "out"), roster=str(tmp_path / "roster.csv"))
    assert not (tmp_path / "out").exists()


def _moodle_roster(tmp_path, maximum: str = "100.00"):
    path = tmp_path / "worksheet.csv"
    rows = [lms.MOODLE_WORKSHEET_COLUMNS]
    for student, entry in MOODLE_NAMES.items():
        who = lms.identify(entry, lms.MOODLE)
        rows.append([f"Participant {who.id}", who.name, f"{student}@example.edu", "Submitted", "", maximum,
                     "Yes", "", "-", ""])
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    path.write_bytes(b"\xef\xbb\xbf" + buffer.getvalue().encode())  # Moodle's download has a BOM
    return path


def _canvas_roster(tmp_path):
    path = tmp_path / "gradebook.csv"
    rows = [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Transfer learning (4711)",
             "Current Score"],
            ["    Points Possible", "", "", "", "", "120.00", "(read only)"]]
    for student, entry in CANVAS_NAMES.items():
        who = lms.identify(entry, lms.CANVAS)
        rows.append([f"{student.capitalize()} Surname" if student != "bo" else "Ng, Bo", who.id,
                     f"s{who.id}", f"{student}@example.edu", "DL 101", "", ""])
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path


@pytest.mark.slow
def test_a_moodle_download_zip_is_graded_into_its_worksheet(tmp_path, capsys):
    """`grader batch DOWNLOAD.zip --out OUT`: the zip Moodle's "Download all submissions"
    gives (a folder per participant) is unpacked into OUT/download and graded, and the
    worksheet is keyed by the participant ids; a second run grades nothing again."""
    import shutil

    import yaml

    from grader.paths import default_rubric
    from grader.verbs import batch
    from kit import ROOT

    data = yaml.safe_load(default_rubric().read_text())
    data["items"] = [i for i in data["items"] if i["id"] == "interface"]
    rubric = tmp_path / "rubric.yaml"
    rubric.write_text(yaml.safe_dump(data))
    download = tmp_path / "Transfer learning-12345.zip"
    with zipfile.ZipFile(download, "w") as archive:
        for entry in (MOODLE_NAMES["ada"], MOODLE_NAMES["bo"]):
            archive.write(ROOT / "solutions" / "transfer_learning.py", f"{entry}/transfer_learning.py")
    out = tmp_path / "out"
    for run in (1, 2):
        capsys.readouterr()
        summary = batch.main(str(download), str(out), workers=1, rubric_path=str(rubric), progress=False)
        assert summary["total"] == 2 and not summary["export_problems"]
        printed = capsys.readouterr()
        assert f"2 submissions, {2 * (run - 1)} already graded" in printed.err
        assert "a Moodle download: 2 participant(s)" in printed.out
    assert sorted(p.name for p in (out / "download").iterdir()) == sorted(
        [MOODLE_NAMES["ada"], MOODLE_NAMES["bo"]])
    rows = _rows((out / exports.MOODLE_WORKSHEET).read_text(encoding="utf-8"))
    assert {r["Identifier"]: r["Grade"] for r in rows} == {"Participant 101": "5", "Participant 102": "5"}
    shutil.rmtree(out)
    # a broken download stops the batch in one line, and leaves no OUT behind
    download.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(KitError) as error:
        batch.main(str(download), str(out), workers=1, rubric_path=str(rubric), progress=False)
    assert "expected a zip archive" in str(error.value) and not out.exists()


def test_the_upload_files_carry_each_id_once_from_the_current_download(tmp_path, capsys):
    """Two entries of one participant (online text beside the file) are left out and named,
    so is an id the roster does not know (a team's group id), and an entry of an earlier
    download is not in the upload at all; the others are written."""
    from grader.verbs import batch

    names = dict(MOODLE_NAMES, bo="Ada Lovelace_101_assignsubmission_onlinetext_",
                 cy="Team A_5_assignsubmission_file_")
    roster = lms.read_roster(_moodle_roster(tmp_path))
    out = class_fixture.build(tmp_path / "out", named=names.get, roster=roster)
    book = Gradebook(out / "gradebook.sqlite")
    for student in ("eve", "dee"):
        _grade(book, names[student], 5.0)
    book.set_meta("current_entries", json.dumps([v for k, v in names.items() if k != "dee"]))
    exports.write_all(book, out)
    rows = _rows((out / exports.MOODLE_WORKSHEET).read_text(encoding="utf-8"))
    assert [r["Identifier"] for r in rows] == ["Participant 105"]  # eve; ada shares 101, dee is gone
    capsys.readouterr()
    batch.summarize(book, [], out)
    book.close()
    printed = capsys.readouterr().out
    assert "Ada Lovelace_101_assignsubmission_file_: 2 entries carry moodle id 101" in printed
    assert "Team A_5_assignsubmission_file_: moodle id 5 is not in the roster" in printed


def test_a_class_zip_is_bounded_before_it_is_read(tmp_path):
    from grader import submission

    many = tmp_path / "many.zip"
    with zipfile.ZipFile(many, "w") as archive:
        for k in range(5):
            archive.writestr(f"s{k}.py", "x = 1\n")
    with pytest.raises(KitError, match="holds 5 files and folders, more than the 4 allowed"):
        submission.safe_unzip(many, tmp_path / "a", max_members=4)
    # the count its end record declares is refused before zipfile reads the entries
    data = bytearray(many.read_bytes())
    data[-14:-10] = (60_000).to_bytes(2, "little") * 2  # entries on this disk, and in all
    many.write_bytes(bytes(data))
    with pytest.raises(KitError, match="holds 60000 files and folders"):
        submission.safe_unzip(many, tmp_path / "a", max_members=4)
    deep = tmp_path / "deep.zip"
    with zipfile.ZipFile(deep, "w") as archive:
        archive.writestr("x" * 2000 + ".py", "x = 1\n")
    with pytest.raises(KitError, match="a path longer than 1024 characters"):
        submission.unpack_class(deep, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_a_roster_csv_that_breaks_the_csv_reader_is_one_line(tmp_path):
    path = tmp_path / "roster.csv"
    path.write_text('Identifier,Full name\n"Participant 1","' + "x" * 200_000 + '"\n')
    with pytest.raises(KitError, match="expected a CSV roster, could not read it"):
        lms.read_roster(path)
