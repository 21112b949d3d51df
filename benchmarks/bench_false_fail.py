"""False-fail and false-pass rates of the grader, per item, under held-out seeds.

    python benchmarks/bench_false_fail.py [--seeds 101 202] [--variant-seeds 101]

Every correct solution of tests/corpus (and the reference) is graded on every item of the
shipped rubric under each seed; every broken variant of tests/corpus/variants.yaml is
graded on its items (corpus.variant_items) under --variant-seeds (default: the same
seeds). The seeds differ from the calibration seeds recorded in the rubric, so the
accuracy bounds meet data orders and held-out images they were not set on. Reported per item:

- false fails: correct runs that lost points on the item (target 0);
- false passes: variants that must lose the item but kept full points on it (target 0);
- variants that lost an item they should have kept (target 0).
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 202])
    parser.add_argument("--variant-seeds", type=int, nargs="+")
    args = parser.parse_args()
    variant_seeds = args.variant_seeds or args.seeds

    from grader import corpus, rubric
    from grader.options import DataOptions
    from grader.verbs import calibrate
    from grader.paths import default_rubric
    DEFAULT_RUBRIC = default_rubric()

    shipped = rubric.load(DEFAULT_RUBRIC)
    inputs = shipped.exercise.calibration(shipped, DataOptions()).inputs  # the rubric's data
    log = lambda line: print(line, file=sys.stderr, flush=True)
    start = time.perf_counter()
    correct = calibrate.grade_runs(corpus.correct_solutions(), "correct", shipped, inputs,
                                   args.seeds, log=log)
    false_fail = Counter(item.id for r in correct for item in shipped.items
                         if r.scores[item.id] < 1.0)
    false_pass, over_strict, graded = Counter(), Counter(), Counter()
    with tempfile.TemporaryDirectory(prefix="bench-false-fail-") as tmp:
        for variant in corpus.load_variants():
            items = corpus.variant_items(variant, shipped.items)
            sub = dataclasses.replace(shipped, items=items)
            path = corpus.write_variant(variant, Path(tmp) / variant.name)
            for run in calibrate.grade_runs({variant.name: path}, "variant", sub, inputs,
                                            variant_seeds, log=log):
                for item in items:
                    graded[item.id] += 1
                    if item.id in variant.loses and run.scores[item.id] >= 1.0:
                        false_pass[item.id] += 1
                    if item.id not in variant.loses and run.scores[item.id] < 1.0:
                        over_strict[item.id] += 1
    minutes = (time.perf_counter() - start) / 60
    n_correct = len(correct)
    print(f"{n_correct} correct runs ({n_correct // len(args.seeds)} solutions x "
          f"{len(args.seeds)} seeds {args.seeds}), "
          f"{len(corpus.load_variants())} variants x {len(variant_seeds)} seeds {variant_seeds}, "
          f"{minutes:.0f} min")
    print("| item | correct runs that lost points | variants that kept an item they must lose "
          "| variants that lost an item they should keep |")
    print("|---|---|---|---|")
    for item in shipped.items:
        must = sum(len(variant_seeds) for v in corpus.load_variants() if item.id in v.loses)
        print(f"| {item.id} | {false_fail[item.id]} / {n_correct} | {false_pass[item.id]} / {must} "
              f"| {over_strict[item.id]} / {graded[item.id] - must} |")


if __name__ == "__main__":
    main()
