"""What the training item measures, on the synthetic default and on real CIFAR-10.

For every correct solution of the corpus and every variant that must lose the training
item, trains a fresh model with the grader's own fixed batches (as the training item
does) and records, at several step counts, the loss and accuracy the grading side
computes from the logits on the item's training images: before training, and after
each budget. Prints one row per run and step count, for re-deriving the item's steps
and its verdict's thresholds.

    python benchmarks/bench_training_verdict.py --steps 30 60 [--cifar10 ARCHIVE]

This is a measurement, not grading: it imports the solutions into this process.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from grader.exercises.transfer_learning import inputs as tl_inputs
from grader import corpus as corpus_mod
from grader import engine, rubric as rubric_mod  # noqa: E402
from grader.exercises.transfer_learning import checks, vgg_weights  # noqa: E402
from grader.modules import import_tensorflow_quietly, load_module  # noqa: E402
from grader.paths import default_rubric  # noqa: E402
from grader.submission import prepare  # noqa: E402


def measure(path: Path, inputs: tl_inputs.GradingInputs, steps_list: list[int], tmp: Path,
            bar: float) -> list[dict]:
    module = load_module(prepare(path, tmp / "module"), f"m_{abs(hash(str(path)))}")
    rows = []
    for steps in steps_list:
        ctx = checks.common.WorkerContext(inputs.weights, inputs.train_images, inputs.train_labels,
                                   np.zeros((0, 32, 32, 3), np.uint8), np.zeros((0, 32, 32, 3), np.uint8),
                                   tmp, path.parent)
        with contextlib.redirect_stdout(io.StringIO()):
            obs = checks.training.collect_training(module, ctx, {"steps": steps})
        labels = inputs.train_labels[:checks.training.TRAINING_IMAGES]
        before, after = obs["before"]["logits"], obs["after"]["logits"]
        learned, message = checks.training.learning_diagnosis(before, after, labels, steps, bar)
        rows.append({"steps": steps,
                     "loss_before": checks.training.cross_entropy(before, labels),
                     "loss_after": checks.training.cross_entropy(after, labels),
                     "acc_before": float((before.argmax(1) == labels).mean()),
                     "acc_after": float((after.argmax(1) == labels).mean()),
                     "learned": learned})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[30])
    parser.add_argument("--cifar10", metavar="ARCHIVE", help="also measure on this archive "
                        "(official layout; checksum not verified)")
    parser.add_argument("--synthetic", action="store_true", help="measure on the synthetic default")
    parser.add_argument("--solution", action="append", help="only these (correct or variant names)")
    parser.add_argument("--all-variants", action="store_true",
                        help="every variant, not only those that must lose the training item")
    parser.add_argument("--json", help="write the rows here")
    parser.add_argument("--bar", type=float, default=0.3,
                        help="learned_accuracy the 'learned' column is judged against")
    args = parser.parse_args()
    import_tensorflow_quietly()
    rubric = rubric_mod.load(default_rubric())
    weights, _ = vgg_weights.resolve(None)
    datasets = []
    if args.synthetic or not args.cifar10:
        datasets.append(("synthetic", None))
    if args.cifar10:
        from grader.exercises.transfer_learning import cifar10
        datasets.append(("cifar10", cifar10.load(args.cifar10, verify_checksum=False)))
    correct = corpus_mod.correct_solutions()
    variants = [v for v in corpus_mod.load_variants()
                if args.all_variants or "training" in v.loses]
    all_rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs = [("correct", name, path) for name, path in correct.items()]
        runs += [("variant", v.name, corpus_mod.write_variant(v, tmp / "variants" / v.name))
                 for v in variants]
        for data_name, dataset in datasets:
            inputs = tl_inputs.build(rubric, weights, dataset)
            for kind, name, path in runs:
                if args.solution and name not in args.solution:
                    continue
                with tempfile.TemporaryDirectory(dir=tmp) as run_tmp:
                    try:
                        rows = measure(path, inputs, args.steps, Path(run_tmp), args.bar)
                    except Exception as exc:  # noqa: BLE001 - a variant may not even train
                        print(f"{data_name:9s} {kind:7s} {name:28s} error {type(exc).__name__}: "
                              f"{str(exc)[:80]}", flush=True)
                        continue
                for row in rows:
                    row.update(data=data_name, kind=kind, name=name)
                    all_rows.append(row)
                    print(f"{data_name:9s} {kind:7s} {name:28s} {row['steps']:4d} steps  loss "
                          f"{row['loss_before']:7.3f} -> {row['loss_after']:8.3f}  acc "
                          f"{row['acc_before']:.2f} -> {row['acc_after']:.2f}  "
                          f"{'learned' if row['learned'] else 'NOT learned'}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(all_rows, indent=1))


if __name__ == "__main__":
    main()
