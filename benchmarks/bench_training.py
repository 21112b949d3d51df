"""Training throughput of the reference, measured against two baselines in one run.

    python benchmarks/bench_training.py [--steps 150] [--repeats 3]

1. The frozen conv stack's pure forward pass (preprocess .. flatten, no gradients) is
   the floor for training speed: nothing below fc needs gradients, so a training step
   should cost little more than it. Reported: training images/s over forward images/s.
2. The tf.data pipeline (make_dataset) against feeding numpy batches from a Python loop,
   same model, same train(). Reported: tf.data images/s over Python-loop images/s.
Rounds alternate between the variants so that machine noise hits them alike. Noise here
only ever slows a round down (some rounds run at half speed, as if on one core), so the
best round of each variant is reported, with every round printed for inspection.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

from grader import synthetic, vgg_weights  # noqa: E402
from grader.modules import load_module  # noqa: E402
from grader.paths import SOLUTION  # noqa: E402

BATCH = 64


def numpy_batches(images, labels, seed=0):
    """The placeholder-era way: shuffle indices in Python, slice numpy arrays per step."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(labels))
        for start in range(0, len(order) - BATCH + 1, BATCH):
            idx = order[start:start + BATCH]
            yield images[idx], labels[idx]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    tl = load_module(SOLUTION)
    weights = vgg_weights.stand_in()
    images, labels = synthetic.generate(6000, seed=0)
    n = args.steps * BATCH

    def forward():
        model = tl.build_model(weights)
        features = keras.Model(model.input, model.get_layer("flatten").output)
        step = tf.function(lambda x: features(x, training=False))
        it = iter(tl.make_dataset(images, labels, batch_size=BATCH))
        start = time.perf_counter()
        for _ in range(args.steps):
            x, _ = next(it)
            step(x).numpy()
        return n / (time.perf_counter() - start)

    def train_with(batches):
        model = tl.build_model(weights)
        start = time.perf_counter()
        tl.train(model, batches, steps=args.steps)
        return n / (time.perf_counter() - start)

    results = {"forward": [], "train_tfdata": [], "train_pyloop": []}
    for _ in range(args.repeats):
        results["forward"].append(forward())
        results["train_tfdata"].append(train_with(tl.make_dataset(images, labels, batch_size=BATCH)))
        results["train_pyloop"].append(train_with(numpy_batches(images, labels)))
    med = {k: max(v) for k, v in results.items()}
    print(f"{args.steps} steps of {BATCH} images, best of {args.repeats} alternating rounds")
    for key, value in med.items():
        rounds = " ".join(f"{r:.0f}" for r in results[key])
        print(f"  {key:13s} {value:7.0f} images/s   (rounds: {rounds})")
    print(f"  training / frozen forward floor: {med['train_tfdata'] / med['forward']:.2f}")
    print(f"  tf.data / python-loop feeding:   {med['train_tfdata'] / med['train_pyloop']:.2f}")


if __name__ == "__main__":
    main()
