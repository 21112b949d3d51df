"""The `grader` command: one sub-command per verb (grader/verbs/), and the commands the
course's exercise brings (`grader train`).

Each verb module holds HELP, add_arguments(parser) and execute(args); this file is the
table of them. Only the verb being run is imported, with its options, so a command does
not pay for the others' imports; `grader --help` imports them all to list them.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

from .errors import KitError

DEFAULT_EXERCISE = "transfer_learning"
"""the exercise whose commands the command line offers (grader/exercises/)"""

VERBS = {
    "check": "verbs.check",
    "generate": "verbs.generate",
    "calibrate": "verbs.calibrate",
    "batch": "verbs.batch",
    "flags": "verbs.flags",
    "review": "verbs.review",
    "report": "verbs.report",
    "export": "verbs.export",
    "similarity": "verbs.similarity",
    "gradescope-package": "verbs.gradescope",
}
"""verb -> its module in this package"""


def _available(module: str) -> bool:
    """Instructor verbs are absent from the student package (see grader/wheel.py)."""
    try:
        return importlib.util.find_spec(f"{__package__}.{module}") is not None
    except ModuleNotFoundError:  # its package is absent too (another exercise's wheel)
        return False


def _exercise_commands() -> dict[str, str]:
    """The default exercise's own commands: name -> module in this package."""
    from .errors import KitError
    from .exercise import load

    try:
        exercise = load(DEFAULT_EXERCISE)
    except KitError:  # a student package built for another exercise: it has none of these
        return {}
    prefix = exercise.package.removeprefix(f"{__package__}.")
    return {name: f"{prefix}.{module}" for name, module in exercise.commands.items()}


def _chosen(argv: list[str] | None) -> str | None:
    """The verb `argv` runs (its first word that is not an option), or None."""
    if argv is None:
        return None
    words = [a for a in argv if not a.startswith("-")]
    return words[0] if words else None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser for `argv`: every command is listed, and the options of the one `argv`
    runs are added (of every command when `argv` is None)."""
    parser = argparse.ArgumentParser(prog="grader", description=__doc__.split("\n\n")[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    chosen = _chosen(argv)
    commands = dict(VERBS)
    if chosen is None or chosen not in VERBS:
        commands = {**_exercise_commands(), **commands}
    for name, module_name in commands.items():
        if not _available(module_name):
            continue
        if chosen is not None and name != chosen:
            subparsers.add_parser(name)  # named in the usage line; its options are not needed
            continue
        module = importlib.import_module(f"{__package__}.{module_name}")
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(run=module.execute)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    try:
        status = args.run(args)
    except KitError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: checkpoints saved so far are kept; run the same command to resume.",
              file=sys.stderr)
        return 130
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
