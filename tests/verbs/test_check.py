"""`grader check`: the student-facing front end on .py and .ipynb submissions."""
from __future__ import annotations

import io
import json
import time

import pytest
import yaml

from grader.verbs import check
from grader import cli
from kit import ROOT, fast_rubric



def _fast_rubric_file(tmp_path):
    r = fast_rubric()
    data = {"schema_version": 1, "items": [
        {"id": i.id, "title": i.title, "points": i.points, "check": i.check, "params": i.params,
         "time_limit": i.time_limit}
        for i in r.items]}
    path = tmp_path / "fast.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.slow
def test_solution_notebook_gets_full_marks_with_json(tmp_path, capsys):
    """Is a notebook graded from its graded cells only, with the table and the JSON?"""
    out = tmp_path / "r.json"
    code = cli.main(["check", str(ROOT / "solutions" / "transfer_learning.ipynb"),
                     "--rubric", str(_fast_rubric_file(tmp_path)), "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads(out.read_text())
    assert report["score"] == report["max_score"] == 100, printed
    assert "total: 100 / 100 points" in printed and "pipeline" in printed
    # what the judges measured, for the review page and the report: the run's own curves
    # (read from its event files by the grading process) and the accuracy with its bounds
    details = {i["id"]: i["details"] for i in report["items"]}
    curves = details["training"]["curves"]
    assert set(curves) == {"loss", "accuracy"} and len(curves["loss"]) >= 10
    assert [step for step, _ in curves["loss"]] == sorted(step for step, _ in curves["loss"])
    before, after = details["training"]["train_accuracy"]
    assert after > before
    quick = details["accuracy_quick"]
    assert quick["lower"] < quick["upper"] <= quick["accuracy"] and quick["images"] > 0
    assert set(details["preprocess"]) == {"behaviour"}  # what the run did, for similarity


@pytest.mark.slow
def test_skeleton_scores_zero_on_every_item_without_crashing(tmp_path, capsys):
    out = tmp_path / "r.json"
    code = cli.main(["check", str(ROOT / "skeletons" / "transfer_learning.py"),
                     "--rubric", str(_fast_rubric_file(tmp_path)), "--json", str(out)])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["score"] == 0 and len(report["items"]) == 10
    for item in report["items"]:
        if item["id"] == "interface":
            assert item["status"] == "failed" and "preprocess still raises NotImplementedError" in item["message"]
        else:
            assert item["status"] == "error" and "not implemented yet" in item["message"], item
    capsys.readouterr()


def test_unreadable_notebook_is_one_line(tmp_path, capsys):
    bad = tmp_path / "sub.ipynb"
    bad.write_text("{not json")
    code = cli.main(["check", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert "expected a Jupyter notebook" in err


def test_bad_rubric_is_one_line(tmp_path, capsys):
    bad = tmp_path / "r.yaml"
    bad.write_text("schema_version: 1\nitems:\n  - id: a\n    title: A\n    points: 1\n    check: nope\n")
    code = cli.main(["check", str(ROOT / "skeletons" / "transfer_learning.py"), "--rubric", str(bad)])
    err = capsys.readouterr().err
    assert code == 2 and "unknown check 'nope'" in err and err.count("\n") == 1


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_ticker_shows_the_running_item_and_clears_its_line():
    screen = _Terminal()
    with check.Ticker(screen) as ticker:
        ticker("training")
        time.sleep(1.2)
    drawn = screen.getvalue()
    assert "grading: training (1 s)" in drawn
    assert drawn.endswith("\r") and drawn.rsplit("\r", 2)[-2].strip() == ""
    quiet = io.StringIO()  # not a terminal: logs get the table alone
    with check.Ticker(quiet) as ticker:
        ticker("training")
        time.sleep(0.6)
    assert quiet.getvalue() == ""


@pytest.mark.slow
def test_a_zip_is_unpacked_once_for_its_grade_and_its_answers(tmp_path, capsys, monkeypatch):
    """`grader check work.zip` grades the module and reads the written answers from one
    unpacked copy, removed when the check ends."""
    import zipfile

    from grader import submission

    rubric_file = tmp_path / "rubric.yaml"
    rubric_file.write_text(yaml.safe_dump({"schema_version": 1, "items": [
        {"id": "interface", "title": "Interface", "points": 1, "check": "interface"},
        {"id": "compare_scratch", "title": "Written question", "points": 10, "check": "manual",
         "prompt": "Compare the two runs."}]}))
    archive = tmp_path / "work.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("work/transfer_learning.py", (ROOT / "solutions" / "transfer_learning.py").read_text())
        z.writestr("work/answers.md", "## compare_scratch\n\nTransfer wins: the features are ready.\n")
    unpacked, made = [], []
    real_unzip, real_work = submission.safe_unzip, check.engine.new_work_dir
    monkeypatch.setattr(submission, "safe_unzip", lambda *a, **k: unpacked.append(a[0]) or real_unzip(*a, **k))
    monkeypatch.setattr(check.engine, "new_work_dir", lambda *a: made.append(real_work(*a)) or made[-1])
    assert cli.main(["check", str(archive), "--rubric", str(rubric_file)]) == 0
    printed = capsys.readouterr().out
    assert "total: 1 / 1 points" in printed, printed
    assert "compare_scratch (10 points, graded by a person): answer found (6 words)" in printed, printed
    assert len(unpacked) == 1 and made and not any(p.exists() for p in made)
