"""Checks 7-8: training that learns (with its TensorBoard summaries), and accuracy on
held-out images.
"""
from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np

from .. import network
from .common import (
    BEHAVIOUR_VALUES, CONV_LAYERS, MAX_OUTPUTS, MAX_TEXT, _entries, _fraction_and_messages,
    _judged, _kept_numbers, _kept_value, _mapping, _named_back, _numbers, _require, _text
)
from .explain import explain_logits, random_rows
from .features import _frozen_before, _frozen_observation, _same_arrays
from .model import _build, _fixed_batches, quick_teardown, start_fc
from .structure import preprocessing_mistake
from .witness import logit_witness


# ---------------------------------------------------------------- 7 training and summaries

TRAINING_IMAGES = 256
"""training images the training item's logits are read on, before and after the run"""


def collect_training(module, ctx, params):
    model = _build(module, ctx)
    start_fc(model)
    try:
        frozen_before = _frozen_before(model)
    except Exception:  # noqa: BLE001 - the frozen item then runs and judges on its own
        frozen_before = None
    batch = ctx.train_images[:TRAINING_IMAGES]
    before = logit_witness(model, module, batch)
    log_dir = ctx.scratch / "training-logs"
    module.train(model, _fixed_batches(ctx), steps=params["steps"], log_dir=str(log_dir))
    if frozen_before is not None:
        with contextlib.suppress(Exception):
            ctx.runs["frozen"] = _frozen_observation(model, *frozen_before, params["steps"])
    return {"before": before, "after": logit_witness(model, module, batch), "log_dir": str(log_dir)}


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    logits = logits.astype(np.float64)
    logits = logits - logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


# Scalar tags accepted for the training loss and accuracy: tf.summary.scalar's plain names
# and those keras.callbacks.TensorBoard writes, in any run sub-folder of log_dir.
LOSS_TAGS = {"loss", "batch_loss", "epoch_loss", "train_loss"}
ACCURACY_TAGS = {"accuracy", "acc", "batch_accuracy", "epoch_accuracy", "train_accuracy",
                 "sparse_categorical_accuracy", "batch_sparse_categorical_accuracy",
                 "epoch_sparse_categorical_accuracy"}


def finish_training(obs, scratch: Path):
    """Run by the engine outside the sandbox, on the machine that collected: the scalar
    tags of the event files the submission wrote, read defensively, inside scratch only.
    Whatever the worker itself said about tags is replaced."""
    from ....events import scalars

    log_dir = Path(obs["log_dir"])
    if not log_dir.resolve().is_relative_to(Path(scratch).resolve()):
        raise ValueError(f"log_dir {str(log_dir)[:100]} is outside the scratch folder")
    found = scalars(log_dir)
    obs["scalar_tags"] = sorted(found)
    obs["curves"] = training_curves(found)
    return obs


CURVE_POINTS = 200
"""points a training curve keeps for people to look at (grader review and report)"""


def training_curves(found: dict[str, list[tuple[int, float]]]) -> dict:
    """{"loss": [[step, value]], "accuracy": [...]} from the scalars a run logged: the
    first accepted tag of each kind, in step order, thinned to CURVE_POINTS points."""
    curves = {}
    for kind, accepted in (("loss", LOSS_TAGS), ("accuracy", ACCURACY_TAGS)):
        tags = sorted(t for t in found if str(t).rsplit("/", 1)[-1].lower() in accepted)
        if not tags:
            continue
        points = sorted((int(step), float(value)) for step, value in found[tags[0]]
                        if np.isfinite(value))
        stride = max(1, -(-len(points) // CURVE_POINTS))
        curves[kind] = [[step, round(value, 6)] for step, value in points[::stride]]
    return curves


LEARNING_RATES_PARAGRAPH = "'Mind the scale of what fc sees' in the handout's section 4"


def training_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of `logits` on the training item's images: what the item's verdict reads."""
    return float((np.asarray(logits).argmax(1) == labels).mean())


def other_names(logits: np.ndarray, labels: np.ndarray) -> str | None:
    """What is wrong when `logits` sort the images into classes well, but under other names
    than `labels` (None when they do not).

    Every item names the classes its own way (inputs.renaming), so a head trained before
    grading, loaded from a file or copied from another run, predicts the data set's names,
    or another item's: under the labels it is judged on it scores below chance, while
    renaming its classes one to one (matched greedily on the counts of predicted class
    against label) makes it accurate. A head that learned from the labels it was given
    has its best renaming at the identity, or near it."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    if logits.ndim != 2 or len(logits) != len(labels) or not len(labels):
        return None
    classes = max(logits.shape[1], int(labels.max()) + 1)
    counts = np.zeros((classes, classes), np.int64)
    np.add.at(counts, (logits.argmax(axis=1), labels), 1)
    direct = float(np.trace(counts)) / len(labels)
    matched, left = 0, counts.astype(np.float64)
    for _ in range(classes):
        row, column = np.unravel_index(np.argmax(left), left.shape)
        if left[row, column] <= 0:
            break
        matched += int(left[row, column])
        left[row, :], left[:, column] = -1, -1
    matched /= len(labels)
    if matched < max(0.5, direct + 0.3):
        return None
    return (f"the head tells the {len(labels)} images apart ({matched:.2f} of them right once its "
            f"classes are renamed) but not under the names it was given ({direct:.2f} right): "
            "it was trained on other labels (a head made before grading, loaded from a file "
            "or copied), or the labels are changed on their way into the loss. Every grading "
            "names the classes its own way: train() must learn from the batches it is given")


def learning_diagnosis(before: np.ndarray, after: np.ndarray, labels: np.ndarray,
                       steps: int, bar: float, inputs_off: str | None = None,
                       weights_off: list[str] | None = None, checked: bool = False,
                       logged_loss: list | None = None) -> tuple[bool, str]:
    """(learned, what was measured and its most likely cause) from the logits on the same
    training images before and after a run of `steps` steps.

    Learning counts when the accuracy on those images reaches `bar`, a bound calibrated
    on the course's data (`grader calibrate`): the loss is reported but not judged,
    because Adam's first steps overshoot it on features in the hundreds while the
    accuracy already climbs, and on real images the loss can stay above its start for
    the whole budget of a correct run.

    The cause is read from what the grader saw of the network the run trained: what
    conv1_1 is given when that is not x*255 - the ImageNet mean (`inputs_off`, in the
    preprocess item's words), the convolutions that do not hold the weights file's values
    (`weights_off`), and `checked` when both were read and found right, so what is left
    is the training itself; then the loss the run logged ([[step, value], ...]) shows how
    far the steps overshot.
    """
    loss_before, loss_after = cross_entropy(before, labels), cross_entropy(after, labels)
    acc_before, acc_after = training_accuracy(before, labels), training_accuracy(after, labels)
    measured = (f"in {steps} steps the accuracy on {len(labels)} training images went "
                f"{acc_before:.2f} -> {acc_after:.2f} (learned from {bar:.2f}) and the loss "
                f"{loss_before:.3f} -> {loss_after:.3f}")
    moved = float(np.max(np.abs(after.astype(np.float64) - before))) if before.size else 0.0
    if acc_after >= bar and acc_after > acc_before:
        return True, measured
    if moved <= 1e-6 * (1.0 + float(np.max(np.abs(before))) if before.size else 1.0):
        return False, (f"nothing learned: {measured}, and the model's outputs did not change "
                       "at all, so fc was never updated. Hint: apply the gradients of the loss to the "
                       "trainable variables (optimizer.apply_gradients)")
    if inputs_off:
        return False, (f"not learned: {measured}. The updates are applied, but the network's "
                       f"inputs are off: {inputs_off}, so fc sees features VGG16 was not trained "
                       "for. Hint: fix preprocess first (uint8 to 0..255 floats, the ImageNet mean "
                       "subtracted in RGB order; the preprocess item says more)")
    if weights_off:
        return False, (f"not learned: {measured}. The updates are applied, but the convolutions "
                       f"do not hold the VGG16 weights ({', '.join(weights_off[:3])}"
                       f"{' ...' if len(weights_off) > 3 else ''} differ from the weights file), so "
                       "the features tell the classes apart poorly. Hint: are the VGG16 weights "
                       "loaded into the convolutions? (the weights item says more)")
    if loss_after > loss_before:
        if checked:
            swing = ""
            if logged_loss and len(logged_loss) >= 3:
                step, peak = max(logged_loss, key=lambda point: point[1])
                swing = (f" (the loss it logged peaked at {peak:.4g} at step {step:g} and ended at "
                         f"{logged_loss[-1][1]:.4g})")
            return False, (f"not learned: {measured}. The updates are applied, but the loss ended "
                           f"above where it started: each step overshoots{swing}. The network's inputs and "
                           "the VGG16 weights are right, so the learning rate is too large for "
                           f"this optimizer on these features ({LEARNING_RATES_PARAGRAPH}; Adam at "
                           "1e-4 settles within the budget). Hint: lower the learning rate, or "
                           "use the default 1e-4 with Adam")
        return False, (f"not learned: {measured}. The updates are applied, but the loss ended "
                       "above where it started: each step overshoots. Hint: most likely the network's "
                       "inputs are off (preprocess: uint8 to 0..255 floats, the ImageNet mean "
                       "subtracted in RGB order), else a learning rate too large for this optimizer on "
                       f"these features ({LEARNING_RATES_PARAGRAPH}; Adam at 1e-4 settles within "
                       "the budget)")
    if acc_after > acc_before + 0.05:
        return False, (f"too little learned: {measured}. The updates are applied and help, but "
                       "too slowly for the budget. Hint: a learning rate too small or too large for "
                       f"this optimizer ({LEARNING_RATES_PARAGRAPH})"
                       + ("" if checked else ", or features that barely tell the classes apart "
                          "(are the VGG16 weights loaded into the convolutions?)"))
    return False, (f"too little learned: {measured}. The updates are applied but change nothing "
                   "that matters. Hint: a learning rate far below 1e-4 (1e-6 needs "
                   "about a hundred times the steps)"
                   + ("" if checked else ", or features near zero (are the VGG16 weights "
                      "loaded into the convolutions?)"))


def _network_off(witness: dict, images: np.ndarray, weights: dict) -> tuple:
    """(what is wrong with what conv1_1 is given, the convolutions whose kernel or bias is
    not the weights file's, both read) from a set of logits' witness (checked by
    explain_logits before): what a training or accuracy message blames before the
    training itself."""
    inputs = witness.get("inputs")
    convs = witness.get("convs") or {}
    inputs_off = preprocessing_mistake(inputs, images)
    weights_off = [name for name in CONV_LAYERS if name in convs and not _same_arrays(
        convs[name], [weights[f"{name}_W"], weights[f"{name}_b"]])]
    checked = isinstance(inputs, np.ndarray) and inputs.shape == images.shape and \
        all(name in convs for name in CONV_LAYERS)
    return inputs_off, weights_off, checked


@_judged
def judge_training(obs, ctx, params):
    labels = ctx.train_labels[:TRAINING_IMAGES]
    images = ctx.train_images[:TRAINING_IMAGES]
    for run in ("before", "after"):
        logits = _numbers(_mapping(obs[run], f"what was read {run} training").get("logits"),
                          f"the logits {run} training", ndim=2)
        _require(len(logits) == len(labels) and 0 < logits.shape[1] <= MAX_OUTPUTS,
                 f"the logits {run} training have shape {list(logits.shape)}, expected "
                 f"[{len(labels)}, at most {MAX_OUTPUTS}]")
    tags = _entries(obs["scalar_tags"], "the scalar tags")
    _require(all(isinstance(tag, str) for tag in tags), "a scalar tag is not text")
    rows = random_rows(len(images))  # the same for both: one front end when fc alone trained
    unexplained = explain_logits(obs["before"], images, rows) or explain_logits(obs["after"], images, rows)
    if unexplained:
        learned, diagnosis = False, f"nothing counts as learned: {unexplained}"
    elif renamed := other_names(obs["after"]["logits"], labels):
        return 0.0, f"nothing counts: {renamed}"
    else:
        run = (obs["before"]["logits"], obs["after"]["logits"], labels, params["steps"],
               params["learned_accuracy"])
        learned, diagnosis = learning_diagnosis(*run)
        if not learned:  # the cause, from what the grader saw of the network and the run logged
            logged = _mapping(obs.get("curves", {}), "the curves").get("loss")
            logged = [point for point in logged if isinstance(point, list) and len(point) == 2
                      and all(isinstance(v, (int, float)) for v in point)] \
                if isinstance(logged, list) else None
            learned, diagnosis = learning_diagnosis(*run, *_network_off(obs["before"], images, ctx.weights),
                                                    logged_loss=logged)
    leaves = {tag.rsplit("/", 1)[-1].lower()[:MAX_TEXT] for tag in tags}
    missing = [kind for kind, accepted in (("loss", LOSS_TAGS), ("accuracy", ACCURACY_TAGS))
               if not leaves & accepted]
    found = ", ".join(sorted(leaves)[:6]) or "none"
    curves = _mapping(obs.get("curves", {}), "the curves")
    logged = {kind: [p for p in points if isinstance(p, list) and len(p) == 2
                     and all(isinstance(v, (int, float)) for v in p)]
              for kind, points in curves.items() if isinstance(points, list)}
    details = {"curves": curves,
               "train_accuracy": [training_accuracy(obs["before"]["logits"], labels),
                                  training_accuracy(obs["after"]["logits"], labels)],
               "behaviour": {
                   "logits": _kept_numbers(_named_back(obs["after"]["logits"], ctx)),
                   # the accuracy logged ties at the first steps (a head at zeros answers
                   # class 0, whichever the batch's seed named so): compared within a batch
                   "logged": {**_kept_numbers([v for kind in sorted(logged) for _, v in logged[kind]]),
                              "within": "batch"},
                   "logging": _kept_value({"tags": sorted(str(t)[:MAX_TEXT] for t in tags)[:40],
                                           "steps": {kind: [int(p[0]) for p in points][:BEHAVIOUR_VALUES]
                                                     for kind, points in sorted(logged.items())}})}}
    return *_fraction_and_messages([
        (0.5, learned, diagnosis),
        (0.5, not missing, f"no TensorBoard scalar for the training {' or '.join(missing)} under "
                           f"log_dir (scalars found: {found}). Hint: tf.summary.scalar('loss', ...) "
                           "and ('accuracy', ...) inside a file writer's as_default()"),
    ]), details


# ---------------------------------------------------------------- 8 accuracy

def collect_accuracy(module, ctx, params):
    model = _build(module, ctx)
    if params["mode"] == "checkpoint":
        folder = ctx.submission_dir / params["checkpoint"]
        if not folder.is_dir():
            return {"missing": str(params["checkpoint"])}
        module.restore_checkpoint(model, str(folder))
    else:
        start_fc(model)
        try:
            # repeat(): a pipeline that stops after one epoch costs the pipeline item, not this one
            dataset = module.make_dataset(ctx.train_images, ctx.train_labels, batch_size=64,
                                          seed=0).repeat().with_options(quick_teardown())
            next(iter(dataset))
        except Exception:  # a broken pipeline must not cost the accuracy item too
            dataset = _fixed_batches(ctx, batch=64)
        module.train(model, dataset, steps=params["steps"])
    return logit_witness(model, module, ctx.heldout_images[:params["images"]])


def _accuracy_cause(witness: dict, images: np.ndarray, labels: np.ndarray, weights: dict) -> str | None:
    """The most likely cause of a low accuracy after training, from what the grader saw
    of the trained network (its witness, checked by explain_logits before): what conv1_1
    is given, the convolutions' weights, the head, fc's outputs, and the loss on the
    images; None when none of them says anything."""
    logits = np.asarray(witness["logits"], np.float64)
    inputs_off, weights_off, checked = _network_off(witness, images, weights)
    if inputs_off:
        return (f"The network's inputs are off: {inputs_off}, so fc sees features VGG16 was not "
                "trained for. Hint: fix preprocess first (the preprocess item says more)")
    if weights_off:
        return (f"The convolutions do not hold the VGG16 weights ({', '.join(weights_off[:3])}"
                f"{' ...' if len(weights_off) > 3 else ''} differ from the weights file). Hint: are "
                "the VGG16 weights loaded into the convolutions? (the weights item says more)")
    head = witness.get("head") or []
    if len(head) > 1:
        return (f"The model has {len(head)} dense layers after flatten where the table has fc "
                "alone: the extra layers start from random weights and slow learning (the "
                "features item says more)")
    if len(logits) > 1 and \
            float(np.max(np.abs(logits - logits[0]))) <= 1e-6 * (1.0 + float(np.max(np.abs(logits)))):
        return ("fc gives every image the same outputs: training never changed it (the training "
                "item's message says more). Hint: apply the gradients of the loss to the trainable "
                "variables (optimizer.apply_gradients)")
    if not checked:
        return None
    loss, chance = cross_entropy(logits, labels), math.log(logits.shape[1])
    if loss > chance:
        return (f"The network's inputs and the VGG16 weights are right, but the loss on these "
                f"images is {loss:.4g}, above the {chance:.3f} of a uniform guess: the model is "
                "confident where it is wrong, as when each step overshoots. Hint: most likely a learning "
                f"rate too large for this optimizer on these features ({LEARNING_RATES_PARAGRAPH}; "
                "Adam at 1e-4 settles within the budget)")
    return (f"The network's inputs and the VGG16 weights are right, and the loss on these images "
            f"is {loss:.4g}, below the {chance:.3f} of a uniform guess: it learns, too slowly for "
            f"the budget. Hint: a learning rate too small or too large for this optimizer "
            f"({LEARNING_RATES_PARAGRAPH})")


@_judged
def judge_accuracy(obs, ctx, params):
    if "missing" in obs:
        missing = _text(obs["missing"], "the checkpoint folder")
        return 0.0, f"expected a checkpoint folder {missing!r} beside the submission"
    logits = _numbers(obs["logits"], "the logits")
    labels = ctx.heldout_labels[:params["images"]]
    if logits.shape != (len(labels), network.NUM_CLASSES):
        return 0.0, f"expected logits [{len(labels)}, {network.NUM_CLASSES}], found {list(logits.shape)[:8]}"
    unexplained = explain_logits(obs, ctx.heldout_images[:params["images"]])
    if unexplained:
        return 0.0, f"no accuracy counts: {unexplained}"
    if params["mode"] == "train" and (renamed := other_names(logits, labels)):
        return 0.0, f"no accuracy counts: {renamed}"
    accuracy = float((logits.argmax(axis=1) == labels).mean())
    lower, upper = params["lower"], params["upper"]
    fraction = float(np.clip((accuracy - lower) / (upper - lower), 0.0, 1.0))
    how = f"after {params['steps']} steps" if params["mode"] == "train" else "from the checkpoint"
    message = f"accuracy {accuracy:.3f} on {len(logits)} unseen images {how}"
    if fraction < 1:
        message += f" (full points from {upper:.2f}, none at or below {lower:.2f})"
    if fraction == 0:
        counts = np.bincount(logits.argmax(axis=1), minlength=logits.shape[1])
        top = int(counts.argmax())
        share = counts[top] / max(len(logits), 1)
        if share >= 0.5:
            message += (f"; it predicts one class for {share:.0%} of the images, so it learned "
                        "nothing that tells the classes apart")
        elif accuracy <= 1.5 / logits.shape[1]:
            message += "; that is about chance"
    if fraction < 1 and params["mode"] == "train":
        cause = _accuracy_cause(obs, ctx.heldout_images[:params["images"]], labels, ctx.weights)
        message += f". {cause}" if cause else " (the training item's message names the likely cause)"
    return fraction, message, {"accuracy": accuracy, "lower": lower, "upper": upper,
                               "images": len(logits)}


