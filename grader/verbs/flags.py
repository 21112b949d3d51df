"""`grader flags OUT`: the integrity flags of a batch, for a person to review.

A flag says what a submission did that honest work has no reason to do (see
engine.FLAG_KINDS), or, from `grader similarity`, which other submission it shares code
with. It never changes a score by itself: only the items a submission forged or broke
lose their points (status `integrity`).
"""
from __future__ import annotations

from pathlib import Path

from ..records.exports import points
from ..records.gradebook import FLAG_MEANINGS, open_existing
from ..names import shown



HELP = "list the integrity flags a batch raised, for review"


def add_arguments(parser) -> None:
    parser.add_argument("out", help="the --out folder of `grader batch`")
    parser.add_argument("--student", help="only this student's flags")


def execute(args) -> None:
    main(args.out, args.student)


def main(out: str, student: str | None = None) -> list[dict]:
    book = open_existing(Path(out))
    try:
        flags = book.flags(student)
        flags += [{"student": s["student"], "kind": "similar",
                   "detail": f"similar to {s['other']}, {s['evidence'] or format(s['score'], '.2f')}"}
                  for s in book.similar(student)]
        flags.sort(key=lambda f: f["student"])  # stable: each student's own order kept
        scores = {r["student"]: r for r in book.submissions()}
    finally:
        book.close()
    if not flags:
        print("no flags" + (f" for {student}" if student else "") + ".")
        return flags
    current = None
    for flag in flags:
        if flag["student"] != current:
            current = flag["student"]
            row = scores.get(current, {})
            print(f"{shown(current)}  ({points(row.get('score', 0))} / {points(row.get('max_score', 0))}, "
                  f"{row.get('status', '?')})")
        print(f"  {flag['kind']}: {shown(flag['detail'])}  [{FLAG_MEANINGS.get(flag['kind'], '')}]")
    print(f"{len({f['student'] for f in flags})} submission(s) flagged, {len(flags)} flag(s).")
    return flags
