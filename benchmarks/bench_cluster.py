"""`grader batch --scheduler local:2` against the local pool with 2 workers, in one run.

    python benchmarks/bench_cluster.py [--all-items] [--rounds 1]

The same 6 mixed submissions as bench_grading.py (the reference, the skeleton, the
solution notebook and three broken variants) are batch-graded on the public rubric
(every item with --all-items), alternating the two ways, `--rounds` times each. Prints
every run, the ratio of the best runs (target: the cluster at 0.9 or more of the local
pool), and the wall time 300 submissions would take on N single-submission workers,
projected from the cost of one submission per worker measured here.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from mixed import mixed_submissions, rubric_args as mixed_rubric_args  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--all-items", action="store_true")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        subs = mixed_submissions(work)
        n = len(list(subs.iterdir()))
        rubric_args = mixed_rubric_args(work, args.all_items)
        ways = {"local pool, 2 workers": ["--workers", "2"], "dask local:2": ["--scheduler", "local:2"]}
        times: dict[str, list[float]] = {way: [] for way in ways}
        for round_ in range(args.rounds):
            for way, option in ways.items():
                out = work / f"out-{len(times[way])}-{option[-1]}"
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "grader", "batch", str(subs), "--out", str(out),
                                "--no-progress", *option, *rubric_args], check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                times[way].append(time.perf_counter() - start)
                print(f"round {round_ + 1}, {way}: {times[way][-1]:.0f} s for {n} submissions "
                      f"({n / times[way][-1] * 3600:.0f} submissions/hour)")
        local, dask = min(times["local pool, 2 workers"]), min(times["dask local:2"])
        print(f"throughput, dask local:2 / local pool with 2 workers: {local / dask:.2f}")
        per_submission = dask * 2 / n  # seconds of one worker slot per submission
        items = "every item" if args.all_items else "visible items"
        print(f"one submission costs {per_submission:.0f} s of a worker slot ({items}); "
              "300 submissions would take: " + ", ".join(
                  f"{workers} workers {300 * per_submission / workers / 60:.0f} min"
                  for workers in (2, 8, 32, 128)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
