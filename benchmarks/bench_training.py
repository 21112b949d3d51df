"""Training throughput of the reference against its floor and its baselines, in one run.

    python benchmarks/bench_training.py [--steps 150] [--repeats 5]

Every figure is split into its parts: a run of 1 step and a run of `--steps` steps give
the per-step time (their difference) and the start-up cost (the 1-step run less one step:
the tf.function trace, the iterator, and its teardown). Variants:

- forward:       the frozen conv stack's forward pass (preprocess .. flatten, no
                 gradients) in a tf.function, fed by make_dataset: the floor, since
                 nothing below fc needs gradients;
- train_tfdata:  the reference's train() fed by its make_dataset;
- train_autotune: the same with tf.data's autotuning left on (make_dataset as it was):
                 deleting an autotuned iterator can wait seconds for the tuner's thread;
- train_pyloop:  train() fed numpy batches from a Python generator;
- augment_*:     a random crop and flip per image, once in the Python generator (numpy,
                 one image at a time) and once as a tf.data map with num_parallel_calls:
                 where the pipeline has work to overlap with training.
Rounds alternate between the variants so machine noise hits them alike; the best round
of each is reported (noise only slows a round down), every round is printed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

_start = time.perf_counter()
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402,F401

IMPORT_SECONDS = time.perf_counter() - _start

import numpy as np  # noqa: E402

from grader.exercises.transfer_learning import synthetic, vgg_weights  # noqa: E402
from grader.modules import load_module  # noqa: E402
from grader.paths import solution  # noqa: E402

BATCH = 64
PAD = 4


def numpy_batches(images, labels, seed=0, augment=False):
    """The placeholder-era way: shuffle indices in Python, slice numpy arrays per step."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(labels))
        for start in range(0, len(order) - BATCH + 1, BATCH):
            idx = order[start:start + BATCH]
            batch = images[idx]
            if augment:
                batch = np.stack([_crop_flip_numpy(image, rng) for image in batch])
            yield batch, labels[idx]


def _crop_flip_numpy(image, rng):
    padded = np.pad(image, ((PAD, PAD), (PAD, PAD), (0, 0)), mode="reflect")
    y, x = rng.integers(0, 2 * PAD + 1, size=2)
    out = padded[y:y + 32, x:x + 32]
    return out[:, ::-1] if rng.random() < 0.5 else out


def _crop_flip_tf(image, label):
    padded = tf.pad(image, [[PAD, PAD], [PAD, PAD], [0, 0]], mode="REFLECT")
    out = tf.image.random_flip_left_right(tf.image.random_crop(padded, [32, 32, 3]))
    return out, label


def augmented_dataset(images, labels, seed=0):
    options = tf.data.Options()
    options.autotune.enabled = False
    return (tf.data.Dataset.from_tensor_slices((images, labels))
            .shuffle(len(labels), seed=seed).repeat()
            .map(_crop_flip_tf, num_parallel_calls=2)
            .batch(BATCH).prefetch(2).with_options(options))


def with_autotune(dataset):
    """The dataset with tf.data's default options (autotuning on) in force again."""
    options = tf.data.Options()
    options.autotune.enabled = True
    return dataset.with_options(options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    tl = load_module(solution())
    weights = vgg_weights.stand_in()
    images, labels = synthetic.generate(6000, seed=0)

    def forward(steps):
        model = tl.build_model(weights)
        features = keras.Model(model.input, model.get_layer("flatten").output)
        step = tf.function(lambda x: features(x, training=False))
        start = time.perf_counter()
        it = iter(tl.make_dataset(images, labels, batch_size=BATCH))
        for _ in range(steps):
            x, _ = next(it)
            step(x).numpy()
        del it
        return time.perf_counter() - start

    def train_with(make):
        def run(steps):
            model = tl.build_model(weights)
            batches = make()
            start = time.perf_counter()
            tl.train(model, batches, steps=steps)
            return time.perf_counter() - start
        return run

    variants = {
        "forward": forward,
        "train_tfdata": train_with(lambda: tl.make_dataset(images, labels, batch_size=BATCH)),
        "train_autotune": train_with(lambda: with_autotune(
            tl.make_dataset(images, labels, batch_size=BATCH))),
        "train_pyloop": train_with(lambda: numpy_batches(images, labels)),
        "augment_pyloop": train_with(lambda: numpy_batches(images, labels, augment=True)),
        "augment_tfdata": train_with(lambda: augmented_dataset(images, labels)),
    }
    rounds = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, run in variants.items():
            one, many = run(1), run(args.steps)
            per_step = (many - one) / (args.steps - 1)
            rounds[name].append((BATCH * args.steps / many, per_step, one - per_step))
    best = {name: max(values) for name, values in rounds.items()}
    print(f"TensorFlow and Keras import: {IMPORT_SECONDS:.1f} s")
    print(f"{args.steps} steps of {BATCH} images, best of {args.repeats} alternating rounds; "
          "parts from a 1-step run of each")
    for name, (rate, per_step, startup) in best.items():
        seen = " ".join(f"{r[0]:.0f}" for r in rounds[name])
        print(f"  {name:15s} {rate:6.0f} images/s  {per_step * 1000:5.1f} ms/step  "
              f"start-up {startup:5.2f} s   (rounds: {seen})")
    ratio = {k: v[0] for k, v in best.items()}
    print(f"  training / frozen forward floor:       {ratio['train_tfdata'] / ratio['forward']:.2f}")
    print(f"  tf.data / python-loop feeding:         {ratio['train_tfdata'] / ratio['train_pyloop']:.2f}")
    print(f"  autotuned tf.data / python loop:       {ratio['train_autotune'] / ratio['train_pyloop']:.2f}")
    print(f"  augmentation, tf.data map / python:    {ratio['augment_tfdata'] / ratio['augment_pyloop']:.2f}")


if __name__ == "__main__":
    main()
