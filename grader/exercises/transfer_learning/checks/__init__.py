"""The exercise's checks. Each check is two halves:

- `collect_<check>(module, ctx, params)` runs in the worker process, calls the student's
  code and returns plain observations (numbers, strings, numpy arrays);
- `judge_<check>(obs, ctx, params)` runs in the grading process, never touches student
  code or TensorFlow, and turns observations into (fraction of points, message).

Labels of held-out images exist only on the judging side.

The package: `common` (contexts, constants, the bounds on what a judge reads, kept
behaviour), `model` (the worker's access to a model), `witness` and `explain` (how a
model's logits are reported and explained), and one module per group of checks:
`structure` (1-4), `features` (5-6), `training` (7-8), `checkpoint` (9), `pipeline` (10).
Here: the registry, which says which check is which.
"""
from __future__ import annotations

import numpy as np

from ....exercise import Calibration, Check, Registry, at_least_one, positive, rules
from .. import network
from . import (  # noqa: F401
    checkpoint, common, explain, features, model, pipeline, structure, training, witness
)
from .checkpoint import (
    collect_checkpoint, collect_checkpoint_restore, finish_checkpoint,
    finish_checkpoint_restore, judge_checkpoint
)
from .features import collect_features, collect_frozen, judge_features, judge_frozen
from .pipeline import collect_pipeline, judge_pipeline
from .structure import (
    collect_interface, collect_layer_shapes, collect_preprocess, collect_weights,
    judge_interface, judge_layer_shapes, judge_preprocess, judge_weights
)
from .training import (
    TRAINING_IMAGES, collect_accuracy, collect_training, finish_training, judge_accuracy,
    judge_training
)


def accuracy_of(observation, labels: np.ndarray, images: int) -> float | None:
    """The accuracy of an observation's logits on the first `images` labels (None: no
    logits of the right shape)."""
    logits = observation.get("logits") if isinstance(observation, dict) else None
    labels = labels[:images]
    if logits is None or np.shape(logits) != (len(labels), network.NUM_CLASSES):
        return None
    return float((np.asarray(logits).argmax(axis=1) == labels).mean())


def _describe_accuracy(params: dict) -> str | None:
    from ..network import DEFAULT_LEARNING_RATE

    if params.get("mode", "train") != "train":
        return None
    return (f"`build_model`, `fc` set to zeros, `make_dataset(train images, labels, "
            f"batch_size=64, seed=0)`, then `train(model, dataset, steps={params['steps']})` "
            f"at its default learning rate ({DEFAULT_LEARNING_RATE:g}); accuracy on "
            f"{params.get('images', 1000)} unseen images (the classes named anew for this "
            f"item, in the training labels too): no points at or below "
            f"{params['lower']:.2f}, full points from {params['upper']:.2f}, linear between")


def _describe_training(params: dict) -> str:
    return (f"`build_model`, `fc` set to zeros, then `train(model, dataset, steps="
            f"{params.get('steps', 60)}, log_dir=...)` on the grader's batches of 32 "
            f"training images, their classes named anew for this item (a head trained "
            f"beforehand scores nothing), at your default learning rate; half the points when the "
            f"accuracy on {TRAINING_IMAGES} of those images reaches {params.get('learned_accuracy', 0.3):.2f} "
            "(the loss may still be above where it started), half for TensorBoard scalars "
            "of the training loss and accuracy under `log_dir`")


ACCURACY_CALIBRATION = Calibration(
    "range", lambda obs, context, params: accuracy_of(obs, context.heldout_labels, params["images"]),
    "accuracy", applies=lambda params: params.get("mode", "train") == "train")
TRAINING_CALIBRATION = Calibration(
    "bar", lambda obs, context, params: accuracy_of(obs.get("after"), context.train_labels,
                                                   TRAINING_IMAGES) if isinstance(obs, dict) else None,
    "training accuracy", bar="learned_accuracy")


def _accuracy_mode_and_bounds(params):
    if params["mode"] not in ("train", "checkpoint"):
        return f"params.mode must be 'train' or 'checkpoint', found {params['mode']!r}"
    if not 0 <= params["lower"] < params["upper"] <= 1:
        return (f"need 0 <= params.lower < params.upper <= 1, found lower={params['lower']}, "
                f"upper={params['upper']}")
    return None


def _learned_accuracy_in_range(params):
    if not 0 <= params["learned_accuracy"] <= 1:
        return f"params.learned_accuracy must be in 0..1, found {params['learned_accuracy']}"
    return None


REGISTRY = Registry([
    Check("interface", collect_interface, judge_interface),
    Check("preprocess", collect_preprocess, judge_preprocess,
          {"tolerance": ((int, float), 1e-3, "absolute tolerance on output values")},
          positive("tolerance"), task="preprocess", uses=("preprocess",)),
    Check("layer_shapes", collect_layer_shapes, judge_layer_shapes,
          task="build_model", uses=("build_model",)),
    Check("weights", collect_weights, judge_weights, task="build_model", uses=("build_model",)),
    Check("frozen", collect_frozen, judge_frozen,
          {"steps": (int, 3, "training steps taken before comparing weights")}, at_least_one("steps"),
          task="build_model", uses=("build_model", "train"), shares="training"),
    Check("features", collect_features, judge_features,
          {"tolerance": ((int, float), 1e-3, "relative tolerance on pool3 outputs")},
          positive("tolerance"), task="build_model", uses=("build_model",)),
    Check("training", collect_training, judge_training,
          {"steps": (int, 60, "training steps taken"),
           "learned_accuracy": ((int, float), 0.3, "accuracy on the item's training images "
                                "from which the run counts as learned (set by `grader calibrate`)")},
          rules(at_least_one("steps"), _learned_accuracy_in_range), task="train",
          uses=("build_model", "train"), finish=finish_training,
          calibration=TRAINING_CALIBRATION, describe=_describe_training),
    Check("accuracy", collect_accuracy, judge_accuracy,
          {"mode": (str, "train", "'train' with the student's train(), or 'checkpoint'"),
           "steps": (int, 100, "training steps in train mode"),
           "images": (int, 1000, "how many held-out images are scored"),
           "checkpoint": (str, "checkpoints", "in checkpoint mode: folder beside the submission"),
           "lower": ((int, float), 0.2, "accuracy at or below which the item scores 0"),
           "upper": ((int, float), 0.8, "accuracy at or above which it scores full points")},
          rules(at_least_one("steps", "images"), _accuracy_mode_and_bounds), task="train",
          uses=("build_model", "train", "make_dataset", "restore_checkpoint"), heldout=True,
          calibration=ACCURACY_CALIBRATION, describe=_describe_accuracy),
    Check("checkpoint", collect_checkpoint, judge_checkpoint, task="restore_checkpoint",
          uses=("build_model", "train", "restore_checkpoint"), finish=finish_checkpoint,
          second_part=collect_checkpoint_restore, second_finish=finish_checkpoint_restore),
    Check("pipeline", collect_pipeline, judge_pipeline,
          {"batch_size": (int, 16, "batch size asked of make_dataset")}, at_least_one("batch_size"),
          task="make_dataset", uses=("make_dataset",)),
])
