"""What explaining logits costs, beside what computing them costs, in one run.

    python benchmarks/bench_explain.py [--images 500] [--repeats 5]

For the reference model with the stand-in weights, on `--images` held-out images:
- logits:   the model's forward pass in the worker (checks.model._outputs, traced);
- witness:  what the worker reads besides the logits (conv1_1's input, the conv weights,
            the head, flatten's order);
- explain:  the grading process's check (checks.explain.explain_logits: the colour-transform fit
            over every pixel and the VGG front end recomputed on 12 images).
The best of `--repeats` rounds of each is reported (noise only slows a round down).
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

import importlib.util  # noqa: E402

from grader.exercises.transfer_learning import checks, synthetic, vgg_weights  # noqa: E402
from grader.paths import solution  # noqa: E402


def best(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("reference", solution())
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.build_model(vgg_weights.stand_in(), num_classes=10)
    images, _ = synthetic.generate(args.images, seed=9)
    checks.model._outputs(model, images)  # the trace, as the items' first call pays it
    witness = checks.witness.logit_witness(model, module, images)
    assert checks.explain.explain_logits(witness, images) is None
    logits = best(lambda: checks.model._outputs(model, images), args.repeats)
    extra = best(lambda: (checks.witness._inputs_of(model, module, images), checks.model._conv_weights(model),
                          checks.witness._head(model), checks.witness._flatten_order(model)), args.repeats)
    explain = best(lambda: checks.explain.explain_logits(witness, images), args.repeats)
    print(f"{args.images} images: logits {logits:.3f} s, witness {extra:.3f} s "
          f"({extra / logits:.2f} of the logits), explain {explain:.3f} s ({explain / logits:.2f})")


if __name__ == "__main__":
    main()
