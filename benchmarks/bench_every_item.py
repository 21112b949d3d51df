"""Grading one correct submission against its floor, with and without the hidden items.

    python benchmarks/bench_every_item.py [--rounds 2]

The floor of an item is the images it must push through the frozen network (its
training steps times their batch, and what it evaluates) at the forward-pass rate; the
floor of a grading is one TensorFlow import plus its items' floors. Everything else --
tf.function traces, model builds, the worker's start, judging -- is overhead. Each round
measures, back to back:
- import: `python -c "import keras, tensorflow"`;
- forward rate: the reference's frozen stack (preprocess .. flatten) in a tf.function,
  batch 64, after its trace;
- `grader check --all --json` and `grader check --json` on the reference: wall time and
  each item's time;
and each grading is divided by its own round's floor, so that a slow moment of a noisy
machine slows both. Prints the median ratio with every round's, and for the median round
each item's images, floor, time and ratio, and submissions per hour on this machine (one
submission at a time uses all its cores).
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
from grader.checks import SHARES  # noqa: E402
from grader.paths import default_rubric, solution  # noqa: E402

PROBE = 6          # the probe images (engine.grading_inputs)
FIXED_BATCH = 32   # checks._fixed_batches
CHECKPOINT_STEPS = 4 + 6 + 2   # the three train() calls of the checkpoint check


def images_needed(item: rubric_mod.Item, items: list[rubric_mod.Item]) -> int:
    """Images the item pushes through the frozen network (collect_* in grader/checks.py);
    an item that observes another's run (checks.SHARES) needs none of its own."""
    p = item.params
    if SHARES.get(item.check) in {i.check for i in items}:
        return 0
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
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rubric = rubric_mod.load(default_rubric())
    python = sys.executable
    kinds = {"every item": ("--all",), "visible items": ()}
    selected = {"every item": rubric.items,
                "visible items": [i for i in rubric.items if i.visibility == "visible"]}
    rounds = []  # per round: import, rate, {kind: (wall, {item: seconds})}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            import_s = wall([python, "-c", "import keras, tensorflow"])[0]
            rate = float(wall([python, "-c", FORWARD, str(ROOT), str(solution())])[1])
            graded = {}
            for kind, extra in kinds.items():
                out = Path(tmp) / "report.json"
                seconds, _ = wall([python, "-m", "grader", "check", str(solution()), "--json",
                                   str(out), *extra])
                report = json.loads(out.read_text())
                assert report["score"] == report["max_score"], report
                graded[kind] = (seconds, {i["id"]: i["seconds"] for i in report["items"]})
            rounds.append((import_s, rate, graded))

    def floor(kind, import_s, rate):
        items = selected[kind]
        return import_s + sum(images_needed(i, items) for i in items) / rate

    for kind in kinds:
        ratios = [graded[kind][0] / floor(kind, i, r) for i, r, graded in rounds]
        median = statistics.median(ratios)
        import_s, rate, graded = rounds[ratios.index(median)] if median in ratios else \
            rounds[min(range(len(ratios)), key=lambda k: abs(ratios[k] - median))]
        seconds, per_item = graded[kind]
        low = floor(kind, import_s, rate)
        in_items = sum(per_item.values())
        print(f"\n{kind}: {median:.2f}x the floor (median of {len(rounds)} rounds: "
              f"{', '.join(f'{x:.2f}' for x in ratios)}). The median round: {seconds:.1f} s wall "
              f"against a floor of {low:.1f} s (TensorFlow import {import_s:.1f} s + "
              f"{low - import_s:.1f} s of images at the forward rate, {rate:.0f} images/s); "
              f"items {in_items:.1f} s, the rest {seconds - in_items:.1f} s (worker start with "
              f"its import, inputs, judging); {3600 / seconds:.0f} submissions/hour")
        print(f"{'item':15s} {'images':>7s} {'floor':>7s} {'measured':>9s} {'ratio':>6s}")
        for item in selected[kind]:
            n = images_needed(item, selected[kind])
            took = per_item[item.id]
            ratio = f"{took * rate / n:6.2f}" if n / rate > 0.05 else "     -"
            print(f"{item.id:15s} {n:7d} {n / rate:6.1f}s {took:8.1f}s {ratio}")


if __name__ == "__main__":
    main()
