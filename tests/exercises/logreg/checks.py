"""The exercise's checks: each a collect half, run in the worker beside the submission and
returning raw answers, and a judge half, run in the grading process, which decides."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from grader.exercise import Check, Registry, at_least_one, positive, rules

CONTRACT = {
    "standardize": ["x", "mean", "std"],
    "predict_proba": ["w", "b", "x"],
    "fit": ["x", "y", "steps", "lr"],
}


@dataclass
class WorkerContext:
    """What the collect halves see: the training set, and the running item's questions."""
    train_x: np.ndarray
    train_y: np.ndarray
    scratch: Path
    submission_dir: Path
    asked: dict | None = None

    def given(self, arrays: dict) -> None:
        self.asked = arrays


def worker_context(arrays: dict, scratch: Path, submission_dir: Path) -> WorkerContext:
    return WorkerContext(arrays["train_x"], arrays["train_y"], scratch, submission_dir)


@dataclass
class JudgeContext:
    train_x: np.ndarray
    asked: dict
    heldout_y: np.ndarray


def reference_standardize(x, mean, std):
    return (np.asarray(x, np.float64) - mean) / std


def reference_proba(w, b, x):
    logits = np.asarray(x, np.float64) @ w + b
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def _array(value, shape) -> np.ndarray:
    found = np.asarray(value, np.float64)
    if found.shape != shape:
        raise ValueError(f"expected an array of shape {shape}, found {found.shape}")
    return found


def collect_interface(module, ctx, params):
    found = {}
    for name in CONTRACT:
        function = getattr(module, name, None)
        try:
            found[name] = list(inspect.signature(function).parameters) if callable(function) else None
        except (TypeError, ValueError):
            found[name] = None
    return found


def judge_interface(obs, ctx, params):
    problems = [f"{name} is missing" if obs.get(name) is None else
                f"{name} takes ({', '.join(obs[name])}), expected ({', '.join(expected)})"
                for name, expected in CONTRACT.items() if obs.get(name) != expected]
    return (0.0, "; ".join(problems)) if problems else (1.0, "all three functions are defined")


def collect_standardize(module, ctx, params):
    x = ctx.asked["x"]
    return {"z": np.asarray(module.standardize(x, ctx.asked["mean"], ctx.asked["std"]), np.float64)}


def judge_standardize(obs, ctx, params):
    expected = reference_standardize(ctx.asked["x"], ctx.asked["mean"], ctx.asked["std"])
    found = _array(obs["z"], expected.shape)
    error = float(np.max(np.abs(found - expected)))
    if error <= params["tolerance"]:
        return 1.0, "matches (x - mean) / std"
    if np.allclose(found, np.asarray(ctx.asked["x"]) - ctx.asked["mean"], atol=params["tolerance"]):
        return 0.0, "subtracts the mean but does not divide by std"
    return 0.0, f"differs from (x - mean) / std by up to {error:.3g}"


def collect_proba(module, ctx, params):
    a = ctx.asked
    return {"p": np.asarray(module.predict_proba(a["w"], a["b"], a["x"]), np.float64)}


def judge_proba(obs, ctx, params):
    a = ctx.asked
    expected = reference_proba(a["w"], a["b"], a["x"])
    found = _array(obs["p"], expected.shape)
    if not np.all(np.isfinite(found)):
        return 0.0, "some probabilities are not finite (subtract each row's largest logit first)"
    if np.max(np.abs(found - expected)) <= params["tolerance"]:
        return 1.0, "softmax(x @ w + b), row by row"
    if np.allclose(found.sum(axis=1), 1.0, atol=1e-6):
        return 0.5, "rows sum to 1 but are not softmax(x @ w + b)"
    return 0.0, "not softmax(x @ w + b): rows do not sum to 1"


def collect_accuracy(module, ctx, params):
    mean, std = ctx.train_x.mean(axis=0), ctx.train_x.std(axis=0)
    w, b = module.fit((ctx.train_x - mean) / std, ctx.train_y, steps=params["steps"], lr=params["lr"])
    return {"w": np.asarray(w, np.float64), "b": np.asarray(b, np.float64)}


def judge_accuracy(obs, ctx, params):
    """The judge scores the returned weights itself, on held-out points whose labels only
    this process holds."""
    from .data import CLASSES, FEATURES

    w, b = _array(obs["w"], (FEATURES, CLASSES)), _array(obs["b"], (CLASSES,))
    mean, std = ctx.train_x.mean(axis=0), ctx.train_x.std(axis=0)
    logits = ((ctx.asked["heldout_x"] - mean) / std) @ w + b
    accuracy = float((logits.argmax(axis=1) == ctx.heldout_y).mean())
    lower, upper = params["lower"], params["upper"]
    fraction = min(max((accuracy - lower) / (upper - lower), 0.0), 1.0)
    return fraction, f"accuracy {accuracy:.3f} on {len(ctx.heldout_y)} unseen points"


def _bounds(params):
    if not 0 <= params["lower"] < params["upper"] <= 1:
        return f"need 0 <= params.lower < params.upper <= 1, found {params['lower']}, {params['upper']}"
    return None


TOLERANCE = {"tolerance": ((int, float), 1e-6, "absolute tolerance")}
REGISTRY = Registry([
    Check("interface", collect_interface, judge_interface),
    Check("standardize", collect_standardize, judge_standardize, TOLERANCE, positive("tolerance"),
          task="standardize", uses=("standardize",)),
    Check("proba", collect_proba, judge_proba, TOLERANCE, positive("tolerance"),
          task="predict_proba", uses=("predict_proba",)),
    Check("accuracy", collect_accuracy, judge_accuracy,
          {"steps": (int, 200, "gradient steps fit takes"),
           "lr": ((int, float), 0.5, "learning rate passed to fit"),
           "lower": ((int, float), 0.4, "accuracy at or below which the item scores 0"),
           "upper": ((int, float), 0.85, "accuracy from which it scores full points")},
          rules(at_least_one("steps"), positive("lr"), _bounds), task="fit",
          uses=("fit",), heldout=True, time_limit=30),
])
