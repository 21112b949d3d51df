"""Grading one correct submission against its floor, with and without the hidden items.

    python benchmarks/bench_every_item.py [--rounds 2]

The floor of an item is the images it must push through the frozen network (its
training steps times their batch, and what it evaluates) at the forward-pass rate; the
floor of a grading is one TensorFlow import plus its items' floors. Everything else --
tf.function traces, model builds, the worker's start, judging -- is overhead. Measured in
one run, alternating:
- import: `python -c "import keras, tensorflow"` (median of the rounds);
- forward rate: the reference's frozen stack (preprocess .. flatten) in a tf.function,
  batch 64, after its trace (best of the rounds);
- `grader check --all --json` and `grader check --json` on the reference: wall time and
  each item's time (best round of each).
Prints each item's images, floor, time and ratio, then both totals with their ratio to
the floor and submissions per hour on this machine (one submission at a time uses all
its cores; running two halves each one's speed).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from grader import rubric as rubric_mod  # noqa: E402
from grader.paths import default_rubric, solution  # noqa: E402

PROBE = 6          # the probe images (engine.grading_inputs)
FIXED_BATCH = 32   # checks._fixed_batches
CHECKPOINT_STEPS = 4 + 6 + 3 + 3   # the four train() calls of the checkpoint check


def images_needed(item: rubric_mod.Item) -> int:
    """Images the item pushes through the frozen network (collect_* in grader/checks.py)."""
    p = item.params
    return {
        "frozen": p.get("steps", 0) * FIXED_BATCH,
        "features": 2 * PROBE,
        "layer_shapes": 4,
        "training": p.get("steps", 0) * FIXED_BATCH + 2 * 256,
        "accuracy": p.get("steps", 0) * 64 + p.get("images", 0),
        "checkpoint": CHECKPOINT_STEPS * FIXED_BATCH + 4 * PROBE,
    }.get(item.check, 0)


FORWARD = """
import sys, time, numpy as np, tensorflow as tf, keras
sys.path.insert(0, sys.argv[1])
from grader import vgg_weights
from grader.modules import load_module
tl = load_module(sys.argv[2])
model = tl.build_model(vgg_weights.stand_in())
features = keras.Model(model.input, model.get_layer("flatten").output)
step = tf.function(lambda x: features(x, training=False))
x = tf.constant(np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8))
step(x).numpy()
start = time.perf_counter()
for _ in range(40):
    step(x).numpy()
print(40 * 64 / (time.perf_counter() - start))
"""


def wall(command: list[str], **kwargs) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)
    return time.perf_counter() - start, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rubric = rubric_mod.load(default_rubric())
    python = sys.executable
    imports, rates, graded = [], [], {"all": [], "visible": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            imports.append(wall([python, "-c", "import keras, tensorflow"])[0])
            rates.append(float(wall([python, "-c", FORWARD, str(ROOT), str(solution())])[1]))
            for kind, extra in (("all", ["--all"]), ("visible", [])):
                out = Path(tmp) / f"{kind}.json"
                seconds, _ = wall([python, "-m", "grader", "check", str(solution()), "--json",
                                   str(out), *extra])
                report = json.loads(out.read_text())
                assert report["score"] == report["max_score"], report
                graded[kind].append((seconds, {i["id"]: i["seconds"] for i in report["items"]}))
    import_s, rate = statistics.median(imports), max(rates)
    print(f"TensorFlow import {import_s:.1f} s; forward pass {rate:.0f} images/s "
          f"(rounds: {', '.join(f'{r:.0f}' for r in rates)})")
    seconds_all, items_all = min(graded["all"])
    print(f"{'item':15s} {'images':>7s} {'floor':>7s} {'measured':>9s} {'ratio':>6s}")
    for item in rubric.items:
        n = images_needed(item)
        floor = n / rate
        took = items_all[item.id]
        ratio = f"{took / floor:6.2f}" if floor > 0.05 else "     -"
        print(f"{item.id:15s} {n:7d} {floor:6.1f}s {took:8.1f}s {ratio}")
    for kind, items in (("every item", rubric.items),
                        ("visible items", [i for i in rubric.items if i.visibility == "visible"])):
        seconds, per_item = min(graded["all" if kind == "every item" else "visible"])
        floor = import_s + sum(images_needed(i) for i in items) / rate
        in_items = sum(per_item.values())
        print(f"{kind}: {seconds:.1f} s wall against a floor of {floor:.1f} s "
              f"(import {import_s:.1f} s + steps {floor - import_s:.1f} s): "
              f"{seconds / floor:.2f}x the floor; items {in_items:.1f} s, the rest "
              f"{seconds - in_items:.1f} s (worker start, inputs, judging); "
              f"{3600 / seconds:.0f} submissions/hour on this machine")


if __name__ == "__main__":
    main()
