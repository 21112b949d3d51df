"""Check 9: the checkpoint round trip, and training resumed from it.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .... import checkpoints
from .common import (
    CHECKPOINT_BUILD_SEED, MAX_ENTRIES, MAX_HEAD_LAYERS, MAX_TEXT, _entries,
    _fraction_and_messages, _integer, _judged, _kept_numbers, _kept_value, _mapping,
    _named_back, _numbers, _text
)
from .explain import explain_logits, random_rows
from .features import _same_head
from .model import _build, _fixed_batches, start_fc
from .training import other_names
from .witness import logit_witness


# ---------------------------------------------------------------- 9 checkpoint round-trip

# The checkpoint check: a run of ROUND_TRIP_STEPS that saves, then one resumed from its
# checkpoint up to STRAIGHT_STEPS, against a straight run of STRAIGHT_STEPS.
ROUND_TRIP_STEPS, STRAIGHT_STEPS = 4, 6
CHECKPOINT_FOLDER = "ckpt-roundtrip"
CHECKPOINT_TAUGHT = 64
"""training images the straight run's head is read on, to see under which names it answers"""


def _fresh_for_checkpoint(module, ctx):
    """A model every checkpoint run starts from, whatever the initialisers and whichever
    process builds it: the same random state for the build, and fc at zeros."""
    import keras

    keras.utils.set_random_seed(CHECKPOINT_BUILD_SEED)
    model = _build(module, ctx)
    start_fc(model)
    return model


def collect_checkpoint(module, ctx, params):
    """The saving half. The restoring half (`collect_checkpoint_restore`) runs in a fresh
    worker process that inherits only the scratch folder, so nothing travels in memory."""
    obs = {}
    # 4 steps saving every 2, keeping 1: the round trip, max_to_keep (2 saves, not 4: a
    # restore that returns the number of saves is told from one returning the step), and
    # the checkpoint at step 4 that the resumed run starts from.
    saved = ctx.scratch / CHECKPOINT_FOLDER
    first = _fresh_for_checkpoint(module, ctx)
    module.train(first, _fixed_batches(ctx), steps=ROUND_TRIP_STEPS, checkpoint_dir=str(saved),
                 checkpoint_every=2, max_to_keep=1)
    obs["trained"] = logit_witness(first, module, ctx.probe)
    straight_pulled = [0]
    straight = _fresh_for_checkpoint(module, ctx)
    module.train(straight, _fixed_batches(ctx, counter=straight_pulled), steps=STRAIGHT_STEPS)
    obs["straight"] = logit_witness(straight, module, ctx.probe)
    # the same head on training images: it must answer in the names it was trained on
    obs["straight_taught"] = logit_witness(straight, module, ctx.train_images[:CHECKPOINT_TAUGHT])
    obs["straight_pulled"] = straight_pulled[0]
    return obs


def collect_checkpoint_restore(module, ctx, params):
    """The restoring half, in a process of its own: restore into a fresh model, then
    resume training from the saved step."""
    obs = {}
    saved = ctx.scratch / CHECKPOINT_FOLDER
    # A fresh model first meets an empty folder (nothing to restore: step 0), then the
    # round trip's; after a failed restore it is built again.
    restored = _build(module, ctx)
    empty = ctx.scratch / "ckpt-empty"
    empty.mkdir(exist_ok=True)
    try:
        obs["empty_step"] = int(module.restore_checkpoint(restored, str(empty)))
    except Exception as exc:
        obs["empty_error"] = f"{type(exc).__name__}: {exc}"[:300]
        restored = _build(module, ctx)
    obs["restored_step"] = int(module.restore_checkpoint(restored, str(saved)))
    obs["restored"] = logit_witness(restored, module, ctx.probe)
    pulled = [0]
    resumed = _fresh_for_checkpoint(module, ctx)
    history = module.train(resumed, _fixed_batches(ctx, start=ROUND_TRIP_STEPS, counter=pulled),
                           steps=STRAIGHT_STEPS, checkpoint_dir=str(saved), checkpoint_every=2)
    obs["resumed"] = logit_witness(resumed, module, ctx.probe)
    obs["resume_pulled"] = pulled[0]
    final = history.get("final_step") if isinstance(history, dict) else None
    obs["resume_final_step"] = int(final) if final is not None else -1
    return obs


# What the checkpoints hold is read by the grading process itself (grader/checkpoints.py,
# no TensorFlow, nothing of the submission): after the saving half, before the restoring
# half can touch the folder, and again after the resumed run. The worker's report of the
# heads is then held against the files: the saved, restored and resumed heads must be
# the ones the files hold, at the step the files hold.

MAX_FILE_ARRAY = 1 << 20
"""values of one tensor the checkpoint reading keeps (a head's kernel is 40,960; the conv
kernels, 4-D, are never read)"""


def _checkpoint_files(scratch: Path) -> dict:
    """What the newest checkpoint in the round trip's folder holds: its number, the values
    of its integer scalars (the step among them) and its floating arrays of at most two
    dimensions (the head's, and the optimizer's slots for them); with how many checkpoints
    the folder keeps. A folder with none, or files that are no checkpoint, give the reason."""

    folder = Path(scratch) / CHECKPOINT_FOLDER
    found = {"kept": len(checkpoints.listing(folder))}
    newest = checkpoints.latest(folder)
    if newest is None:
        found["error"] = f"no checkpoint was written in {CHECKPOINT_FOLDER}/"
        return found
    try:
        held = checkpoints.read(newest, lambda key, dtype, shape: len(shape) <= 2
                                and math.prod(shape) <= MAX_FILE_ARRAY)
    except checkpoints.Unreadable as exc:
        found["error"] = str(exc)[:MAX_TEXT * 2]
        return found
    found["name"] = Path(newest).name
    found["keys"] = sorted(key[:MAX_TEXT] for key in held.entries)[:MAX_ENTRIES]
    found["integers"] = sorted({int(v) for v in held.values.values()
                                if v.ndim == 0 and v.dtype.kind in "iu"})
    found["arrays"] = [v for v in held.values.values() if v.ndim >= 1 and v.dtype.kind == "f"]
    return found


def finish_checkpoint(obs, scratch: Path):
    """After the saving half: the newest checkpoint (step 4), before any other process runs."""
    obs["files"] = _checkpoint_files(scratch)
    return obs


def finish_checkpoint_restore(obs, scratch: Path):
    """After the restoring half: the newest checkpoint now, the resumed run's last save."""
    obs["files_resumed"] = _checkpoint_files(scratch)
    return obs


def _in_files(files: dict, head, step: int, what: str) -> str | None:
    """Why `head` (as _head reports it) is not the one the checkpoint `files` hold at
    `step` (None: it is, bit for bit)."""
    files = _mapping(files, f"the checkpoint read {what}")
    if "error" in files:
        return f"{what}: {_text(files['error'], 'the reason')}"
    integers = [_integer(v, "a step in the checkpoint") for v in _entries(files["integers"], "the steps", 64)]
    arrays = [_numbers(a, "an array in the checkpoint") for a in _entries(files["arrays"], "the arrays", 256)]
    name = _text(files["name"], "the checkpoint's name")
    if step not in integers:
        return (f"{what}: the newest checkpoint ({name}) holds no step {step} (its integer values: "
                f"{integers[:6]}). Hint: keep the step counter in the tf.train.Checkpoint")
    layers = _entries(head, "the head", MAX_HEAD_LAYERS)
    for layer in layers:
        for value in _entries(layer, "a head layer", 3)[:2]:
            value = _numbers(value, "a head array")
            if not any(a.shape == value.shape and np.array_equal(a, value) for a in arrays):
                return (f"{what}: the newest checkpoint ({name}) does not hold the model's head as "
                        "it was after training. Hint: save the model itself in the tf.train.Checkpoint")
    return None


@_judged
def judge_checkpoint(obs, ctx, params):
    runs = ("trained", "restored", "straight", "resumed")
    files, resumed_files = (_mapping(obs[key], "the checkpoint read") for key in ("files", "files_resumed"))
    kept = _integer(files["kept"], "the checkpoints kept")
    if "error" in files and not kept:
        return 0.0, (f"the grading process found no checkpoint to read after saving "
                     f"({_text(files['error'], 'the reason')}): train(checkpoint_dir=...) must "
                     "write checkpoints with tf.train.Checkpoint and a CheckpointManager")
    for key in ("restored_step", "straight_pulled", "resume_pulled", "resume_final_step"):
        _integer(obs[key], key.replace("_", " "))
    if "empty_step" in obs:
        _integer(obs["empty_step"], "the step restored from an empty folder")
    empty_error = _text(obs["empty_error"], "restoring from an empty folder") \
        if "empty_error" in obs else None
    rows = np.arange(len(ctx.probe))
    for run in runs:
        unexplained = explain_logits(obs[run], ctx.probe, rows)
        if unexplained:
            return 0.0, f"the {run} model's outputs do not count: {unexplained}"
    taught = explain_logits(obs["straight_taught"], ctx.train_images[:CHECKPOINT_TAUGHT],
                            random_rows(CHECKPOINT_TAUGHT))
    if taught:
        return 0.0, f"the straight run's outputs on training images do not count: {taught}"
    renamed = other_names(_numbers(obs["straight_taught"]["logits"], "the straight run's logits", 2),
                          ctx.train_labels[:CHECKPOINT_TAUGHT])
    if renamed:
        return 0.0, f"after {STRAIGHT_STEPS} steps {renamed}"
    # Both runs start from fc at zeros: a head that learns is somewhere else after 4 steps
    # than after 6, and one that never moves stays at zeros. The same head after both, away
    # from the start, was set, not learned (a head made beforehand, renamed to the labels).
    head_4, head_6 = obs["trained"]["head"], obs["straight"]["head"]
    if _same_head(head_4, head_6) and any(np.any(np.asarray(a) != 0) for layer in head_6 for a in layer[:2]):
        return 0.0, (f"fc is the same after {ROUND_TRIP_STEPS} steps as after {STRAIGHT_STEPS}, and not "
                     "where training started: it was set, not learned from the batches. train() must "
                     "update fc by the gradients of the loss at every step")
    trained, restored, straight, resumed = (obs[run]["logits"] for run in runs)
    # The restored model (in another process) must hold the head the saving model held,
    # and that head must be the one in the files, at the step they hold.
    same = trained.shape == restored.shape and np.allclose(trained, restored, rtol=1e-5, atol=1e-5) \
        and _same_head(obs["trained"]["head"], obs["restored"]["head"])
    saved = _in_files(files, obs["trained"]["head"], ROUND_TRIP_STEPS,
                      f"after saving at step {ROUND_TRIP_STEPS}")
    resumed_saved = _in_files(resumed_files, obs["resumed"]["head"], STRAIGHT_STEPS,
                              f"after resuming to step {STRAIGHT_STEPS}")
    # The resumed run pulls its remaining steps' batches plus whatever the submission
    # prefetches; the straight run pulls all its steps' plus the same prefetch, so a run that
    # restarted at 0 pulls as many as that.
    remaining = STRAIGHT_STEPS - ROUND_TRIP_STEPS
    continued = remaining <= obs["resume_pulled"] < obs["straight_pulled"] - 1 \
        and obs["resume_final_step"] in (STRAIGHT_STEPS, -1)
    optimizer_kept = np.allclose(resumed, straight, rtol=1e-3, atol=1e-3)
    empty_ok = obs.get("empty_step") == 0
    behaviour = {"logits": _kept_numbers(_named_back(obs["straight_taught"]["logits"], ctx)),
                 "layout": _kept_value({
                     # the objects it holds by name (model, optimizer, step): the paths
                     # below them follow the model's style, which a rewrite changes
                     "objects": sorted({_text(k, "a checkpoint key").split("/")[0] for k in
                                        _entries(files.get("keys", []), "the checkpoint keys")}),
                     "name": _text(files.get("name", ""), "the checkpoint's name"),
                     "kept": [kept, _integer(resumed_files.get("kept", 0), "the checkpoints kept")],
                     "steps": [obs["restored_step"], obs.get("empty_step", -1), obs["straight_pulled"],
                               obs["resume_pulled"], obs["resume_final_step"]]})}
    return *_fraction_and_messages([
        (0.3, same and obs["restored_step"] == ROUND_TRIP_STEPS and not saved,
         saved or f"restoring into a fresh model gave {'the same' if same else 'different'} "
                  f"outputs and step {obs['restored_step']} (expected identical outputs and step "
                  f"{ROUND_TRIP_STEPS})"
                  + (". Hint: restore_checkpoint returns the training step saved in the checkpoint "
                     "(a step variable in the tf.train.Checkpoint)"
                     + (", not how many saves were made" if obs["restored_step"] > 0 else "")
                     if same and obs["restored_step"] != ROUND_TRIP_STEPS else "")),
        (0.15, kept == 1, f"with max_to_keep=1, {kept} checkpoints were left "
                          "(expected 1). Hint: tf.train.CheckpointManager(max_to_keep=...)"),
        (0.25, continued and not resumed_saved, resumed_saved or
         f"resuming at step {ROUND_TRIP_STEPS} towards step {STRAIGHT_STEPS} "
                          f"pulled {obs['resume_pulled']} batches ({STRAIGHT_STEPS} straight steps "
                          f"pulled {obs['straight_pulled']}) and ended at step "
                          f"{obs['resume_final_step']}: training must restore the step and train "
                          f"only the remaining {remaining}"),
        (0.2, optimizer_kept, f"{ROUND_TRIP_STEPS} steps + resume + {remaining} steps did not match "
                              f"{STRAIGHT_STEPS} straight steps from the same start"
                              + (": save and restore the optimizer (its state) with the model"
                                 if continued else ", as follows from a resume that did not continue "
                                 "at the saved step (once it does, this compares the optimizer's "
                                 "state)")),
        (0.1, empty_ok, "restore_checkpoint on an empty folder should return 0, "
                        + (f"it raised {empty_error}" if empty_error is not None
                           else f"it returned {obs.get('empty_step')}")),
    ]), {"behaviour": behaviour}


