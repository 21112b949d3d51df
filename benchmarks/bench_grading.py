"""Grading throughput, measured against two baselines in one run.

    python benchmarks/bench_grading.py [--copies 3] [--baseline REV] [--rounds 3]

1. `grader check` wall time on the reference (all visible items), as a student runs it;
   with --baseline, alternating with the kit at git revision REV (its own code and rubric,
   from a temporary worktree), median of --rounds runs each.
2. `grader batch` on a mix of correct and broken submissions (the reference, the
   skeleton, a notebook, and broken variants from tests/corpus/variants.yaml, `--copies` of
   each) with 1 and with 2 workers: submissions per hour.
3. The same notebooks graded the way notebook graders do it -- executing each notebook
   top to bottom with nbclient, its training cells included -- against `grader check`
   on the same notebook. Reported as the ratio of wall times.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from baseline import worktree  # noqa: E402
from mixed import mixed_submissions, rubric_args as mixed_rubric_args  # noqa: E402


def timed(command: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--all-items", action="store_true",
                        help="batch-grade hidden items too (the longer accuracy run)")
    parser.add_argument("--baseline", metavar="REV", help="also time `grader check` at this "
                        "git revision, alternating with the current kit")
    parser.add_argument("--rounds", type=int, default=1, help="`grader check` runs per variant")
    parser.add_argument("--check-only", action="store_true", help="stop after `grader check`")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-grading-"))
    grader = [sys.executable, "-m", "grader"]
    try:
        reference = str(ROOT / "solutions" / "transfer_learning.py")
        now, before = [], []
        with worktree(args.baseline, work) as old:
            for _ in range(args.rounds):
                if old is not None:  # the old kit's own code (PYTHONPATH first) and rubric
                    before.append(timed(grader + ["check", reference], cwd=old,
                                        env=dict(os.environ, PYTHONPATH=str(old))))
                now.append(timed(grader + ["check", reference]))
        print(f"grader check, reference, visible items: {statistics.median(now):.1f} s "
              f"(median of {args.rounds}: {', '.join(f'{t:.1f}' for t in now)})")
        if before:
            print(f"  at {args.baseline}: {statistics.median(before):.1f} s "
                  f"({', '.join(f'{t:.1f}' for t in before)}); now / then "
                  f"{statistics.median(now) / statistics.median(before):.2f}")
        if args.check_only:
            return

        subs = mixed_submissions(work, args.copies)
        n = len(list(subs.iterdir()))
        rubric_args = mixed_rubric_args(work, args.all_items)
        rates = {}
        for workers in (1, 2):
            seconds = timed(grader + ["batch", str(subs), "--out", str(work / f"out{workers}"),
                                      "--workers", str(workers), "--no-progress", *rubric_args])
            rates[workers] = n / seconds * 3600
            print(f"grader batch, {n} submissions, {'all' if args.all_items else 'visible'} items, "
                  f"{workers} worker(s): {seconds:.0f} s, "
                  f"{rates[workers]:.0f} submissions/hour")
        print(f"  2 workers / 1 worker: {rates[2] / rates[1]:.2f}")

        env = dict(os.environ, MPLBACKEND="Agg")
        # The instructor notebook without its check cells: what a notebook grader executes.
        import nbformat
        from grader.cells import TAG_CHECK

        nb = nbformat.read(str(ROOT / "solutions" / "transfer_learning.ipynb"), as_version=4)
        nb.cells = [c for c in nb.cells if TAG_CHECK not in c.metadata.get("tags", [])]
        run_dir = work / "nb"
        run_dir.mkdir()
        notebook = run_dir / "transfer_learning.ipynb"
        nbformat.write(nb, str(notebook))
        nbclient = timed([sys.executable, "-c",
                          "import nbformat, sys; from nbclient import NotebookClient; "
                          "nb = nbformat.read(sys.argv[1], as_version=4); "
                          "NotebookClient(nb, timeout=1800, kernel_name='python3', "
                          "resources={'metadata': {'path': sys.argv[2]}}).execute()",
                          str(notebook), str(run_dir)], env=env)
        ours = timed(grader + ["check", str(notebook)], env=env)
        print(f"notebook executed top to bottom with nbclient: {nbclient:.1f} s; "
              f"grader check on it: {ours:.1f} s; ratio {nbclient / ours:.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
