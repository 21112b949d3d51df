"""The exercise's data: three Gaussian blobs in four dimensions, made from a seed."""
from __future__ import annotations

import numpy as np

FEATURES = 4
CLASSES = 3
CENTRES = np.array([[2.0, 0.0, 0.0, 1.0], [0.0, 2.0, 0.0, -1.0], [0.0, 0.0, 2.0, 0.0]])
SCALE = np.array([1.0, 2.0, 0.5, 3.0])
"""each feature's own scale, so standardising matters"""


def blobs(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(features of shape (n, FEATURES), labels in 0..CLASSES-1), the same for the same seed."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    features = (CENTRES[labels] + rng.normal(0.0, 0.8, (n, FEATURES))) * SCALE + 5.0
    return features, labels.astype(np.int64)
