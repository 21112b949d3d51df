"""Grading one correct submission against its floor, with and without the hidden items.

    python benchmarks/bench_every_item.py [--rounds 3] [--baseline REV]

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
submission at a time uses all its cores). With --baseline, each round also grades every
item with the kit at that revision, on its own reference, against its own floor.
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
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from grader import rubric as rubric_mod  # noqa: E402
from grader.exercises.transfer_learning.checks import REGISTRY  # noqa: E402
from grader.exercises.transfer_learning.checks.checkpoint import ROUND_TRIP_STEPS, STRAIGHT_STEPS  # noqa: E402

SHARES = REGISTRY.shares
from grader.paths import default_rubric, solution  # noqa: E402
from baseline import worktree  # noqa: E402

PROBE = 6          # the probe images (engine.grading_inputs)
FIXED_BATCH = 32   # checks._fixed_batches
# the checkpoint check's three train() calls: round trip, straight, resumed
CHECKPOINT_STEPS = ROUND_TRIP_STEPS + STRAIGHT_STEPS + (STRAIGHT_STEPS - ROUND_TRIP_STEPS)


def images_needed(item: rubric_mod.Item, items: list[rubric_mod.Item]) -> int:
    """Images the item pushes through the frozen network (collect_* in grader/exercises/transfer_learning/checks/);
    an item that observes another's run (Check.shares) needs none of its own."""
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


def old_images_needed(item: rubric_mod.Item) -> int:
    """images_needed for the kit before the checkpoint check lost a train() call and the
    frozen item shared the training item's run (619517b and earlier)."""
    if item.check == "checkpoint":
        return (4 + 6 + 3 + 3) * FIXED_BATCH + 4 * PROBE
    if item.check == "frozen":
        return item.params.get("steps", 3) * FIXED_BATCH
    return images_needed(item, [])


FORWARD = """
import sys, time, numpy as np, tensorflow as tf, keras
sys.path.insert(0, sys.argv[1])
from grader.exercises.transfer_learning import vgg_weights
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
    parser.add_argument("--baseline", metavar="REV", help="also grade every item with the kit "
                        "at this git revision (its own code, rubric and reference, from a "
                        "temporary worktree) in each round")
    args = parser.parse_args()
    rubric = rubric_mod.load(default_rubric())
    selected = {"every item": rubric.items,
                "visible items": [i for i in rubric.items if i.visibility == "visible"]}
    with tempfile.TemporaryDirectory() as tmp, worktree(args.baseline, Path(tmp)) as old:
        rounds = [one_round(Path(tmp), old) for _ in range(args.rounds)]
    if old is not None:
        ratios = [r["old"][0] / r["old"][1] for r in rounds]
        print(f"every item at {args.baseline} (its own code, rubric and reference): "
              f"{statistics.median(ratios):.2f}x its floor (rounds: {', '.join(f'{x:.2f}' for x in ratios)}); "
              f"median wall {statistics.median(r['old'][0] for r in rounds):.1f} s against "
              f"{statistics.median(r['every item'][0] for r in rounds):.1f} s now")
    for kind, items in selected.items():
        report(kind, items, rounds)


def one_round(tmp: Path, old: Path | None) -> dict:
    """Import, forward rate and the gradings, back to back."""
    python = sys.executable
    found = {"import": wall([python, "-c", "import keras, tensorflow"])[0],
             "rate": float(wall([python, "-c", FORWARD, str(ROOT), str(solution())])[1])}
    for kind, extra in (("every item", ["--all"]), ("visible items", [])):
        out = tmp / "report.json"
        seconds, _ = wall([python, "-m", "grader", "check", str(solution()), "--json", str(out), *extra])
        graded = json.loads(out.read_text())
        assert graded["score"] == graded["max_score"], graded
        found[kind] = (seconds, {i["id"]: i["seconds"] for i in graded["items"]})
    if old is not None:
        seconds, _ = wall([python, "-m", "grader", "check", "--all", "--json", str(tmp / "old.json"),
                           str(old / "solutions" / "transfer_learning.py")],
                          cwd=old, env=dict(os.environ, PYTHONPATH=str(old)))
        old_items = rubric_mod.load(old / "rubrics" / "transfer_learning.yaml").items
        floor = found["import"] + sum(old_images_needed(i) for i in old_items) / found["rate"]
        found["old"] = (seconds, floor)
    return found


def report(kind: str, items: list[rubric_mod.Item], rounds: list[dict]) -> None:
    def floor(r):
        return r["import"] + sum(images_needed(i, items) for i in items) / r["rate"]

    ratios = [r[kind][0] / floor(r) for r in rounds]
    middle = sorted(range(len(rounds)), key=ratios.__getitem__)[len(rounds) // 2]
    r = rounds[middle]
    seconds, per_item = r[kind]
    in_items = sum(per_item.values())
    print(f"\n{kind}: {ratios[middle]:.2f}x the floor (median of {len(rounds)} rounds: "
          f"{', '.join(f'{x:.2f}' for x in ratios)}). That round: {seconds:.1f} s wall against "
          f"a floor of {floor(r):.1f} s (TensorFlow import {r['import']:.1f} s + "
          f"{floor(r) - r['import']:.1f} s of images at the forward rate, {r['rate']:.0f} images/s); "
          f"items {in_items:.1f} s, the rest {seconds - in_items:.1f} s (worker start with its "
          f"import, inputs, judging); {3600 / seconds:.0f} submissions/hour")
    print(f"{'item':15s} {'images':>7s} {'floor':>7s} {'measured':>9s} {'ratio':>6s}")
    for item in items:
        n = images_needed(item, items)
        took = per_item[item.id]
        ratio = f"{took * r['rate'] / n:6.2f}" if n / r["rate"] > 0.05 else "     -"
        print(f"{item.id:15s} {n:7d} {n / r['rate']:6.1f}s {took:8.1f}s {ratio}")


if __name__ == "__main__":
    main()
