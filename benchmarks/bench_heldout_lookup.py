"""How much of CIFAR-10's held-out labels a lookup in the public test set still recovers.

The accuracy items grade on test images drawn with the private seed and disguised
(grader/exercises/transfer_learning/cifar10.py, `heldout_split`). This measures three lookups a submission carrying
the public test set could try, as the share of held-out images whose label it gets right:
exact bytes, the nearest public image in raw pixels, and the nearest over the public
images and their mirrors, each shifted by up to the disguise's shift.

    python benchmarks/bench_heldout_lookup.py cifar-10-python.tar.gz [--images 1000]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grader.exercises.transfer_learning import cifar10  # noqa: E402


def nearest_labels(queries: np.ndarray, public: np.ndarray, labels: np.ndarray) -> np.ndarray:
    q = queries.reshape(len(queries), -1).astype(np.float32)
    p = public.reshape(len(public), -1).astype(np.float32)
    distances = (q * q).sum(1)[:, None] - 2 * q @ p.T + (p * p).sum(1)[None]
    return labels[distances.argmin(axis=1)], distances.min(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("archive")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=771104)
    args = parser.parse_args()
    data = cifar10.load(args.archive, verify_checksum=False)
    images, labels = cifar10.heldout_split(data, args.seed, args.images)
    public = {bytes(image): label for image, label in zip(data.test_images, data.test_labels)}
    exact = sum(bytes(image) in public for image in images)
    print(f"{len(images)} held-out images, seed {args.seed}")
    print(f"exact lookup: {exact} found")
    start = time.monotonic()
    raw, _ = nearest_labels(images, data.test_images, data.test_labels)
    print(f"nearest public image (raw pixels): label right for {np.mean(raw == labels):.3f} "
          f"({time.monotonic() - start:.1f} s)")
    start = time.monotonic()
    best_label = np.zeros(len(images), np.int64)
    best = np.full(len(images), np.inf, np.float32)
    shift = cifar10.HELDOUT_SHIFT
    for mirrored in (False, True):
        candidates = data.test_images[:, :, ::-1] if mirrored else data.test_images
        padded = np.pad(candidates, ((0, 0), (shift, shift), (shift, shift), (0, 0)), mode="reflect")
        for dy in range(2 * shift + 1):
            for dx in range(2 * shift + 1):
                moved = padded[:, dy:dy + 32, dx:dx + 32]
                found, distance = nearest_labels(images, moved, data.test_labels)
                better = distance < best
                best[better], best_label[better] = distance[better], found[better]
    print(f"nearest over mirrors and shifts: label right for {np.mean(best_label == labels):.3f} "
          f"({time.monotonic() - start:.1f} s)")


if __name__ == "__main__":
    main()
