"""The embedded default dataset: deterministic synthetic CIFAR-10-shaped images.

Ten classes of oriented stripe patterns (five orientations, two frequencies) drawn at a
random place, phase and contrast in a red-versus-green colour direction, over a strong
distractor: random stripes of any orientation in the red+green direction. VGG16's first
layer (and the stand-in weights') responds to some colour directions and not others, so
with correct preprocessing the distractor is largely invisible to the frozen features;
a pipeline that swaps colour channels or loses the pixel scale lets it through and learns
clearly worse. Generated on demand, nothing is stored.
"""
from __future__ import annotations

import numpy as np

from .cifar10 import Dataset

CLASS_NAMES = [f"stripes-{angle}deg-{freq}" for angle in (0, 36, 72, 108, 144)
               for freq in ("wide", "narrow")]
SIGNAL_COLOUR = (np.array([1.0, -1.0, 0.0]) / np.sqrt(2.0)).astype(np.float32)
DISTRACTOR_COLOUR = (np.array([1.0, 1.0, 0.0]) / np.sqrt(2.0)).astype(np.float32)
DEFAULT_SIZES = {"train": 6000, "test": 2000}
DEFAULT_SEED = 2019


def _stripes(rng, n, angles, freqs, size=32):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None, None]
    cos, sin, freqs = (np.asarray(v, np.float32)[:, None, None]
                       for v in (np.cos(angles), np.sin(angles), freqs))
    return np.sin(2 * np.pi * freqs * (xx[None] * cos + yy[None] * sin) + phase)


def generate(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` images uint8 [n, 32, 32, 3] and labels int64 [n], balanced, from `seed`."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    angles = np.deg2rad(36.0 * (labels // 2)) + rng.normal(0, np.deg2rad(4), n)
    freqs = np.where(labels % 2 == 0, 1 / 8.0, 1 / 4.0) * rng.uniform(0.9, 1.1, n)
    signal = _stripes(rng, n, angles, freqs)
    # A soft window at a random place: the pattern does not fill the whole image.
    yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
    cy, cx = rng.uniform(8, 24, (2, n)).astype(np.float32)
    width = rng.uniform(9, 14, n).astype(np.float32)
    window = np.exp(-((yy[None] - cy[:, None, None]) ** 2 + (xx[None] - cx[:, None, None]) ** 2)
                    / (2 * width[:, None, None] ** 2))
    signal *= window * rng.uniform(35, 50, n).astype(np.float32)[:, None, None]
    distractor = _stripes(rng, n, rng.uniform(0, np.pi, n), rng.uniform(1 / 10, 1 / 3, n))
    distractor *= rng.uniform(45, 65, n).astype(np.float32)[:, None, None]
    images = rng.standard_normal((n, 32, 32, 3), dtype=np.float32) * 6.0
    images += rng.uniform(95, 160, (n, 1, 1, 3)).astype(np.float32)
    images += signal[..., None] * SIGNAL_COLOUR
    images += distractor[..., None] * DISTRACTOR_COLOUR
    np.rint(images, out=images)
    np.clip(images, 0, 255, out=images)
    return images.astype(np.uint8), labels.astype(np.int64)


def load(n_train: int = DEFAULT_SIZES["train"], n_test: int = DEFAULT_SIZES["test"],
         seed: int = DEFAULT_SEED) -> Dataset:
    """The synthetic train and test splits; the same arguments give the same arrays."""
    train_images, train_labels = generate(n_train, seed)
    test_images, test_labels = generate(n_test, seed + 1)
    return Dataset(train_images, train_labels, test_images, test_labels,
                   list(CLASS_NAMES), name=f"synthetic (seed {seed})")
