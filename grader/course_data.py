"""Which images and which VGG16 weights a course grades on, set once and read the same way
by `grader check`, `grader batch` (local and on Dask), the notebook's `check()`, the
Gradescope package and `grader calibrate`.

The rubric declares them (`data:` and `weights:`, see grader/rubric.py); a command line
may override either (`--data KIND [PATH]`, `--no-verify`, `--weights FILE`). Weights come
from, in order: `--weights`, the rubric's `weights.path`, $GRADER_WEIGHTS, the stand-in
weights. A rubric that declares `weights.sha256` refuses any other file, except one
given explicitly with `--weights`.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import vgg_weights
from .errors import KitError, WeightsError
from .rubric import DATA_KINDS, Rubric


@dataclass(frozen=True)
class Setting:
    kind: str = "synthetic"
    path: str | None = None
    """cifar10: archive or extracted folder; None: the cache (downloaded once)"""
    md5: str | None = None
    """cifar10: the archive's expected MD5; None: the official one"""
    verify: bool = True
    weights: str | None = None
    weights_sha256: str | None = None
    weights_overridden: bool = False
    """True when --weights chose the file: the rubric's sha256 then does not apply"""

    def describe_data(self) -> str:
        if self.kind == "synthetic":
            return "synthetic (grader/synthetic.py)"
        return f"CIFAR-10 ({self.path or 'the cache'})"


def parse_data_option(values: list[str] | None) -> tuple[str | None, str | None]:
    """(kind, path) from `--data KIND [PATH]`, or (None, None) when it was not given."""
    if not values:
        return None, None
    kind, *rest = values
    if kind not in DATA_KINDS or len(rest) > 1 or (kind == "synthetic" and rest):
        raise KitError(f"--data: expected 'synthetic' or 'cifar10 [PATH]', found {' '.join(values)}.")
    return kind, rest[0] if rest else None


def setting(rubric: Rubric, data: list[str] | None = None, weights: str | None = None,
            no_verify: bool = False) -> Setting:
    """The rubric's data and weights with the command line's overrides applied."""
    kind, path = parse_data_option(data)
    declared = rubric.data
    if kind is None:
        kind, path, md5 = declared["kind"], declared.get("path"), declared.get("md5")
    else:
        md5 = declared.get("md5") if kind == declared["kind"] else None
        path = str(Path(path).expanduser().resolve()) if path else (
            declared.get("path") if kind == declared["kind"] else None)
    found = Setting(kind, path, md5, not no_verify, rubric.weights.get("path"),
                    rubric.weights.get("sha256"))
    if weights:
        found = replace(found, weights=str(weights), weights_overridden=True)
    return found


def sha256_of(weights: dict[str, np.ndarray]) -> str:
    """A digest of the weights' arrays (in key order), whatever file format held them."""
    return hashlib.sha256(b"".join(np.ascontiguousarray(weights[k]).tobytes()
                                   for k in sorted(weights))).hexdigest()


def load_weights(found: Setting) -> tuple[dict[str, np.ndarray], str]:
    """The convolution weights and a description, checked against the rubric's sha256 (of
    the arrays, `sha256_of`: the full vgg16_weights.npz holding the same convolutions
    passes too)."""
    path = found.weights
    if not found.weights_overridden:
        path = path or os.environ.get("GRADER_WEIGHTS")
    weights, description = vgg_weights.resolve(path) if path else vgg_weights.resolve(None)
    if found.weights_sha256 and not found.weights_overridden:
        digest = sha256_of(weights)
        if digest != found.weights_sha256.lower():
            raise WeightsError(
                f"{description}: the rubric grades with weights of SHA-256 "
                f"{found.weights_sha256[:16]}..., found {digest[:16]}... . Use the course's "
                "vgg16-conv-weights.npz: --weights FILE on the command line, weights=FILE in "
                "the notebook's check(), or $GRADER_WEIGHTS.")
    return weights, description


def fingerprint(inputs) -> str:
    """A digest of what grading reads (engine.GradingInputs: the weights' arrays, the
    training and held-out images and labels), so a file replaced under the same name
    counts as a change."""
    digest = hashlib.sha256(sha256_of(inputs.weights).encode())
    for array in (inputs.train_images, inputs.train_labels, inputs.heldout_images,
                  inputs.heldout_labels):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def load_dataset(found: Setting):
    """The cifar10.Dataset to grade on, or None for the synthetic set. An archive is checked
    against the rubric's MD5 (else the official one) unless `verify` is off; an extracted
    folder has no checksum to check."""
    if found.kind == "synthetic":
        return None
    from . import cifar10

    return cifar10.load(found.path or cifar10.download_path(), verify_checksum=found.verify,
                        md5=found.md5)


def resolve(rubric: Rubric, data: list[str] | None = None, weights: str | None = None,
            no_verify: bool = False):
    """(weights, dataset or None, description of both) for grading with `rubric`."""
    found = setting(rubric, data, weights, no_verify)
    conv_weights, weights_description = load_weights(found)
    return conv_weights, load_dataset(found), f"{weights_description}; {found.describe_data()}"
