"""A written answer edited after grading: the batch reads it again without grading the
code, against the first grading of the same class.

    python benchmarks/bench_answer_edit.py [--students 2] [--workers 2]

Makes a class from the generated instructor notebook (each student's answer cell written),
grades it with `grader batch` and the kit's rubric, rewrites one student's answer and runs
the batch again, then changes one student's code and runs it once more. Prints the three
wall times and their ratios to the first run.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    import nbformat

    from grader import answers

    def notebook(text: str, code_note: str = ""):
        nb = nbformat.read(ROOT / "solutions" / "transfer_learning.ipynb", as_version=4)
        for cell in nb.cells:
            tags = cell.metadata.get("tags", [])
            if answers.tag("compare_scratch") in tags and cell.cell_type == "markdown":
                cell.source = text
            if code_note and cell.cell_type == "code" and "def preprocess" in cell.source:
                cell.source += f"\n# {code_note}\n"
        return nb

    def batch(folder: Path, out: Path) -> float:
        began = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "grader", "batch", str(folder), "--out", str(out),
                                 "--workers", str(args.workers), "--no-progress"],
                                capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(result.stderr[-2000:])
        return time.perf_counter() - began

    with tempfile.TemporaryDirectory() as tmp:
        folder, out = Path(tmp) / "class", Path(tmp) / "out"
        folder.mkdir()
        for k in range(args.students):
            nbformat.write(notebook(f"Transfer wins, student {k}."), str(folder / f"s{k}.ipynb"))
        first = batch(folder, out)
        nbformat.write(notebook("Transfer wins, and here is why (edited)."), str(folder / "s0.ipynb"))
        answer_only = batch(folder, out)
        nbformat.write(notebook("Transfer wins, and here is why (edited).", "a code change"),
                       str(folder / "s0.ipynb"))
        code_change = batch(folder, out)
    print(f"{args.students} students, the kit's rubric, {args.workers} workers")
    print(f"first grading        {first:7.1f} s  1.00")
    print(f"one answer edited    {answer_only:7.1f} s  {answer_only / first:.2f}")
    print(f"one student's code   {code_change:7.1f} s  {code_change / first:.2f}")


if __name__ == "__main__":
    main()
