"""What the sandbox costs: grading the reference on quick items, confined vs not, in one run.

    python benchmarks/bench_sandbox.py [--rounds 3]

The same submission is graded on the interface, preprocessing, layer-shape and weights
items (where the worker's start-up dominates) with the sandbox this machine allows
(bubblewrap: namespaces, a private view, as nobody when run as root) and with resource
limits only, alternating, `--rounds` times each. Prints every round and the ratio of
the medians; the bare start of a confined `python -c pass` is timed the same way.
"""
from __future__ import annotations

import argparse
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

from grader.exercises.transfer_learning import inputs as tl_inputs
from grader import engine, rubric, sandbox as sandbox_mod  # noqa: E402
from grader.exercises.transfer_learning import vgg_weights  # noqa: E402
from grader.paths import solution  # noqa: E402

SOLUTION = solution()

QUICK = rubric.parse({"schema_version": 1, "time_limit": 60, "items": [
    {"id": i, "title": i, "points": 1, "check": i}
    for i in ("interface", "preprocess", "layer_shapes", "weights")]}, "quick items")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    confined = sandbox_mod.choose()
    bare = sandbox_mod.Sandbox("limits", confined.user)
    print(f"sandbox: {confined.describe()}")
    inputs = tl_inputs.build(QUICK, vgg_weights.stand_in())
    grade_times: dict[str, list[float]] = {"confined": [], "limits": []}
    start_times: dict[str, list[float]] = {"confined": [], "limits": []}
    for round_ in range(args.rounds):
        for name, box in (("confined", confined), ("limits", bare)):
            with tempfile.TemporaryDirectory() as tmp:
                scratch = Path(tmp) / "scratch"
                scratch.mkdir()
                os.chmod(tmp, 0o711)
                if box.user:
                    import pwd
                    entry = pwd.getpwnam(box.user)
                    os.chown(scratch, entry.pw_uid, entry.pw_gid)
                command = box.command([sys.executable, "-c", "pass"], read_only=[], scratch=scratch)
                start = time.perf_counter()
                subprocess.run(command, check=True, env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)})
                start_times[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            report = engine.grade_submission(SOLUTION, QUICK, inputs, sandbox=box)
            grade_times[name].append(time.perf_counter() - start)
            assert report.score == report.max_score, report.to_dict()
            print(f"round {round_ + 1} {name:8s}: python start {start_times[name][-1] * 1000:6.0f} ms, "
                  f"grading {grade_times[name][-1]:5.2f} s")
    ratio = statistics.median(grade_times["confined"]) / statistics.median(grade_times["limits"])
    print(f"grading 4 quick items, confined / limits only: {ratio:.2f} "
          f"({statistics.median(grade_times['confined']):.2f} s vs {statistics.median(grade_times['limits']):.2f} s)")
    extra = statistics.median(start_times["confined"]) - statistics.median(start_times["limits"])
    print(f"start of a confined python -c pass: +{extra * 1000:.0f} ms")


if __name__ == "__main__":
    main()
