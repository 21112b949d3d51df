"""This exercise's grading inputs: what the grading process holds (the held-out labels
among them), what the collecting side may hold (WorkerInputs), and what each item gets
when it starts (its probe images and its own naming of the classes), all following the
rubric's private seed.

Every item learns a task drawn when grading starts: the classes are renamed by a
permutation of the item's own (`renaming`), in the training labels the worker is given
and in the labels its judge reads. A head trained elsewhere, before grading, or copied
from a classmate's run, answers in the data set's own names, which no item uses: it
scores about nothing. A train() that learns from the batches it is given learns the
renamed task exactly as it would learn the plain one."""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np

from ...engine.seeds import grading_seed
from ...exercise import SECOND_PART
from ...options import DataOptions
from ...rubric import Item, Rubric
from . import data as data_mod, synthetic
from .checks import REGISTRY
from .checks.common import JudgeContext
from .network import CONV_LAYERS, NUM_CLASSES

GRADING_TRAIN = 2000
REAL_TRAIN = 5000
"""training images of a real data set the items train on (its first ones)"""
HELDOUT = 1000
PROBE_STREAM = 7
"""the private seed's stream the probe images are drawn from"""
RENAMING_STREAM = 8
"""the stream each item's renaming of the classes is drawn from"""


def _npz(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def probe_key(seed: int) -> int:
    """What the probe images are drawn from: a one-way digest of the private seed, so the
    collecting side (a cluster's machines) can draw them without holding the seed, which
    also makes the held-out images and their labels."""
    return int.from_bytes(hashlib.sha256(f"probes:{seed}".encode()).digest()[:16], "big")


def draw_probe(key: int, item_id: str, train_images: np.ndarray) -> np.ndarray:
    """An item's probe images: three training images and one of noise drawn from the
    probe key and the item's id, and the two extremes of the pixel range. Each item has
    its own, and the worker gets them only when the item starts."""
    rng = np.random.default_rng([key, PROBE_STREAM, _item_number(item_id)])
    one = (1, *train_images.shape[1:])
    return np.concatenate([
        train_images[np.sort(rng.choice(len(train_images), 3, replace=False))],
        rng.integers(0, 256, one, dtype=np.uint8), np.zeros(one, np.uint8), np.full(one, 255, np.uint8)])


def _item_number(item_id: str) -> int:
    return int.from_bytes(hashlib.sha256(item_id.encode()).digest()[:8], "big")


def renaming(key: int, item: Item, classes: int) -> np.ndarray:
    """The item's names for the classes: class c is called renaming[c]. A permutation with
    no class keeping its name, drawn from the probe key and the item's id, so every item
    (and every course, through its private seed) has its own. An accuracy item that scores
    a checkpoint handed in with the submission keeps the data set's names: that head was
    trained before grading by design."""
    if item.check.removesuffix(SECOND_PART) == "accuracy" and item.params.get("mode") == "checkpoint":
        return np.arange(classes)
    rng = np.random.default_rng([key, RENAMING_STREAM, _item_number(item.id)])
    while True:
        order = rng.permutation(classes)
        if classes < 2 or not np.any(order == np.arange(classes)):
            return order


@dataclass
class GradingInputs:
    """Everything the checks need; held-out labels never go to the worker."""
    weights: dict
    train_images: np.ndarray
    train_labels: np.ndarray
    probe_key: int
    heldout_images: np.ndarray
    heldout_labels: np.ndarray
    description: str = ""

    def probe_for(self, item_id: str) -> np.ndarray:
        return draw_probe(self.probe_key, item_id, self.train_images)

    def judge_context(self, item: Item) -> JudgeContext:
        names = renaming(self.probe_key, item, NUM_CLASSES)
        return JudgeContext(self.weights, names[self.train_labels], self.probe_for(item.id),
                            names[self.heldout_labels], self.train_images, self.heldout_images,
                            names)

    def fingerprint(self) -> str:
        """A digest of what grading reads (the weights' arrays, the training and held-out
        images and labels), so a file replaced under the same name counts as a change."""
        digest = hashlib.sha256(data_mod.sha256_of(self.weights).encode())
        for array in (self.train_images, self.train_labels, self.heldout_images,
                      self.heldout_labels):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()

    def for_worker(self) -> WorkerInputs:
        """What the collecting side gets: everything but the held-out labels."""
        return WorkerInputs({k: self.weights[k] for k in WorkerInputs.weight_keys()},
                            self.train_images, self.train_labels, self.probe_key, self.heldout_images)


@dataclass
class WorkerInputs:
    """The grading data the collecting side holds (it may travel to a cluster's machines):
    no labels of the held-out images. The sandboxed worker gets the weights and training
    data with its job, and each item's own questions (its probe images, the held-out
    images) only when that item starts (`asked`)."""
    weights: dict
    train_images: np.ndarray
    train_labels: np.ndarray
    probe_key: int
    heldout_images: np.ndarray

    @staticmethod
    def weight_keys() -> list[str]:
        return [f"{name}_{part}" for name in CONV_LAYERS for part in "Wb"]

    def to_bytes(self) -> bytes:
        """An uncompressed npz, as the worker reads it from its stdin after the job: the
        training labels come with each item, in the item's names."""
        return _npz({"train_images": self.train_images,
                     **{f"w_{key}": self.weights[key] for key in self.weight_keys()}})

    def asked(self, item: Item) -> bytes:
        """What the worker is given when `item` starts, as an uncompressed npz."""
        names = renaming(self.probe_key, item, NUM_CLASSES)
        arrays = {"probe": draw_probe(self.probe_key, item.id, self.train_images),
                  "train_labels": names[self.train_labels]}
        if item.check.removesuffix(SECOND_PART) in REGISTRY.heldout:
            arrays["heldout_images"] = self.heldout_images
        return _npz(arrays)


def grading_inputs(rubric: Rubric, options: DataOptions = DataOptions()) -> GradingInputs:
    """The inputs for grading with `rubric` on the data and weights it declares, with the
    command line's overrides (grader/exercises/transfer_learning/data.py)."""
    conv_weights, dataset, description = data_mod.resolve(rubric, options)
    return build(rubric, conv_weights, dataset, description)


def build(rubric: Rubric, weights: dict, dataset=None,
          description: str = "synthetic data") -> GradingInputs:
    """Build the grading data: a training subset, probe images and held-out images.

    With `dataset` (real CIFAR-10) the held-out images are drawn from its test split with
    the rubric's private `heldout_seed` and disguised (cifar10.heldout_split); otherwise
    they are synthetic images from that seed.
    """
    seed = grading_seed(rubric)
    if dataset is None:
        train_images, train_labels = synthetic.generate(GRADING_TRAIN, seed=101)
        heldout_images, heldout_labels = synthetic.generate(HELDOUT, seed=seed)
    else:
        from .cifar10 import heldout_split

        train_images, train_labels = dataset.train_images[:REAL_TRAIN], dataset.train_labels[:REAL_TRAIN]
        heldout_images, heldout_labels = heldout_split(dataset, seed, HELDOUT)
    # The probe images (preprocess, shapes, features, checkpoint) follow the private seed
    # too, one set per item (draw_probe).
    return GradingInputs(weights, train_images, train_labels.astype(np.int64),
                         probe_key(grading_seed(rubric)), heldout_images,
                         heldout_labels.astype(np.int64), description)
