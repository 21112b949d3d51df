"""The seam between the engine and an exercise (grader/exercise.py), proved with a second
exercise kept outside the kit (tests/exercises/logreg): `grader check`, `grader batch`,
the Gradescope package and the student wheel grade it, and no file of the kit knows it."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from grader import exercise as exercise_mod, rubric as rubric_mod, wheel
from grader.verbs import gradescope
from grader.errors import RubricError

HERE = Path(__file__).resolve().parent
COURSE = HERE / "exercises" / "logreg_course"
RUBRIC = COURSE / "rubrics" / "logreg.yaml"
KIT = HERE.parent / "grader"
TOTALS = {"ada": 10, "bo": 1, "cy": 4, "dee": 10, "eve": 10}


def _grader(*args, cwd=None, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=600)


def test_no_file_of_the_kit_knows_the_second_exercise():
    named = [p for p in KIT.rglob("*") if p.is_file() and "__pycache__" not in p.parts
             and "logreg" in p.read_text(encoding="utf-8", errors="replace").lower()]
    assert named == []


def test_the_rubric_finds_the_exercise_and_validates_against_its_checks(tmp_path):
    loaded = rubric_mod.load(RUBRIC)
    assert loaded.exercise.name == "logreg" and loaded.title == "Softmax regression in NumPy"
    assert set(loaded.exercise.checks) == {"interface", "standardize", "proba", "accuracy"}
    assert loaded.exercise.search_path == (str(HERE / "exercises"),)
    # a check's own time default, under the item's and over the rubric's
    assert [i.time_limit for i in loaded.items] == [60, 60, 60, 30]
    data = yaml.safe_load(RUBRIC.read_text())
    bad = tmp_path / "bad.yaml"
    cases = {
        "check": ({**data, "items": [{**data["items"][0], "check": "weights"}]},
                  "unknown check 'weights'; expected one of interface, standardize, proba, "
                  "accuracy (logreg's checks)"),
        "name": ({**data, "exercise": "nosuch"}, "exercise: expected a package 'nosuch' in"),
        "path": ({**data, "exercise_path": "missing"}, "exercise_path: expected a folder"),
        "params": ({**data, "items": [{**data["items"][3], "params": {"lower": 0.9, "upper": 0.5}}]},
                   "need 0 <= params.lower < params.upper <= 1"),
        "section": ({**data, "data": {"kind": "cifar10"}}, "unknown key 'data'"),
    }
    for what, (broken, message) in cases.items():
        bad.write_text(yaml.safe_dump(broken))
        with pytest.raises(RubricError, match=None) as raised:
            rubric_mod.load(bad)
        assert message in str(raised.value), what
        assert "\n" not in str(raised.value)


@pytest.mark.slow
def test_grader_check_grades_the_second_exercise():
    good = _grader("check", str(COURSE / "solutions" / "logreg.py"), "--rubric", str(RUBRIC), "--all")
    assert good.returncode == 0, good.stderr
    assert "total: 10 / 10 points" in good.stdout and "(Gaussian blobs)" in good.stderr
    skeleton = _grader("check", str(COURSE / "skeletons" / "logreg.py"), "--rubric", str(RUBRIC))
    assert "total: 1 / 7 points" in skeleton.stdout  # the hidden item is not run
    assert skeleton.stdout.count("not implemented yet: NotImplementedError, at line") == 2
    refused = _grader("check", str(COURSE / "solutions" / "logreg.py"), "--rubric", str(RUBRIC),
                      "--data", "synthetic")
    assert refused.returncode != 0 and "expected no --data or --weights" in refused.stderr
    assert "Traceback" not in refused.stderr


@pytest.mark.slow
def test_grader_batch_grades_the_second_exercise(tmp_path):
    out = tmp_path / "out"
    result = _grader("batch", str(COURSE / "submissions"), "--out", str(out), "--rubric", str(RUBRIC),
                     "--no-progress")
    assert result.returncode == 0, result.stderr
    rows = {r["student"]: r for r in csv.DictReader((out / "grades.csv").open())}
    # dee imports the exercise's public data module; eve is a notebook whose demo cell
    # calls the exercise's own functions (its contract decides what is kept)
    assert {s: float(r["total"]) for s, r in rows.items()} == TOTALS
    assert not any(r["flags"] for r in rows.values()), rows
    feedback = (out / "feedback" / "cy.md").read_text()
    assert "subtracts the mean but does not divide by std" in feedback
    # the comparison reads the submissions as this exercise's, and says what it lacks
    said = result.stdout + result.stderr
    assert "ada and eve: 1.00" in said and "group: ada, dee, eve" in said
    assert "the batch graded logreg, not the course folder's exercise" in said


@pytest.mark.slow
def test_a_batch_on_dask_loads_the_exercise_on_its_machines(tmp_path):
    pytest.importorskip("distributed")
    out = tmp_path / "out"
    result = _grader("batch", str(COURSE / "submissions"), "--out", str(out), "--rubric", str(RUBRIC),
                     "--no-progress", "--scheduler", "local:1")
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {r["student"]: r for r in csv.DictReader((out / "grades.csv").open())}
    assert {s: float(r["total"]) for s, r in rows.items()} == TOTALS


@pytest.mark.slow
def test_the_sandbox_shows_the_exercise_package_not_the_folder_around_it(tmp_path):
    from grader import sandbox

    if not sandbox.default().confined:
        pytest.skip("no private filesystem view here (bubblewrap is not available)")
    solution = COURSE / "solutions" / "logreg.py"
    peek = tmp_path / "logreg.py"
    peek.write_text(solution.read_text().replace(
        "def standardize(x, mean, std):\n",
        f"def standardize(x, mean, std):\n    assert not __import__('os').path.exists({str(solution)!r})\n"))
    result = _grader("check", str(peek), "--rubric", str(RUBRIC))
    assert "total: 7 / 7 points" in result.stdout, result.stdout + result.stderr


@pytest.mark.slow
def test_the_gradescope_package_carries_the_exercise(tmp_path):
    package = gradescope.build_package(tmp_path / "autograder.zip", rubric_path=str(RUBRIC))
    root = tmp_path / "autograder"
    with zipfile.ZipFile(package) as archive:
        names = set(archive.namelist())
        packaged = yaml.safe_load(archive.read("kit/rubric.yaml"))
        archive.extractall(root / "source")
    own = {f"kit/grader/exercises/logreg/{p.relative_to(HERE / 'exercises' / 'logreg').as_posix()}"
           for p in (HERE / "exercises" / "logreg").rglob("*.py") if "__pycache__" not in p.parts}
    assert own <= names and "kit/weights.npz" not in names
    assert packaged["exercise"] == "logreg" and "exercise_path" not in packaged
    (root / "submission").mkdir()
    (root / "submission" / "logreg.py").write_text((COURSE / "solutions" / "logreg.py").read_text())
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), AUTOGRADER_PYTHON=sys.executable)
    result = subprocess.run(["bash", str(root / "source" / "run_autograder")], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 10 and len(results["tests"]) == 4


@pytest.mark.slow
def test_the_student_wheel_carries_the_exercise_and_grades_with_it(tmp_path):
    """Installed in a fresh environment, the wheel grades the second exercise with its
    public rubric and holds nothing of the kit's own exercise."""
    loaded = rubric_mod.load(RUBRIC)
    public = rubric_mod.public_copy(yaml.safe_load(RUBRIC.read_text()), loaded.exercise)
    assert [i["id"] for i in public["items"]] == ["interface", "standardize", "proba", "reflect"]
    built = wheel.student_wheel(tmp_path / "dist", yaml.safe_dump(public), loaded.exercise)
    with zipfile.ZipFile(built) as archive:
        names = archive.namelist()
    assert {"grader/exercises/logreg/definition.py", "grader/exercises/logreg/data.py"} <= set(names)
    assert not [n for n in names if "transfer_learning/" in n]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"{built}[tensorflow]"], check=True)
    work = tmp_path / "work"
    work.mkdir()
    (work / "logreg.py").write_text((COURSE / "solutions" / "logreg.py").read_text())
    result = subprocess.run([str(venv / "bin" / "grader"), "check", "logreg.py"], cwd=work,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "total: 7 / 7 points" in result.stdout


def test_an_exercise_travels_to_other_processes_by_name():
    import pickle

    found = exercise_mod.load("logreg", [HERE / "exercises"])
    again = pickle.loads(pickle.dumps(found))
    assert again.name == "logreg" and again.search_path == found.search_path
    assert pickle.loads(pickle.dumps(exercise_mod.load())).name == exercise_mod.DEFAULT
