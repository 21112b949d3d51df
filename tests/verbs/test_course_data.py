"""The course's data setting: declared in the rubric, overridden on the command line, and
carried the same way through check, batch, the Gradescope package and calibrate. The
archive here is made by the tests in the official layout (from synthetic images, so the
exercise learns it), never taken from outside the repository."""
from __future__ import annotations

import json
import os
from dataclasses import replace
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from grader.exercises.transfer_learning import inputs as tl_inputs
from grader.verbs import batch, calibrate, gradescope
from grader import engine, rubric
from grader.exercises.transfer_learning import cifar10, data as course_data, synthetic, vgg_weights
from grader.errors import DataError, KitError, RubricError, WeightsError
from grader.options import DataOptions
from conftest import cifar_batch_pickle, write_cifar_archive
from kit import DEFAULT_RUBRIC, SOLUTION

PER_BATCH = 400


def _archive(path: Path, test_labels_shift: int = 0) -> Path:
    """An official-layout archive of synthetic images: five training batches of PER_BATCH
    and a test batch of 600, its labels shifted by `test_labels_shift` (mod 10)."""
    images, labels = synthetic.generate(5 * PER_BATCH, seed=101)
    members = {f"data_batch_{i + 1}": cifar_batch_pickle(images[i * PER_BATCH:(i + 1) * PER_BATCH],
                                                          labels[i * PER_BATCH:(i + 1) * PER_BATCH])
               for i in range(5)}
    test_images, test_labels = synthetic.generate(600, seed=9)
    members["test_batch"] = cifar_batch_pickle(test_images, (test_labels + test_labels_shift) % 10)
    members["batches.meta"] = pickle.dumps({b"label_names": [n.encode() for n in cifar10.CLASS_NAMES]},
                                           protocol=2)
    write_cifar_archive(path, members)
    return path


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    return _archive(tmp_path_factory.mktemp("data") / "cifar-10-python.tar.gz")


def _rubric_file(folder: Path, items: list[dict], **sections) -> Path:
    path = folder / "rubric.yaml"
    path.write_text(yaml.safe_dump({"schema_version": 1, "time_limit": 60, "items": items, **sections}))
    return path


INTERFACE = {"id": "interface", "title": "Interface", "points": 1, "check": "interface"}
PREPROCESS = {"id": "preprocess", "title": "Preprocessing", "points": 2, "check": "preprocess"}


# ---------------------------------------------------------------- the setting itself

def test_the_rubric_declares_data_and_weights_relative_to_its_folder(tmp_path):
    path = _rubric_file(tmp_path, [INTERFACE], data={"kind": "cifar10", "path": "c.tar.gz", "md5": "a" * 32},
                        weights={"path": "w.npz", "sha256": "b" * 64})
    loaded = rubric.load(path)
    assert loaded.sections["data"] == {"kind": "cifar10", "path": str(tmp_path / "c.tar.gz"), "md5": "a" * 32}
    assert loaded.sections["weights"] == {"path": str(tmp_path / "w.npz"), "sha256": "b" * 64}
    assert rubric.load(DEFAULT_RUBRIC).sections["data"] == {"kind": "synthetic"}


@pytest.mark.parametrize("sections, message", [
    ({"data": {"kind": "imagenet"}}, "data: 'kind' must be one of synthetic, cifar10"),
    ({"data": {"path": "x"}}, "data: missing key 'kind'"),
    ({"data": {"kind": "synthetic", "path": "x"}}, "the synthetic set takes no path or md5"),
    ({"data": {"kind": "cifar10", "md5": "xyz"}}, "'md5' must be 32 hexadecimal digits"),
    ({"data": {"kind": "cifar10", "url": "x"}}, "data: unknown key 'url'"),
    ({"weights": {"sha256": "12"}}, "'sha256' must be 64 hexadecimal digits"),
    ({"weights": "w.npz"}, "'weights' must be a mapping"),
])
def test_bad_data_sections_name_the_key_and_the_fix(tmp_path, sections, message):
    with pytest.raises(RubricError, match=message):
        rubric.load(_rubric_file(tmp_path, [INTERFACE], **sections))


def test_students_copy_keeps_checksums_drops_the_instructors_paths():
    public = rubric.public_copy({"schema_version": 1, "items": [INTERFACE],
                                 "data": {"kind": "cifar10", "path": "/srv/c.tar.gz", "md5": "a" * 32},
                                 "weights": {"path": "/srv/w.npz", "sha256": "b" * 64}})
    assert public["data"] == {"kind": "cifar10"}  # a rebuilt archive: students download the official one
    assert public["weights"] == {"sha256": "b" * 64}
    official = rubric.public_copy({"schema_version": 1, "items": [INTERFACE],
                                   "data": {"kind": "cifar10", "md5": cifar10.MD5}})
    assert official["data"] == {"kind": "cifar10", "md5": cifar10.MD5}


def test_command_line_overrides_the_rubric(tmp_path, archive):
    declared = rubric.load(_rubric_file(tmp_path, [INTERFACE], data={"kind": "cifar10", "md5": "a" * 32}))
    assert course_data.setting(declared).kind == "cifar10"
    assert course_data.setting(declared, DataOptions.parse(["synthetic"])) == course_data.Setting()
    found = course_data.setting(declared, DataOptions.parse(["cifar10", str(archive)], no_verify=True))
    assert (found.path, found.md5, found.verify) == (str(archive), "a" * 32, False)
    with pytest.raises(KitError, match="--data: expected 'synthetic' or 'cifar10 \\[PATH\\]'"):
        course_data.setting(declared, DataOptions.parse(["synthetic", "x"]))


def test_an_archive_is_checked_against_the_rubrics_md5(tmp_path, archive):
    right = cifar10.md5sum(archive)
    good = rubric.load(_rubric_file(tmp_path, [INTERFACE], data={"kind": "cifar10", "path": str(archive),
                                                                  "md5": right}))
    weights, dataset, description = course_data.resolve(good)
    assert len(dataset.train_labels) == 5 * PER_BATCH and f"CIFAR-10 ({archive})" in description
    wrong = rubric.load(_rubric_file(tmp_path, [INTERFACE], data={"kind": "cifar10", "path": str(archive),
                                                                   "md5": "0" * 32}))
    with pytest.raises(DataError, match=f"MD5 {right} does not match 0{{32}}, the archive the rubric declares"):
        course_data.resolve(wrong)
    assert course_data.resolve(wrong, DataOptions(no_verify=True))[1] is not None
    # no MD5 declared: the official one is expected
    undeclared = rubric.load(_rubric_file(tmp_path, [INTERFACE], data={"kind": "cifar10",
                                                                        "path": str(archive)}))
    with pytest.raises(DataError, match="does not match the official CIFAR-10 archive"):
        course_data.resolve(undeclared)


def test_declared_weights_are_enforced_unless_overridden(tmp_path, weights, monkeypatch):
    path = tmp_path / "w.npz"
    vgg_weights.save(weights, path)
    digest = course_data.sha256_of(weights)
    ok = rubric.load(_rubric_file(tmp_path, [INTERFACE], weights={"path": "w.npz", "sha256": digest}))
    assert course_data.load_weights(course_data.setting(ok))[1] == str(path)
    other = tmp_path / "other.npz"
    vgg_weights.save({k: v + 1 if k == "conv1_1_b" else v for k, v in weights.items()}, other)
    bad = rubric.load(_rubric_file(tmp_path, [INTERFACE], weights={"path": "other.npz", "sha256": digest}))
    with pytest.raises(WeightsError, match="the rubric grades with weights of SHA-256"):
        course_data.load_weights(course_data.setting(bad))
    # an explicit --weights is the instructor's override
    assert course_data.load_weights(course_data.setting(bad, DataOptions(weights=str(other))))[1] == str(other)
    # $GRADER_WEIGHTS and the stand-in weights are held to the declared digest too
    declared_only = rubric.load(_rubric_file(tmp_path, [INTERFACE], weights={"sha256": digest}))
    monkeypatch.setenv("GRADER_WEIGHTS", str(other))
    with pytest.raises(WeightsError, match="the rubric grades with weights"):
        course_data.load_weights(course_data.setting(declared_only))
    monkeypatch.setenv("GRADER_WEIGHTS", str(path))
    assert course_data.load_weights(course_data.setting(declared_only))[1] == str(path)
    monkeypatch.delenv("GRADER_WEIGHTS")
    other_digest = course_data.sha256_of(vgg_weights.load(other))
    course_only = rubric.load(_rubric_file(tmp_path, [INTERFACE], weights={"sha256": other_digest}))
    with pytest.raises(WeightsError, match="found .* Use the course's vgg16-conv-weights.npz"):
        course_data.load_weights(course_data.setting(course_only))  # the stand-in weights


def test_heldout_images_are_drawn_by_seed_and_never_equal_a_public_one():
    """Each test image is one flat grey level that names its index: the disguise keeps it
    recognisable (so the label can be checked), and no held-out image equals its original."""
    n = 12
    levels = 10 + 20 * np.arange(n)  # further apart than twice the brightness change
    test_images = np.repeat(levels.astype(np.uint8), 32 * 32 * 3).reshape(n, 32, 32, 3)
    test_labels = np.arange(n) % 10
    data = cifar10.Dataset(test_images, test_labels, test_images, test_labels)
    images, labels = cifar10.heldout_split(data, seed=5, n=8)
    again = cifar10.heldout_split(data, seed=5, n=8)
    other = cifar10.heldout_split(data, seed=6, n=8)
    assert np.array_equal(images, again[0]) and not np.array_equal(images, other[0])
    index = np.abs(images.reshape(8, -1).mean(axis=1)[:, None] - levels[None]).argmin(axis=1)
    assert np.array_equal(labels, test_labels[index])
    public = {bytes(image) for image in test_images}
    assert not any(bytes(image) in public for image in images)


def test_heldout_images_of_real_data_follow_the_private_seed(archive):
    dataset = cifar10.load(archive, verify_checksum=False)
    shipped = rubric.load(DEFAULT_RUBRIC)
    inputs = tl_inputs.build(shipped, vgg_weights.stand_in(), dataset)
    assert len(inputs.heldout_labels) == len(inputs.heldout_images) == min(tl_inputs.HELDOUT, 600)
    assert np.array_equal(inputs.train_images, dataset.train_images[:tl_inputs.REAL_TRAIN])
    public = {bytes(image) for image in dataset.test_images}
    assert not any(bytes(image) in public for image in inputs.heldout_images)
    reseeded = tl_inputs.build(replace(shipped, heldout_seed=shipped.heldout_seed + 1),
                                     vgg_weights.stand_in(), dataset)
    assert not np.array_equal(reseeded.heldout_images, inputs.heldout_images)


# ---------------------------------------------------------------- through every verb

def _grader(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "grader.cli", *args], capture_output=True, text=True,
                          timeout=600, cwd=cwd)


@pytest.mark.slow
def test_check_grades_on_the_data_it_is_given(tmp_path, archive):
    """The held-out labels come from the archive: with every test label shifted, a correct
    solution's accuracy is near zero on it, where the same item on the default is high."""
    shifted = _archive(tmp_path / "shifted.tar.gz", test_labels_shift=1)
    item = {"id": "acc", "title": "Accuracy", "points": 4, "check": "accuracy",
            "params": {"steps": 40, "images": 200, "lower": 0.2, "upper": 0.4}}
    path = _rubric_file(tmp_path, [INTERFACE, item])
    result = _grader("check", str(SOLUTION), "--rubric", str(path), "--all", "--no-verify",
                     "--data", "cifar10", str(shifted), "--json", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    acc = {i["id"]: i for i in report["items"]}["acc"]
    assert acc["score"] == 0 and float(acc["message"].split()[1]) < 0.2, acc["message"]
    assert f"CIFAR-10 ({shifted})" in report["graded_on"] and f"CIFAR-10 ({shifted})" in result.stderr
    # a wrong checksum: one line, before anything runs
    result = _grader("check", str(SOLUTION), "--rubric", str(path), "--data", "cifar10", str(archive))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "does not match the official" in result.stderr


@pytest.mark.slow
def test_batch_reads_the_rubrics_data_and_regrades_when_it_changes(tmp_path, archive, capsys):
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "alice.py").write_text(SOLUTION.read_text())
    path = _rubric_file(tmp_path, [INTERFACE, PREPROCESS],
                        data={"kind": "cifar10", "path": str(archive), "md5": cifar10.md5sum(archive)})
    summary = batch.main(str(subs), str(tmp_path / "out"), rubric_path=str(path), progress=False)
    assert summary["counts"]["graded"] == 1 and summary["mean"] == 3
    assert f"grading on stand-in weights (NOT ImageNet-trained); CIFAR-10 ({archive})" in capsys.readouterr().err
    batch.main(str(subs), str(tmp_path / "out"), rubric_path=str(path), progress=False)
    assert "1 submissions, 1 already graded, 0 to grade" in capsys.readouterr().err
    batch.main(str(subs), str(tmp_path / "out"), rubric_path=str(path), progress=False, options=DataOptions.parse(["synthetic"]))
    assert "1 submissions, 0 already graded, 1 to grade" in capsys.readouterr().err
    bad = _rubric_file(tmp_path, [INTERFACE], data={"kind": "cifar10", "path": str(archive), "md5": "0" * 32})
    with pytest.raises(DataError, match="does not match"):
        batch.main(str(subs), str(tmp_path / "out2"), rubric_path=str(bad), progress=False)
    assert not (tmp_path / "out2").exists()


@pytest.mark.slow
def test_gradescope_package_ships_the_archive_and_refuses_a_damaged_copy(tmp_path, archive):
    path = _rubric_file(tmp_path, [INTERFACE, PREPROCESS], data={"kind": "cifar10", "path": str(archive)})
    package = gradescope.build_package(tmp_path / "ag.zip", rubric_path=str(path), options=DataOptions(no_verify=True))
    root = tmp_path / "autograder"
    with zipfile.ZipFile(package) as zipped:
        packaged = yaml.safe_load(zipped.read("kit/rubric.yaml"))
        assert packaged["data"] == {"kind": "cifar10", "path": "cifar-10-python.tar.gz",
                                    "md5": cifar10.md5sum(archive)}
        assert zipped.read("kit/cifar-10-python.tar.gz") == archive.read_bytes()
        zipped.extractall(root / "source")
    (root / "submission").mkdir()
    (root / "submission" / "transfer_learning.py").write_text(SOLUTION.read_text())
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), AUTOGRADER_PYTHON=sys.executable)
    run = ["bash", str(root / "source" / "run_autograder")]
    result = subprocess.run(run, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((root / "results" / "results.json").read_text())["score"] == 3
    shipped = root / "source" / "kit" / "cifar-10-python.tar.gz"
    shipped.write_bytes(shipped.read_bytes()[:-100])
    subprocess.run(run, env=env, capture_output=True, text=True, timeout=300)
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 0 and "does not match" in results["output"]


@pytest.mark.slow
def test_calibrate_measures_on_the_archive_and_names_it_in_the_rubric(tmp_path, archive):
    """The training item's bar from a correct and the low runs on the archive; the rubric
    then declares the data its bounds were measured on."""
    data = yaml.safe_load(DEFAULT_RUBRIC.read_text())
    data["items"] = [i for i in data["items"] if i["id"] in ("interface", "training")]
    path = tmp_path / "rubric.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    bounds, _, runs = calibrate.run(path, seeds=(5,), options=DataOptions.parse(["cifar10", str(archive)], no_verify=True),
                                    solutions=["reference"], log=lambda line: None)
    trained = bounds["training"]
    [correct] = [r for r in runs if r.kind == "correct"]
    assert trained.min_correct == correct.accuracy["training"] > 0.5  # learned on the archive
    assert trained.max_low is not None and trained.max_low < trained.lower <= trained.upper
    assert correct.scores["training"] == 1.0 and correct.messages["training"] == "passed: all good"
    written = rubric.load(path)
    assert written.sections["data"] == {"kind": "cifar10", "path": str(archive), "md5": cifar10.md5sum(archive)}
    assert {i.id: i.params for i in written.items}["training"]["learned_accuracy"] == trained.upper
    assert yaml.safe_load(path.read_text())["calibration"]["data"] == f"CIFAR-10 ({archive})"
