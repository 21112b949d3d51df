"""`grader check SUBMISSION`: grade one submission locally and print a table.

Runs the rubric's visible items (all items with --all) on the embedded default data
and stand-in weights unless real ones are configured.
"""
from __future__ import annotations

import json
import sys

from . import engine, rubric as rubric_mod, vgg_weights
from .fsutil import write_text_atomic
from .paths import DEFAULT_RUBRIC

STATUS_MARK = {"passed": "ok", "partial": "part", "failed": "FAIL", "error": "ERROR",
               "timeout": "TIMEOUT", "crashed": "CRASH", "integrity": "INTEGRITY",
               "skipped": "skip"}


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
    for flag in report.flags:
        lines.append(f"flagged ({flag.kind}): {flag.detail}")
    return "\n".join(lines)


def main(submission: str, rubric_path: str | None = None, json_out: str | None = None,
         include_hidden: bool = False, weights: str | None = None, data=None) -> engine.Report:
    rubric = rubric_mod.load(rubric_path or DEFAULT_RUBRIC)
    conv_weights, source = vgg_weights.resolve(weights)
    inputs = engine.grading_inputs(rubric, conv_weights, data)
    report = engine.grade_submission(submission, rubric, inputs, include_hidden=include_hidden,
                                     name=str(submission), own_folder=True, strict=True)
    print(f"grading {submission} with {rubric.source} ({source})", file=sys.stderr)
    print(format_table(report))
    if json_out:
        write_text_atomic(json_out, json.dumps(report.to_dict(), indent=2))
    return report
