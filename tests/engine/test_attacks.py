"""Submissions that try to earn points they do not implement (tests/attacks/). The
worker's process is the submission's, so these attacks get full control of what it
reports; each must still score only what it really computes. (Forged protocol frames:
test_integrity.py; escapes from the sandbox: test_sandbox.py.)"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from grader.exercises.transfer_learning import inputs as tl_inputs
from grader import channel, engine, rubric
from grader.exercises.transfer_learning import synthetic, vgg_weights
from kit import DEFAULT_RUBRIC, ROOT, SOLUTION

ATTACKS = ROOT / "tests" / "attacks"


@pytest.fixture(scope="module")
def full_rubric():
    return rubric.load(DEFAULT_RUBRIC)


@pytest.fixture(scope="module")
def inputs(full_rubric):
    return tl_inputs.build(full_rubric, vgg_weights.stand_in())


def _load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_a_model_that_is_no_network_earns_nothing_that_reads_logits(tmp_path, full_rubric, inputs):
    """The fake model's detector classifies the held-out images almost perfectly, and its
    layers hold the right weights; the logits it reports are not what those layers compute,
    so no item that reads logits counts them."""
    attack = ATTACKS / "fake_network.py"
    detector = _load(attack).detect
    images, labels = synthetic.generate(500, seed=4242)
    assert (np.asarray(detector(images)).argmax(axis=1) == labels).mean() > 0.9  # a real threat

    report = engine.grade(attack, full_rubric, inputs, include_hidden=True, work_dir=tmp_path / "run")
    by_id = {r.id: r for r in report.items}
    assert by_id["training"].score <= by_id["training"].max_score / 2, by_id["training"].message
    assert "not fc applied" in by_id["training"].message
    for item in ("accuracy_quick", "accuracy", "checkpoint"):
        assert by_id[item].score == 0, (item, by_id[item].message)
        assert "not fc applied" in by_id[item].message
    # what it does implement still counts
    for item in ("preprocess", "weights", "pipeline"):
        assert by_id[item].status == "passed", (item, by_id[item].message)


@pytest.mark.slow
def test_a_patched_numpy_in_the_worker_does_not_hide_trained_convolutions(tmp_path, full_rubric, inputs):
    """A module that leaves conv3_3 trainable and makes numpy's array_equal always true in
    its own process: the frozen item compares the arrays in the grading process."""
    source = SOLUTION.read_text()
    old = 'activation="relu", trainable=False, name=name)'
    assert old in source
    source = source.replace(old, 'activation="relu", trainable=name == "conv3_3", name=name)')
    attack = tmp_path / "patched_numpy.py"
    attack.write_text(source + "\nimport numpy as _np\n_np.array_equal = lambda *args, **kwargs: True\n")
    frozen = [i for i in full_rubric.items if i.id == "frozen"]
    only = rubric.Rubric(frozen, full_rubric.title, full_rubric.time_limit, exercise=full_rubric.exercise)
    report = engine.grade(attack, only, inputs, work_dir=tmp_path / "run")
    (result,) = report.items
    assert result.score < result.max_score and "conv3_3" in result.message, result.message


MEMORY_RESTORE = '''

_SAVED_IN_MEMORY = {}
_train_with_files = train


def train(model, train_ds, val_ds=None, **options):
    history = _train_with_files(model, train_ds, val_ds, **options)
    if options.get("checkpoint_dir"):
        _SAVED_IN_MEMORY[options["checkpoint_dir"]] = ([w.copy() for w in model.get_weights()],
                                                       history["final_step"])
    return history


def restore_checkpoint(model, checkpoint_dir):
    if checkpoint_dir not in _SAVED_IN_MEMORY:
        return 0
    weights, step = _SAVED_IN_MEMORY[checkpoint_dir]
    model.set_weights(weights)
    return step
'''


@pytest.mark.slow
def test_a_restore_from_memory_does_not_pass_the_round_trip(tmp_path, full_rubric, inputs):
    """Restoring what the saving run kept in memory instead of reading the checkpoint: the
    restoring half runs in a fresh worker process that inherits only the scratch folder,
    so the round trip finds nothing (the resumed run, restored by train from the files,
    still counts)."""
    attack = tmp_path / "memory_restore.py"
    attack.write_text(SOLUTION.read_text() + MEMORY_RESTORE)
    items = [i for i in full_rubric.items if i.id == "checkpoint"]
    only = rubric.Rubric(items, full_rubric.title, full_rubric.time_limit, exercise=full_rubric.exercise)
    (result,) = engine.grade(attack, only, inputs, include_hidden=True, work_dir=tmp_path / "run").items
    assert result.score == pytest.approx(0.7 * result.max_score), result.message
    assert "step 0" in result.message, result.message


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bias_tolerance", "cancel_head", "protocol_forger"])
def test_logits_inside_a_widened_tolerance_earn_nothing(name, tmp_path, full_rubric, inputs):
    """A huge fc bias, or huge hidden units that cancel, widen the tolerance on the terms'
    magnitudes until a Fourier detector's logits fit in it; the protocol forger plays the
    worker's whole side with such witnesses. The recomputed head must also make the
    model's decisions, so none of them earns an item that reads logits."""
    wanted = {"training", "accuracy_quick", "accuracy", "checkpoint"}
    only = rubric.Rubric([i for i in full_rubric.items if i.id in wanted], full_rubric.title,
                         full_rubric.time_limit, exercise=full_rubric.exercise)
    report = engine.grade(ATTACKS / f"{name}.py", only, inputs, include_hidden=True,
                          work_dir=tmp_path / "run")
    by_id = {r.id: r for r in report.items}
    assert set(by_id) == wanted
    assert by_id["training"].score <= by_id["training"].max_score / 2, by_id["training"].message
    for item in ("accuracy_quick", "accuracy", "checkpoint"):
        assert by_id[item].score == 0, (item, by_id[item].message)
        # the protocol forger writes no checkpoint, which the grading process sees first
        says = "found no checkpoint" if (item, name) == ("checkpoint", "protocol_forger") \
            else "top class is the recomputed one"
        assert says in by_id[item].message, by_id[item].message


@pytest.mark.slow
def test_a_flood_of_signed_frames_is_cut_at_the_streams_bounds(tmp_path, full_rubric, inputs):
    """The forger floods the channel with signed flags and pads result frames with 400 MB:
    the stream ends at channel.MAX_FRAMES frames or MAX_STREAM bytes, or at the first frame
    whose arrays hold more than channel.MAX_ELEMENTS values (400 M bytes of uint8 are 400 M
    values), the item in flight is integrity, and the grading process keeps a bounded
    number of flags."""
    wanted = {"interface", "weights", "accuracy_quick"}
    only = rubric.Rubric([i for i in full_rubric.items if i.id in wanted], full_rubric.title,
                         full_rubric.time_limit, exercise=full_rubric.exercise)
    report = engine.grade(ATTACKS / "forger_memory.py", only, inputs, include_hidden=True,
                          work_dir=tmp_path / "run")
    by_id = {r.id: r for r in report.items}
    assert by_id["accuracy_quick"].status == "integrity", by_id["accuracy_quick"].message
    message = by_id["accuracy_quick"].message
    assert ("from one submission's workers" in message
            or f"more than {channel.MAX_ELEMENTS} values in one frame's arrays" in message), message
    assert len(report.flags) <= channel.MAX_FRAMES + 1


FRAME_WALK = '''    try:
        raise RuntimeError
    except RuntimeError as exc:
        frame = exc.__traceback__.tb_frame
    while frame is not None:
        loc = frame.f_locals
        if "send" in loc and "job" in loc and "ctx" in loc:
            break
        frame = frame.f_back
    else:
        return  # not under the grader
'''
GC_SEARCH = '''    import gc, json
    loc = {}
    exec(compile(GC_FIND, json.__file__, "exec"), {"gc": gc, "loc": loc})
    if {"send", "job", "ctx"} - set(loc):
        return  # not under the grader
'''
GC_FIND = '''GC_FIND = """
for obj in gc.get_objects():
    kind = type(obj).__name__
    if kind == "Writer" and hasattr(obj, "send"):
        loc["send"] = obj.send
    elif kind == "WorkerContext":
        loc["ctx"] = obj
    elif kind == "Job" and hasattr(obj, "items"):
        loc["job"] = obj
    elif isinstance(obj, dict) and callable(obj.get("features")) and callable(obj.get("interface")):
        loc["collectors"] = obj
"""


def _play():'''


def _variant(name: str, folder: Path) -> Path:
    """The protocol forger reaching the worker another way: through gc.get_objects()
    called from code compiled under json's file name, or from an untagged notebook whose
    takeover sits in a decorator of build_model (a bare call at the top of a cell is a
    demo line, not run; a decorator runs when the function is defined)."""
    source = (ATTACKS / "protocol_forger.py").read_text()
    assert FRAME_WALK in source and "\n_play()\n" in source
    if name == "gc_relabelled":
        path = folder / "gc_relabelled.py"
        path.write_text(source.replace(FRAME_WALK, GC_SEARCH).replace("def _play():", GC_FIND, 1))
        return path
    import nbformat

    source = source.replace("\n_play()\n", "\ndef _takeover(fn):\n    _play()\n    return fn\n")
    source = source.replace("\ndef build_model(", "\n@_takeover\ndef build_model(")
    path = folder / "notebook_decorator.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)]), str(path))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", ["gc_relabelled", "notebook_decorator"])
def test_the_forger_reaching_the_worker_another_way_earns_the_same(name, tmp_path, full_rubric, inputs):
    """However the forger finds the worker's signer, it plays the same protocol and earns
    nothing on the items that read logits; gc from relabelled code is flagged."""
    wanted = {"training", "accuracy", "checkpoint"}
    only = rubric.Rubric([i for i in full_rubric.items if i.id in wanted], full_rubric.title,
                         full_rubric.time_limit, exercise=full_rubric.exercise)
    report = engine.grade_submission(_variant(name, tmp_path), only, inputs)
    by_id = {r.id: r for r in report.items}
    assert set(by_id) == wanted
    assert by_id["training"].score <= by_id["training"].max_score / 2, by_id["training"].message
    assert by_id["accuracy"].score == 0, by_id["accuracy"].message
    assert "top class is the recomputed one" in by_id["accuracy"].message, by_id["accuracy"].message
    # it writes no checkpoint: the grading process reads the folder itself
    assert by_id["checkpoint"].score == 0, by_id["checkpoint"].message
    assert "found no checkpoint" in by_id["checkpoint"].message, by_id["checkpoint"].message
    if name == "gc_relabelled":
        assert "introspection" in {f.kind for f in report.flags}, report.flags


CRASH_AFTER_PADDING = '''
import os
import numpy as np

def _pad_and_crash():
    import sys
    frame = sys._getframe()
    while frame is not None and "send" not in frame.f_locals:
        frame = frame.f_back
    frame.f_locals["send"]({"type": "flag", "kind": "network", "detail": "pad",
                            "pad": np.zeros(30 << 20, np.uint8)})
    os._exit(1)

def preprocess(images):
    _pad_and_crash()

def build_model(weights, num_classes=10):
    _pad_and_crash()
'''


@pytest.mark.slow
def test_restarted_workers_share_one_bound_on_what_they_send(tmp_path, full_rubric, inputs, monkeypatch):
    """Each item sends 30 MB with the worker's own signer and crashes; a fresh worker
    carries on with the next item. Against a 100 MB bound shared by all of them, the
    fourth frame ends the grading as integrity; with a bound per worker it never would."""
    monkeypatch.setattr(channel, "MAX_STREAM", 100 << 20)
    attack = tmp_path / "crash_after_padding.py"
    attack.write_text(CRASH_AFTER_PADDING)
    wanted = ["preprocess", "layer_shapes", "weights", "features"]
    only = rubric.Rubric([i for i in full_rubric.items if i.id in wanted], full_rubric.title,
                         full_rubric.time_limit, exercise=full_rubric.exercise)
    report = engine.grade(attack, only, inputs, include_hidden=True, work_dir=tmp_path / "run")
    statuses = [r.status for r in report.items]
    assert statuses[:3] == ["crashed"] * 3, [(r.id, r.status, r.message) for r in report.items]
    assert statuses[3] == "integrity" and "from one submission's workers" in report.items[3].message


@pytest.mark.slow
def test_an_answer_painted_into_the_reported_inputs_earns_nothing(tmp_path, full_rubric, inputs):
    """The forger reports inputs 2**20 + (an answer painted per image), which fit a colour
    transform within a tolerance that grows with the values, and hand-made convolutions
    that carry the painting to fc. The logits are recomputed from the fitted transform of
    the true images, so nothing painted reaches them."""
    wanted = {"training", "accuracy", "checkpoint"}
    only = rubric.Rubric([i for i in full_rubric.items if i.id in wanted], full_rubric.title,
                         full_rubric.time_limit, exercise=full_rubric.exercise)
    report = engine.grade(ATTACKS / "smuggled_inputs.py", only, inputs, include_hidden=True,
                          work_dir=tmp_path / "run")
    by_id = {r.id: r for r in report.items}
    assert by_id["training"].score <= by_id["training"].max_score / 2, by_id["training"].message
    assert by_id["accuracy"].score == 0, by_id["accuracy"].message
    assert "not fc applied to its own VGG16 features" in by_id["accuracy"].message, by_id["accuracy"].message
    assert by_id["checkpoint"].score == 0, by_id["checkpoint"].message  # and it writes none


def _canned_head(inputs, n: int = 300) -> str:
    """A head fitted before grading on the data set's own labels (ridge regression on the
    grader's own pool3 features of the first `n` training images): base64 of an npz."""
    import base64
    import io

    from grader.exercises.transfer_learning import checks

    images = inputs.train_images[:n].astype(np.float32) - checks.common.IMAGENET_MEAN_RGB
    convs = {name: [inputs.weights[f"{name}_W"], inputs.weights[f"{name}_b"]] for name in checks.common.CONV_LAYERS}
    features = checks.explain.vgg_front(images, convs)["pool3"].reshape(n, -1).astype(np.float64)
    mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
    scaled = (features - mean) / scale
    targets = 2.0 * np.eye(10)[inputs.train_labels[:n]] - 1.0
    fitted = scaled.T @ np.linalg.solve(scaled @ scaled.T + 100.0 * np.eye(n), targets)
    buffer = io.BytesIO()
    np.savez(buffer, kernel=(fitted / scale[:, None]).astype(np.float32),
             bias=(-(mean / scale) @ fitted).astype(np.float32))
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.slow
def test_a_head_trained_before_grading_earns_no_learning_points(tmp_path, full_rubric, inputs):
    """A canned head that classifies the data set well (real checkpoints, flattering
    scalars, one batch pulled per step): every item names the classes its own way, so it
    answers under the wrong names, and the training, accuracy and checkpoint items say so."""
    head = _canned_head(inputs)
    attack = tmp_path / "canned_head.py"
    canned = (ATTACKS / "canned_head.py").read_text().replace('HEAD = ""', f'HEAD = "{head}"')
    attack.write_text(SOLUTION.read_text() + "\n\n" + canned)
    wanted = {"training", "accuracy_quick", "accuracy", "checkpoint"}
    only = rubric.Rubric([i for i in full_rubric.items if i.id in wanted], full_rubric.title,
                         full_rubric.time_limit, exercise=full_rubric.exercise)
    report = engine.grade(attack, only, inputs, include_hidden=True, work_dir=tmp_path / "run")
    by_id = {r.id: r for r in report.items}
    assert set(by_id) == wanted
    for item in wanted:
        assert by_id[item].score == 0, (item, by_id[item].message)
        assert "trained on other labels" in by_id[item].message, (item, by_id[item].message)
    # a real threat: under the data set's own names the same head is accurate
    names = tl_inputs.renaming(inputs.probe_key, next(i for i in only.items if i.id == "accuracy"), 10)
    assert "0.9" in by_id["accuracy"].message or "1.00 of them" in by_id["accuracy"].message, \
        by_id["accuracy"].message
    assert not np.any(names == np.arange(10))


@pytest.mark.slow
def test_a_forger_that_fits_a_real_head_loses_what_it_never_built_and_is_flagged(
        tmp_path, full_rubric, inputs):
    """The protocol forger made consistent: real VGG16 features and a head fitted on each
    item's own labels, so its logits are explained and it learns from what it is given
    (the training and accuracy items are what it pays for). It writes no checkpoint and
    builds no tf.data pipeline: the grading process reads the checkpoint files and the
    dataset graphs itself, so it loses those items; its frame walk is flagged from the
    source before anything runs."""
    wanted = {"training", "accuracy_quick", "checkpoint", "pipeline"}
    only = rubric.Rubric([i for i in full_rubric.items if i.id in wanted], full_rubric.title,
                         full_rubric.time_limit, exercise=full_rubric.exercise)
    report = engine.grade(ATTACKS / "fitted_forger.py", only, inputs, work_dir=tmp_path / "run")
    by_id = {r.id: r for r in report.items}
    assert by_id["training"].score == by_id["training"].max_score, by_id["training"].message
    assert by_id["accuracy_quick"].score == by_id["accuracy_quick"].max_score
    assert by_id["checkpoint"].score == 0, by_id["checkpoint"].message
    assert "found no checkpoint" in by_id["checkpoint"].message
    assert by_id["pipeline"].score == 0, by_id["pipeline"].message
    source = [f.detail for f in report.flags if f.kind == "source"]
    assert any("f_back" in detail for detail in source), report.flags
    assert any("tb_frame" in detail for detail in source), report.flags


@pytest.mark.slow
def test_a_head_renamed_to_the_given_labels_is_shown_and_loses_the_checkpoint(tmp_path, full_rubric, inputs):
    """A canned head that infers each item's names from the labels it is given earns the
    training and accuracy items (learning a renaming from the batches is learning, of ten
    numbers): the kit cannot tell it from training, and says so. It is shown: the head
    travels as data in the code. And a head set rather than trained is the same after 4
    steps as after 6, which costs it the checkpoint item."""
    head = _canned_head(inputs)
    attack = tmp_path / "canned_renamed.py"
    canned = (ATTACKS / "canned_renamed.py").read_text().replace('HEAD = ""', f'HEAD = "{head}"', 1)
    attack.write_text(SOLUTION.read_text() + "\n\n" + canned)
    only = rubric.Rubric([i for i in full_rubric.items if i.id in {"accuracy_quick", "checkpoint"}],
                         full_rubric.title, full_rubric.time_limit, exercise=full_rubric.exercise)
    report = engine.grade(attack, only, inputs, work_dir=tmp_path / "run")
    by_id = {r.id: r for r in report.items}
    assert by_id["accuracy_quick"].score == by_id["accuracy_quick"].max_score  # what it still earns
    assert by_id["checkpoint"].score == 0 and "set, not learned" in by_id["checkpoint"].message, \
        by_id["checkpoint"].message
    assert any("carries data in the code" in f.detail for f in report.flags if f.kind == "source"), report.flags
