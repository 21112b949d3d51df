"""What every check shares: the contexts each half sees, the network's constants, the
bounds on what a judge reads from the worker, and the behaviour kept for `grader similarity`.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import network


IMAGENET_MEAN_RGB = np.array(network.IMAGENET_MEAN_RGB, np.float32)
CONV_LAYERS = network.CONV_LAYERS
LAYER_ORDER = network.LAYER_ORDER
LAYER_SHAPES = network.LAYER_SHAPES
FEATURE_LAYERS = network.FEATURE_LAYERS
FC_PARAMS = network.FC_PARAMS
FC = network.FC.name
SIGNATURES = network.CONTRACT
# The grader's own fc weights for comparing a model's logits with its own computation.
FC_PROBE_SEED = 5
CHECKPOINT_BUILD_SEED = 6


@dataclass
class WorkerContext:
    """What the student-facing half may see: no held-out labels. `train_labels`, `probe`
    and `heldout_images` are the running item's (the labels in the item's own names of
    the classes; held-out images empty for an item that is not given them)."""
    weights: dict
    train_images: np.ndarray
    train_labels: np.ndarray
    probe: np.ndarray
    heldout_images: np.ndarray
    scratch: Path
    submission_dir: Path
    runs: dict = field(default_factory=dict)
    """observations one item leaves for another, within one worker process (Check.shares)"""

    def given(self, arrays: dict) -> None:
        """The running item's questions (inputs.WorkerInputs.asked)."""
        self.train_labels = arrays["train_labels"]
        self.probe = arrays["probe"]
        self.heldout_images = arrays.get("heldout_images", self.train_images[:0])


def worker_context(arrays: dict, scratch: Path, submission_dir: Path) -> WorkerContext:
    """What the collect halves see, from inputs.WorkerInputs.to_bytes's arrays: the
    weights and training images; each item's training labels, probe images (and held-out
    images, for the items that are given them) come when it starts (`given`)."""
    weights = {k[2:]: v for k, v in arrays.items() if k.startswith("w_")}
    nothing = arrays["train_images"][:0]
    return WorkerContext(weights, arrays["train_images"], np.zeros(0, np.int64), nothing, nothing,
                         scratch, submission_dir)


@dataclass
class JudgeContext:
    """What the judge halves see: they are pure functions of the observations and these,
    so judging can happen on another machine than collecting (`grader batch --scheduler`)."""
    weights: dict
    train_labels: np.ndarray
    probe: np.ndarray
    heldout_labels: np.ndarray
    train_images: np.ndarray | None = None
    heldout_images: np.ndarray | None = None
    names: np.ndarray | None = None
    """the item's renaming of the classes (class c is called names[c]), for behaviour
    kept the same whatever the batch's private seed"""


def _fraction_and_messages(parts: list[tuple[float, bool, str]]) -> tuple[float, str]:
    """Sum the weights of the passed parts; the message lists what failed."""
    score = sum(weight for weight, ok, _ in parts if ok)
    failed = [message for _, ok, message in parts if not ok]
    return score, "; ".join(failed) if failed else "all good"


def _max_rel_diff(found: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(found - expected)) / max(1.0, float(np.max(np.abs(expected)))))


# ---------------------------------------------------------------- bounds on what judges read
# Every observation comes from the worker's process, which is the submission's, so any of
# it may be crafted. Each judge checks the types, dimensions and sizes of what it reads
# before any work that grows with them: what an observation can cost the grading process
# is bounded here, not only by the channel's bounds on a frame. What no run of a collect
# half sends is Malformed, and the item scores 0 with the reason (`_judged`).

MAX_OUTPUTS = 4096
"""logits per image a judge reads at most (the table's fc has 10; a wrong head, a few hundred)"""
MAX_HEAD_LAYERS = 16
"""dense layers from flatten to fc, fc included, that a set of logits may report"""
MAX_HEAD_VALUES = 1 << 26
"""values of the head's kernels and biases together (a hidden layer of 4096 units has 16.8 M)"""
MAX_CHAIN_LAYERS = 40
"""layers of the chain from conv1_1 to the logits that a set of logits may report (the
table's has 13; a few dropouts, activations or hidden dense layers more are honest)"""
MAX_ENTRIES = 1_000
"""entries of a list of names, shapes or variables (an honest model has a few dozen)"""
MAX_VARIABLES = 16
"""variables of one layer"""
MAX_TEXT = 200
"""characters of the worker's own text (an error, a dtype's name) a message quotes"""


class Malformed(ValueError):
    """An observation no run of the collect half sends: the item scores 0 with this reason."""


def _require(ok, reason: str) -> None:
    if not ok:
        raise Malformed(reason)


def _judged(judge):
    """The judge, scoring 0 with the reason an observation that is not a mapping, or that
    its checks find Malformed: as every item whose observations cannot be judged."""
    @functools.wraps(judge)
    def checked(obs, ctx, params):
        try:
            _require(isinstance(obs, dict), "the observation is not a mapping")
            return judge(obs, ctx, params)
        except Malformed as exc:
            return 0.0, f"the observations were malformed: {exc}"
    return checked


def _text(value, what: str) -> str:
    """The worker's text, cut to MAX_TEXT characters for a message."""
    _require(isinstance(value, str), f"{what} is not text")
    return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "..."


def _integer(value, what: str) -> int:
    _require(isinstance(value, int) and not isinstance(value, bool) and -2 ** 63 <= value < 2 ** 63,
             f"{what} is not an integer")
    return value


def _entries(value, what: str, most: int = MAX_ENTRIES) -> list:
    _require(isinstance(value, list), f"{what} is not a list")
    _require(len(value) <= most, f"{what} holds {len(value)} entries, more than {most}")
    return value


def _mapping(value, what: str) -> dict:
    _require(isinstance(value, dict), f"{what} is not a mapping")
    return value


def _shape(value, what: str, unknown: bool = True) -> list:
    """A shape as a list of at most 8 sizes (None for an unknown one, when `unknown`)."""
    _entries(value, what, 8)
    _require(all((isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2 ** 40)
                 or (unknown and d is None) for d in value), f"{what} is not a shape")
    return value


def _numbers(value, what: str, ndim: int | None = None) -> np.ndarray:
    """An array of numbers (bool, integer or floating point), of `ndim` dimensions if given."""
    _require(isinstance(value, np.ndarray) and value.dtype.kind in "biuf",
             f"{what} is not an array of numbers")
    _require(ndim is None or value.ndim == ndim,
             f"{what} has {value.ndim} dimensions, expected {ndim}")
    return value


def _array_list(value, what: str, most: int = MAX_VARIABLES) -> list:
    """A list of at most `most` arrays of numbers (a layer's variables)."""
    for array in _entries(value, what, most):
        _numbers(array, f"a variable of {what}")
    return value


def _permutation(order, n: int) -> np.ndarray | None:
    """A flatten layer's answer to the index probe as indices, when it is a permutation of
    range(n); else None. Its size is checked before anything that grows with it, so a
    flatten answering with 60 million indices costs nothing."""
    if not isinstance(order, np.ndarray) or order.dtype.kind not in "biuf" or order.shape != (n,):
        return None
    indices = order.astype(np.int64)
    if not np.array_equal(indices, order) or not np.array_equal(np.sort(indices), np.arange(n)):
        return None
    return indices


# ---------------------------------------------------------------- behaviour, for similarity
# What a run did, kept in an item's details under "behaviour" for `grader similarity`
# (grader/copying/behaviour.py): numbers (compared within a tolerance) or values
# (compared exactly), a few hundred at most, so the gradebook stays small. Every submission
# is run under the same seeds and batches, so two copies of one program agree here however
# their code was rewritten, while independent solutions agree only where the exercise
# leaves no choice (and that, many submissions share). Each batch draws its own private
# seed, which draws the probe images, renames the classes and seeds every item; what is
# kept does not depend on it (images the seed does not draw, logits with the classes named
# back), so the kit's own solutions, graded once, can be held against any class on the
# default. What cannot be kept so (the pipeline's order, which the item's seed shuffles;
# the accuracy logged) is marked "within": compared inside one batch only.

# The accuracy items keep none: they run on held-out images that each course draws with
# its own seed, so the kit's own solutions (the background of what honest work does,
# tests/corpus/behaviour.json) could not be held against a class on them.

BEHAVIOUR_VALUES = 320
"""numbers one behaviour keeps (32 images' logits)"""


def _kept_numbers(values) -> dict:
    flat = np.asarray(values, dtype=np.float64).reshape(-1)[:BEHAVIOUR_VALUES]
    return {"numbers": [float(v) if math.isfinite(v) else 0.0
                        for v in flat.astype(np.float32).tolist()]}


def _kept_value(value) -> dict:
    return {"value": value}


def _named_back(logits, ctx) -> np.ndarray:
    """Logits with each class's column where its own name puts it, whatever the batch's
    renaming (training under renamed labels is the same computation, columns permuted)."""
    logits = np.asarray(logits)
    names = getattr(ctx, "names", None)
    if names is None or logits.ndim != 2 or logits.shape[1] != len(names):
        return logits
    return logits[:, names]


def _chain_shown(chain) -> list | str:
    """A dataset's chain as ops and their constant arguments (the seeds left out: the grader
    passes them), or why it has none."""
    if isinstance(chain, str):
        return "none"
    return [[step.kind, sorted((k, str(v)) for k, v in step.args.items() if "seed" not in k),
             list(step.function_ops)[:40]] for step in chain[:40]]


