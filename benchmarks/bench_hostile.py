"""What a hostile class costs the grading process (issue: a batch no submission can stop).

- The notebook filter (grader.cells.definitions_only) on chains of assignments of
  25,000, 50,000 and 100,000 lines, each line reading the next: linear time shows as a
  ratio near 4 between 100,000 and 25,000 lines (the old fixed point took one pass per line:
  16, and a minute at 24,000 lines).
- The filter at the statement bound (MAX_STATEMENTS less 1,000 one-line statements): the
  grading process's peak memory per notebook it converts (two at a time in a batch).
- Reading a notebook whose attachment is 600,000 empty lists (2 MB): peak memory of a
  process that turns it into the module to grade, against nbformat.read, the old reader,
  in a process capped at --cap-gb of address space.
- A batch of the hostile class (tests/hostile_class.py) beside two honest submissions,
  against a batch of the same honest and graded entries under plain names: wall time and
  the grading process's peak memory (VmHWM of the `grader batch` process itself; the
  workers are bounded by their own sandbox caps).

    python benchmarks/bench_hostile.py [--cap-gb 3]
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import yaml  # noqa: E402

RUBRIC = {"schema_version": 1, "time_limit": 20, "items": [
    {"id": "interface", "title": "Interface", "points": 1, "check": "interface"},
    {"id": "preprocess", "title": "Preprocessing", "points": 2, "check": "preprocess"},
    {"id": "weights", "title": "Weights", "points": 2, "check": "weights"},
    {"id": "pipeline", "title": "Pipeline", "points": 2, "check": "pipeline"},
]}


def chain_times() -> dict[int, float]:
    from grader.cells import definitions_only

    times = {}
    for n in (25_000, 50_000, 100_000):
        code = "\n".join(f"x{i} = x{i + 1} + 1" for i in range(n)) + f"\nx{n} = 0\n"
        code += "def preprocess(images):\n    return images * x0\n"
        start = time.perf_counter()
        definitions_only([(code, False)])
        times[n] = time.perf_counter() - start
    return times


# VmHWM, the process's own peak: ru_maxrss carries a parent's peak over fork and exec
HWM = """
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) >> 10
"""
STATEMENTS = HWM + textwrap.dedent("""
    import resource, time
    from grader.cells import MAX_STATEMENTS, definitions_only
    start = time.perf_counter()
    definitions_only([("a\\n" * (MAX_STATEMENTS - 1000), False)])
    print(MAX_STATEMENTS - 1000, time.perf_counter() - start,
          hwm())
""")


def statements_peak() -> str:
    done = subprocess.run([sys.executable, "-c", STATEMENTS], capture_output=True, text=True, cwd=ROOT)
    count, seconds, megabytes = done.stdout.split()
    return (f"notebook filter at the statement bound ({int(count):,} one-line statements): "
            f"{float(seconds):.1f} s, process peak {megabytes} MB")


PEAK = HWM + textwrap.dedent("""
    import resource, sys
    cap = int(sys.argv[3]) << 30
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    try:
        if sys.argv[1] == "grader":
            from grader.cells import notebook_to_source
            notebook_to_source(sys.argv[2])
        else:
            import nbformat
            nbformat.read(sys.argv[2], as_version=4)
        outcome = "read"
    except MemoryError:
        outcome = "MemoryError at the cap"
    print(outcome, hwm())
""")


def notebook_peaks(folder: Path, cap_gb: int) -> dict[str, str]:
    notebook = json.loads((ROOT / "solutions" / "transfer_learning.ipynb").read_text())
    notebook["cells"].append({"cell_type": "markdown", "metadata": {}, "source": "![](attachment:a.png)",
                              "attachments": {"a.png": {"image/png": [[]] * 600_000}}})
    path = folder / "bomb.ipynb"
    path.write_text(json.dumps(notebook))
    peaks = {}
    for reader in ("grader", "nbformat"):
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", PEAK, reader, str(path), str(cap_gb)],
                              capture_output=True, text=True, cwd=ROOT)
        outcome, _, megabytes = done.stdout.strip().rpartition(" ")
        seconds = time.perf_counter() - start
        peaks[reader] = (f"{outcome}, peak {megabytes} MB, {seconds:.1f} s" if outcome else
                         f"failed under the {cap_gb} GB cap after {seconds:.1f} s "
                         f"({done.stderr.strip().splitlines()[-1][:80]})")
    return peaks


BATCH = HWM + textwrap.dedent("""
    import resource, sys, time
    from grader.verbs import batch
    start = time.perf_counter()
    batch.main(sys.argv[1], sys.argv[2], workers=2, rubric_path=sys.argv[3], progress=False)
    print("BENCH", time.perf_counter() - start, hwm())
""")


def batch_run(subs: Path, out: Path, rubric: Path) -> tuple[float, int]:
    done = subprocess.run([sys.executable, "-c", BATCH, str(subs), str(out), str(rubric)],
                          capture_output=True, text=True, cwd=ROOT)
    line = [x for x in done.stdout.splitlines() if x.startswith("BENCH")]
    if not line:
        raise SystemExit(f"the batch failed:\n{done.stderr[-3000:]}")
    _, seconds, megabytes = line[0].split()
    return float(seconds), int(megabytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap-gb", type=int, default=3)
    args = parser.parse_args()
    from hostile_class import HOSTILE, REFERENCE, hostile_class, remove_deep

    times = chain_times()
    print("notebook filter, chained assignments: " + ", ".join(
        f"{n:,} lines {t:.2f} s" for n, t in times.items())
        + f"; 100,000 / 25,000 lines = {times[100_000] / times[25_000]:.1f}x (linear: 4x)")
    print(statements_peak())
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        tmp = Path(tmp)
        for reader, said in notebook_peaks(tmp, args.cap_gb).items():
            print(f"notebook of 600,000 empty lists, {reader}: {said}")
        rubric = tmp / "rubric.yaml"
        rubric.write_text(yaml.safe_dump(RUBRIC))
        hostile, plain = tmp / "hostile", tmp / "plain"
        hostile.mkdir()
        plain.mkdir()
        for folder in (hostile, plain):
            (folder / "honest_py.py").write_text(REFERENCE)
            (folder / "honest_b.py").write_text(REFERENCE)
        hostile_class(hostile)
        graded = sum(status == "graded" for status, _ in HOSTILE.values())
        for i in range(graded):  # the same number of honest gradings under plain names
            (plain / f"plain_{i}.py").write_text(REFERENCE)
        plain_s, plain_mb = batch_run(plain, tmp / "out-plain", rubric)
        hostile_s, hostile_mb = batch_run(hostile, tmp / "out-hostile", rubric)
        remove_deep(hostile)  # TemporaryDirectory's rmtree recurses once a level
        shutil.rmtree(tmp / "out-plain")
        print(f"batch, {graded + 2} honest entries under plain names: {plain_s:.1f} s, "
              f"peak {plain_mb} MB")
        print(f"batch, the same beside the hostile class ({len(HOSTILE) - graded} more entries): "
              f"{hostile_s:.1f} s, peak {hostile_mb} MB; time ratio {hostile_s / plain_s:.2f}x")


if __name__ == "__main__":
    main()
