"""`grader export OUT`: rebuild a batch's hand-outs from its gradebook, grading nothing.

grades.csv, feedback/, gradescope/*/results.json and moodle.csv are written after every
batch and after each grade saved in `grader review`; this writes them again, for instance
with --released once the due date has passed (kept in the gradebook: later batches, exports
and saves keep showing what was released, until --unreleased).
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..names import shown
from ..options import add_release_arguments

from ..records import exports
from ..records.gradebook import open_existing


HELP = ("rebuild a batch's CSV, feedback, Gradescope and Moodle files from its gradebook "
        "(manual grades included)")


def add_arguments(parser) -> None:
    parser.add_argument("out", help="the --out folder of `grader batch`")
    add_release_arguments(parser)


def execute(args) -> int:
    return main(args.out, released=args.released)


def main(out: str, released: bool | None = None) -> int:
    book = open_existing(Path(out))
    try:
        if released is not None:
            book.set_meta("released", "1" if released else "0")
        released = book.get_meta("released") == "1"
        problems = exports.write_all(book, Path(out), released)
        rows = book.submissions()
    finally:
        book.close()
    lms_files = [n for n in (exports.MOODLE_WORKSHEET, exports.MOODLE_FEEDBACK_ZIP, exports.CANVAS_FILE)
                 if (Path(out) / n).exists()]
    print(f"wrote grades.csv, feedback/, gradescope/, {', '.join([exports.MOODLE_FILE, *lms_files])} "
          f"for {len(rows)} submission(s) in {out}, {'released' if released else 'not released'}")
    for student, problem in problems:  # everyone else's files are written
        print(f"error: {shown(student)}: {problem}", file=sys.stderr)
    return 1 if problems else 0
