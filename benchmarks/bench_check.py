"""How long a student waits for a check, against an older kit in the same run.

    python benchmarks/bench_check.py [--baseline REV | --old PATH] [--rounds 3] [--pause 5]

1. A notebook session (one process, as a kernel): check('preprocess') first, which starts
   TensorFlow, then -- each after `--pause` seconds, the student's time writing the next
   function, which is not counted -- check('preprocess') again and each task's check
   but training's (build_model, make_dataset, restore_checkpoint). With `--pause 0` the
   checks follow each other at once.
2. `grader check` on the reference (all visible items), one process, as a student runs it.

Each figure is the median of --rounds runs; with --baseline (a temporary worktree of that
git revision) or --old (a checkout), the older kit runs alternating with this one, each
with its own code (PYTHONPATH first) and rubric, and the ratio now / then is printed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from baseline import worktree  # noqa: E402

TASKS = ("preprocess", "preprocess", "build_model", "make_dataset", "restore_checkpoint")

SESSION = """
import json, sys, time, io
from pathlib import Path
from grader import notebook
times = []
for k, task in enumerate(sys.argv[3:]):
    if k:
        time.sleep(float(sys.argv[2]))
    start = time.perf_counter()
    out = io.StringIO()
    report = notebook.run((task,), notebook=Path(sys.argv[1]), stream=out)
    seconds = time.perf_counter() - start
    if report is None or report.score < report.max_score:
        sys.exit(f"check({task!r}) did not give full marks:\\n" + out.getvalue())
    times.append(seconds)
print(json.dumps(times))
"""


def session(kit: Path, work: Path, pause: float) -> list[float]:
    """Seconds of each check of TASKS, in one process running `kit`'s code."""
    folder = Path(tempfile.mkdtemp(prefix="session-", dir=work))
    notebook = folder / "transfer_learning.ipynb"
    shutil.copy(kit / "solutions" / "transfer_learning.ipynb", notebook)
    env = dict(os.environ, PYTHONPATH=str(kit), TF_CPP_MIN_LOG_LEVEL="2", MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, "-c", SESSION, str(notebook), str(pause), *TASKS],
                          cwd=folder, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the session with {kit} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cli(kit: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "grader", "check",
                    str(kit / "solutions" / "transfer_learning.py")], cwd=kit, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=dict(os.environ, PYTHONPATH=str(kit)))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--baseline", metavar="REV", help="also time the kit at this git revision")
    parser.add_argument("--old", metavar="PATH", help="also time the kit checked out at PATH")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pause", type=float, default=5.0,
                        help="seconds between a session's checks (not counted)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-check-"))
    try:
        with worktree(args.baseline, work) as made:
            kits = {"now": ROOT}
            if made or args.old:
                kits["then"] = Path(made or args.old).resolve()
            figures: dict[str, dict[str, list[float]]] = {name: {} for name in kits}
            for _ in range(args.rounds):
                for name, kit in kits.items():  # alternating, so both see the same machine
                    for label, seconds in zip(_labels(), session(kit, work, args.pause)):
                        figures[name].setdefault(label, []).append(seconds)
                    figures[name].setdefault("grader check (all visible items)", []).append(cli(kit))
        rows = [("", "now (s)", "then (s)", "now / then")]
        for label, now in figures["now"].items():
            then = figures.get("then", {}).get(label)
            rows.append((label, _median(now), _median(then) if then else "",
                         f"{statistics.median(now) / statistics.median(then):.2f}" if then else ""))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        print(f"medians of {args.rounds} (all runs in brackets); pause between checks "
              f"{args.pause:g} s{'; then: ' + str(kits['then']) if 'then' in kits else ''}")
        for row in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _labels() -> list[str]:
    seen: dict[str, int] = {}
    labels = []
    for task in TASKS:
        seen[task] = seen.get(task, 0) + 1
        labels.append(f"check({task!r})" + (" first of the session" if len(labels) == 0
                                             else " again" if seen[task] > 1 else ""))
    return labels


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({', '.join(f'{v:.1f}' for v in values)})"


if __name__ == "__main__":
    main()
