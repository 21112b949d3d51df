"""`grader similarity OUT`: which submissions of a batch share code beyond what the
exercise gives them, or behaved alike in ways of their own (grader/copying), for a person
to judge. Nothing here changes a score."""
from __future__ import annotations

from pathlib import Path

from .. import copying
from ..copying import COMMON, THRESHOLD


HELP = ("compare a batch's submissions for copied code, the given code removed, and for runs "
        "that behaved alike in ways of their own (advisory: for a person to judge)")


def add_arguments(parser) -> None:
    parser.add_argument("out", help="the --out folder of `grader batch`")
    parser.add_argument("--threshold", type=float, default=THRESHOLD,
                        help="report pairs whose code score is at least this (default: "
                             "%(default)s, measured; see docs/copying.md); pairs that behaved "
                             "alike are reported at any code score")
    parser.add_argument("--given", nargs="+", metavar="FILE",
                        help="the code students were given (.py, .ipynb, or a handout's code "
                             "blocks; default: the course's skeletons/)")
    parser.add_argument("--submissions", metavar="FOLDER",
                        help="where the graded submissions are now, if they moved")
    parser.add_argument("--common", type=int, default=COMMON, metavar="N",
                        help="ignore code held by more than N submissions: the class's shared "
                             "idioms (default: %(default)s; raise it to see a larger group of "
                             "copies)")


def execute(args) -> None:
    main(args.out, args.threshold, args.given, args.submissions, args.common)


def main(out: str, threshold: float = THRESHOLD, given: list[str] | None = None,
         submissions: str | None = None, common: int = COMMON) -> copying.Result:
    result = copying.run(Path(out), threshold, given, submissions, common)
    print(copying.summary(result, Path(out)))
    return result
