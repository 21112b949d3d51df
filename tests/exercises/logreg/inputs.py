"""The exercise's grading inputs: the grading process holds the held-out labels; the worker
gets the training set with its job and each item's questions when the item starts."""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np

from grader.engine.seeds import grading_seed
from grader.errors import KitError

from .checks import REGISTRY, JudgeContext
from .data import CLASSES, FEATURES, blobs

TRAIN, HELDOUT, TRAIN_SEED = 300, 400, 11


def _npz(arrays: dict) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def questions(key: int, item) -> dict:
    """An item's own questions, drawn from the probe key and its id: points, a mean and a
    std to standardise them with, and weights to score them with."""
    rng = np.random.default_rng([key, int.from_bytes(hashlib.sha256(item.id.encode()).digest()[:8], "big")])
    return {"x": rng.normal(3.0, 2.0, (8, FEATURES)), "mean": rng.normal(0.0, 1.0, FEATURES),
            "std": rng.uniform(0.5, 2.0, FEATURES), "w": rng.normal(0.0, 3.0, (FEATURES, CLASSES)),
            "b": rng.normal(0.0, 1.0, CLASSES)}


@dataclass
class WorkerInputs:
    train_x: np.ndarray
    train_y: np.ndarray
    key: int
    heldout_x: np.ndarray

    def to_bytes(self) -> bytes:
        return _npz({"train_x": self.train_x, "train_y": self.train_y})

    def asked(self, item) -> bytes:
        arrays = questions(self.key, item)
        if item.check in REGISTRY.heldout:
            arrays["heldout_x"] = self.heldout_x
        return _npz(arrays)


@dataclass
class GradingInputs:
    train_x: np.ndarray
    train_y: np.ndarray
    key: int
    heldout_x: np.ndarray
    heldout_y: np.ndarray
    description: str = "Gaussian blobs"

    def for_worker(self) -> WorkerInputs:
        return WorkerInputs(self.train_x, self.train_y, self.key, self.heldout_x)

    def judge_context(self, item) -> JudgeContext:
        return JudgeContext(self.train_x, {**questions(self.key, item), "heldout_x": self.heldout_x},
                            self.heldout_y)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for array in (self.train_x, self.train_y, self.heldout_x, self.heldout_y):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()


def check_options(options) -> None:
    if options.kind or options.weights:
        raise KitError("the logreg exercise grades on its own blobs: expected no --data or "
                       "--weights, found them; leave them out.")


def grading_inputs(rubric, options) -> GradingInputs:
    check_options(options)
    seed = grading_seed(rubric)
    train_x, train_y = blobs(TRAIN, TRAIN_SEED)
    heldout_x, heldout_y = blobs(HELDOUT, seed)
    key = int.from_bytes(hashlib.sha256(f"probes:{seed}".encode()).digest()[:16], "big")
    return GradingInputs(train_x, train_y, key, heldout_x, heldout_y)
