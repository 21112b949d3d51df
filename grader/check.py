"""`grader check SUBMISSION`: grade one submission locally and print a table.

Runs the rubric's visible items (all items with --all) on the embedded default data
and stand-in weights unless real ones are configured.
"""
from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from . import engine, rubric as rubric_mod, vgg_weights
from .fsutil import write_text_atomic
from .paths import DEFAULT_RUBRIC
from .submission import prepare

STATUS_MARK = {"passed": "ok", "partial": "part", "failed": "FAIL", "error": "ERROR",
               "timeout": "TIMEOUT", "crashed": "CRASH", "skipped": "skip"}


def format_table(report: engine.Report) -> str:
    rows = [(r.id, f"{r.score:g}/{r.max_score:g}", STATUS_MARK.get(r.status, r.status),
             f"{r.seconds:.1f}s", r.message) for r in report.items]
    widths = [max(len(row[i]) for row in rows + [("item", "points", "status", "time", "")])
              for i in range(4)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(("item", "points", "status", "time"), widths))
             + "  message"]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
    lines.append(f"total: {report.score:g} / {report.max_score:g} points "
                 f"({report.seconds:.1f} s)")
    return "\n".join(lines)


def main(submission: str, rubric_path: str | None = None, json_out: str | None = None,
         include_hidden: bool = False, weights: str | None = None, data=None) -> engine.Report:
    rubric = rubric_mod.load(rubric_path or DEFAULT_RUBRIC)
    conv_weights, source = vgg_weights.resolve(weights)
    work = Path(tempfile.mkdtemp(prefix="grader-check-"))
    try:
        module_file = prepare(submission, work / "module")
        inputs = engine.grading_inputs(rubric, conv_weights, data)
        report = engine.grade(module_file, rubric, inputs, include_hidden=include_hidden,
                              submission_dir=Path(submission).resolve().parent,
                              work_dir=work / "run", name=str(submission))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"grading {submission} with {rubric.source} ({source})", file=sys.stderr)
    print(format_table(report))
    if json_out:
        write_text_atomic(json_out, json.dumps(report.to_dict(), indent=2))
    return report
