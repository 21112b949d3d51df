"""Section 6 of the notebook on the offline default: the reference's transfer model
against the same network trained from scratch, test accuracy per seed.

    python benchmarks/bench_transfer_default.py [--seeds 1 2 3] [--steps 150] [--at 25 50 100]

Runs the notebook's own code: the reference solution (solutions/transfer_learning.py),
the synthetic default with the stand-in weights, the notebook's validation split, and
`from_scratch` taken from the handout's section 6 cell. A seed fixes the data order
(make_dataset's shuffling), Keras' random state and from_scratch's initialisation.
`--at` also reports both models' test accuracy at earlier steps of the same runs.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "solutions")]


class _Continuing:
    """A dataset whose every iter() carries on where the last one stopped, so training in
    pieces (to read the accuracy on the way) sees the batches one run would."""

    def __init__(self, dataset):
        self.batches = iter(dataset)

    def __iter__(self):
        return self.batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=None, help="default: the notebook's STEPS")
    parser.add_argument("--at", type=int, nargs="*", default=[])
    args = parser.parse_args()

    import keras
    import numpy as np

    import transfer_learning as tl
    from grader.exercises.transfer_learning import handout, synthetic, vgg_weights

    steps = args.steps or handout.DEFAULT_STEPS["synthetic"]
    cell = handout.SCRATCH[0]
    namespace: dict = {}
    exec(cell[:cell.index("\nscratch = ")], namespace)  # the cell's imports and from_scratch
    from_scratch = namespace["from_scratch"]

    data = synthetic.load()
    (train_x, train_y), (val_x, val_y) = data.split_validation(len(data.train_labels) // 10)
    weights = vgg_weights.stand_in()

    def accuracy(model):
        return (model.predict(data.test_images, verbose=0).argmax(1) == data.test_labels).mean()

    def run(kind, seed, folder):
        keras.utils.set_random_seed(seed)
        model = tl.build_model(weights)
        if kind == "scratch":
            model = from_scratch(model, seed=seed)
        batches = _Continuing(tl.make_dataset(train_x, train_y, seed=seed))
        validation = tl.make_dataset(val_x, val_y, shuffle=False, repeat=False)
        on_the_way, began = {}, time.time()
        for at in sorted(a for a in args.at if a < steps) + [steps]:
            tl.train(model, batches, validation, steps=at, checkpoint_dir=f"{folder}/{kind}",
                     checkpoint_every=max(steps // 3, 1))
            on_the_way[at] = accuracy(model)
        return on_the_way, time.time() - began

    print(f"{data.name}, stand-in weights, {steps} steps, test accuracy transfer / from scratch")
    header = " ".join(f"{f'@{a}':>13}" for a in sorted(args.at) if a < steps)
    print(f"{'seed':>4} {'transfer':>9} {'scratch':>8} {header}  seconds (transfer, scratch)")
    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as folder:
            transfer, t_seconds = run("transfer", seed, folder)
            scratch, s_seconds = run("scratch", seed, folder)
        early = " ".join(f"{transfer[a]:>6.3f}/{scratch[a]:<6.3f}" for a in sorted(args.at) if a < steps)
        print(f"{seed:>4} {transfer[steps]:>9.3f} {scratch[steps]:>8.3f} {early}  "
              f"{t_seconds:.0f}, {s_seconds:.0f}", flush=True)
        rows.append((transfer[steps], scratch[steps]))
    t, s = np.array(rows).T
    print(f"mean {t.mean():>9.3f} {s.mean():>8.3f}; transfer ahead in {int((t > s).sum())} of {len(rows)}")


if __name__ == "__main__":
    main()
