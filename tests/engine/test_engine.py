"""The grading engine: time limits, crashes and hostile submissions cost only the item
they break. (Correct solutions and broken variants: test_corpus.py.)"""
from __future__ import annotations

import pytest
import yaml

from grader.exercises.transfer_learning import inputs as tl_inputs
from grader.exercise import load as load_exercise

EXERCISE = load_exercise()
from grader import engine, rubric
from grader.exercises.transfer_learning import vgg_weights
from kit import DEFAULT_RUBRIC, SOLUTION, fast_rubric


@pytest.fixture(scope="module")
def inputs():
    return tl_inputs.build(fast_rubric(), vgg_weights.stand_in())


def _hostile(tmp_path, old: str, new: str):
    source = SOLUTION.read_text()
    assert old in source
    path = tmp_path / "hostile.py"
    path.write_text(source.replace(old, new, 1))
    return path


def _only(ids, time_limit=60):
    r = fast_rubric(time_limit)
    by_id = {i.id: i for i in r.items}
    r.items = [by_id[i] for i in ids]  # in the order given
    for i in r.items:
        i.time_limit = time_limit
    return r


@pytest.mark.slow
def test_endless_loop_times_out_and_the_rest_is_graded(inputs, tmp_path):
    """Is a hanging item really stopped, and do the items after it still get graded?"""
    module = _hostile(tmp_path, "    ds = tf.data.Dataset.from_tensor_slices",
                      "    while True:\n        pass\n    ds = tf.data.Dataset.from_tensor_slices")
    report = engine.grade(module, _only(["pipeline", "weights", "preprocess"], time_limit=8),
                          inputs, work_dir=tmp_path / "run")
    status = {r.id: r.status for r in report.items}
    assert status == {"pipeline": "timeout", "weights": "passed", "preprocess": "passed"}


@pytest.mark.slow
def test_os_exit_costs_only_that_item(inputs, tmp_path):
    module = _hostile(tmp_path, '    inputs = keras.Input(', '    import os; os._exit(0)\n    inputs = keras.Input(')
    report = engine.grade(module, _only(["preprocess", "weights", "pipeline"]), inputs,
                          work_dir=tmp_path / "run")
    by_id = {r.id: r for r in report.items}
    assert by_id["weights"].status == "crashed" and by_id["weights"].score == 0
    assert "exit code 0" in by_id["weights"].message
    assert by_id["preprocess"].status == by_id["pipeline"].status == "passed"


@pytest.mark.slow
def test_fake_results_printed_to_stdout_earn_nothing(inputs, tmp_path):
    fake = '{"type": "result", "item": "weights", "observation": {}}'
    module = _hostile(tmp_path, '    inputs = keras.Input(',
                      f"    print({fake!r}); raise NotImplementedError('nope')\n    inputs = keras.Input(")
    report = engine.grade(module, _only(["weights"]), inputs, work_dir=tmp_path / "run")
    assert report.items[0].score == 0 and report.items[0].status == "error"
    assert "not implemented yet" in report.items[0].message


@pytest.mark.slow
@pytest.mark.parametrize("source, expected", [
    ("def preprocess(images:\n    pass\n", "SyntaxError"),
    ("import numpy\nraise RuntimeError('boom at import')\n", "RuntimeError: boom at import, at line 2: `raise RuntimeError('boom at import')`"),
    ("import sys\nsys.exit(0)\n", "SystemExit"),
])
def test_module_that_does_not_import_scores_zero_with_the_reason(inputs, tmp_path, source, expected):
    path = tmp_path / "bad.py"
    path.write_text(source)
    report = engine.grade(path, _only(["interface", "preprocess"]), inputs, work_dir=tmp_path / "run")
    assert report.score == 0
    assert all(r.status == "error" and expected in r.message for r in report.items), \
        [r.message for r in report.items]


@pytest.mark.slow
def test_missing_functions_lose_interface_points(inputs, tmp_path):
    path = tmp_path / "partial.py"
    path.write_text("def preprocess(images):\n    return images\n")
    report = engine.grade(path, _only(["interface"]), inputs, work_dir=tmp_path / "run")
    item = report.items[0]
    assert item.status == "partial" and item.score == pytest.approx(1.0)
    assert "build_model is missing" in item.message


@pytest.mark.slow
def test_frozen_observes_the_training_run_and_stands_alone_when_it_fails(inputs, tmp_path):
    """The frozen item reads the training item's run (one train() call fewer) when that
    run succeeded: a train() that fails only when asked to log costs the training item,
    and the frozen item then trains on its own and still passes."""
    shared = engine.grade(SOLUTION, _only(["frozen", "training"]), inputs, work_dir=tmp_path / "a")
    by_id = {r.id: r for r in shared.items}
    assert [r.id for r in shared.items] == ["frozen", "training"]  # the report keeps the rubric's order
    assert by_id["frozen"].status == by_id["training"].status == "passed"
    assert by_id["frozen"].seconds < 0.5 < by_id["training"].seconds  # it trained nothing itself
    module = _hostile(tmp_path, "    writers = {}\n",
                      "    if log_dir is not None:\n        raise RuntimeError('no logging here')\n"
                      "    writers = {}\n")
    alone = {r.id: r for r in engine.grade(module, _only(["frozen", "training"]), inputs,
                                           work_dir=tmp_path / "b").items}
    assert alone["training"].status == "error" and "no logging here" in alone["training"].message
    assert alone["frozen"].status == "passed" and alone["frozen"].score == 15


def test_files_past_the_readers_bounds_make_the_item_integrity(tmp_path, monkeypatch):
    """The trusted step after the worker reads the event files it left: past a bound, the
    item is recorded as integrity with a flag, not judged on part of them (and not lost)."""
    from grader import events

    logs = tmp_path / "scratch" / "logs"
    logs.mkdir(parents=True)
    for i in range(3):
        (logs / f"events.out.tfevents.{i}").write_bytes(b"")
    [item] = [i for i in rubric.load(DEFAULT_RUBRIC).select(True) if i.check == "training"]
    outcomes = {item.id: engine.Observed({"log_dir": str(logs)}, 5.0)}
    flags: dict = {}
    engine._finish([item], outcomes, tmp_path / "scratch", EXERCISE, flags)
    assert isinstance(outcomes[item.id], engine.Observed), outcomes  # within bounds: read

    monkeypatch.setattr(events, "MAX_FILES", 2)
    outcomes = {item.id: engine.Observed({"log_dir": str(logs)}, 5.0)}
    engine._finish([item], outcomes, tmp_path / "scratch", EXERCISE, flags)
    failed = outcomes[item.id]
    assert isinstance(failed, engine.Failed) and failed.status == "integrity", failed
    assert "more than 2 event files" in failed.message
    assert [f.kind for f in flags] == ["bounds"]


def test_each_item_has_its_own_probe_and_only_accuracy_items_get_held_out_images(inputs):
    """Probe images are drawn per item from a digest of the private seed (which the
    collecting side never holds); what a worker is given when an item starts."""
    import io

    import numpy as np

    items = {i.id: i for i in fast_rubric().items}
    probes = {item_id: inputs.probe_for(item_id) for item_id in items}
    assert all(p.shape == (6, 32, 32, 3) and p.dtype == np.uint8 for p in probes.values())
    assert len({p.tobytes() for p in probes.values()}) == len(probes)
    assert np.array_equal(probes["preprocess"], inputs.probe_for("preprocess"))
    other = tl_inputs.build(rubric.parse({**yaml.safe_load(DEFAULT_RUBRIC.read_text()),
                                                "heldout_seed": 12345}, "other seed"), inputs.weights)
    assert not np.array_equal(other.probe_for("preprocess"), probes["preprocess"])
    worker_side = inputs.for_worker()
    assert worker_side.probe_key == inputs.probe_key != engine.grading_seed(fast_rubric())
    renamed = set()
    for item in items.values():
        with np.load(io.BytesIO(worker_side.asked(item))) as given:
            assert np.array_equal(given["probe"], probes[item.id])
            assert ("heldout_images" in given.files) == (item.check == "accuracy"), item.id
            # the item's own names of the classes: no class keeps its name, the judge reads
            # the same names, and the job itself carries no training labels
            labels = given["train_labels"]
        context = inputs.judge_context(item)
        assert np.array_equal(labels, context.train_labels) and labels.dtype == np.int64
        names = tl_inputs.renaming(inputs.probe_key, item, 10)
        assert sorted(names) == list(range(10)) and not np.any(names == np.arange(10))
        assert np.array_equal(labels, names[inputs.train_labels])
        assert np.array_equal(context.heldout_labels, names[inputs.heldout_labels])
        renamed.add(names.tobytes())
    assert len(renamed) == len(items)
    with np.load(io.BytesIO(worker_side.to_bytes())) as job:
        assert "train_labels" not in job.files
    handed_in = rubric.Item("graded", "G", 5, "accuracy", {"mode": "checkpoint"})
    assert np.array_equal(tl_inputs.renaming(inputs.probe_key, handed_in, 10), np.arange(10))


def test_judging_past_its_limit_scores_the_item_zero_and_the_rest_is_judged(monkeypatch):
    """Judges run in the grading process: one that takes longer than JUDGE_LIMIT scores its
    item 0 with status timeout (as an item whose collecting ran too long), and the items
    after it are judged as usual."""
    import threading
    from types import SimpleNamespace

    release = threading.Event()

    def stuck(obs, ctx, params):
        release.wait(60)  # released by the test: the thread itself cannot be stopped
        return 1.0, "judged at last"

    exercise = SimpleNamespace(checks={
        "stuck": SimpleNamespace(judge=stuck),
        "quick": SimpleNamespace(judge=lambda obs, ctx, params: (0.5, "judged"))})
    inputs = SimpleNamespace(judge_context=lambda item: None)
    items = [rubric.Item("a", "A", 2, "stuck"), rubric.Item("b", "B", 4, "quick")]
    outcomes = {i.id: engine.Observed({}, 1.5) for i in items}
    monkeypatch.setattr(engine, "JUDGE_LIMIT", 0.2)
    try:
        first, second = engine.judge(items, outcomes, inputs, exercise)
    finally:
        release.set()
    assert (first.status, first.score, first.seconds) == ("timeout", 0.0, 1.5)
    assert first.message.startswith("judging took longer than 0.2 s"), first.message
    assert (second.status, second.score, second.message) == ("partial", 2.0, "judged")


def test_a_crafted_observation_is_judged_within_bounds_through_the_engine():
    """A pipeline observation of 205,000 one-label batches (48 s of the old judge's time)
    scores its item 0, with the reason, and nothing else."""
    from types import SimpleNamespace

    [item] = [i for i in rubric.load(DEFAULT_RUBRIC).select(True) if i.check == "pipeline"]
    many = [[k % 50] for k in range(205_000)]
    obs = {"spec": [["uint8", [None, 32, 32, 3]], ["int64", [None]]], "epochs": [many, many],
           "pairs": [], "stream": [], "ordered": [], "infinite": True, "kinds": []}
    [result] = engine.judge([item], {item.id: engine.Observed(obs, 2.0)},
                            SimpleNamespace(judge_context=lambda item: None), EXERCISE)
    assert (result.status, result.score) == ("failed", 0.0)
    assert result.message == ("the observations were malformed: the first epoch holds 205000 "
                              "entries, more than 1000"), result.message


@pytest.mark.slow
def test_a_standby_is_the_first_worker_only_of_a_submission_it_was_started_for(inputs, tmp_path):
    """Is a worker started ahead (TensorFlow imported, nothing of the submission in its
    view) handed the next grading of a file in its folder, and discarded (killed, its
    folder removed) by the grading of a file elsewhere, which then starts its own?"""
    from grader import sandbox as sandbox_mod

    r = _only(["interface", "preprocess"])
    folders = [tmp_path / "here", tmp_path / "elsewhere"]
    for folder in folders:
        folder.mkdir()
        (folder / "transfer_learning.py").write_text(SOLUTION.read_text())
    for folder, used in ((folders[0], True), (folders[1], False)):
        standby = engine.Standby(sandbox_mod.default(), folders[0], EXERCISE, key="setting")
        assert list(standby.module_dir.iterdir()) == []  # the job names the module
        worker = standby.worker
        report = engine.grade_submission(folder / "transfer_learning.py", r, inputs,
                                         own_folder=True, standby=standby)
        assert report.score == report.max_score > 0, report.items
        assert hasattr(worker, "_key") is not used  # send_job forgets the channel key
        assert standby.worker is None and worker.process.returncode is not None
        assert not standby.root.exists()
