"""Options that more than one command reads, declared and parsed once.

`DataOptions` is the command line's say over what a rubric grades on: `--data KIND [PATH]`,
`--weights FILE` and `--no-verify`. It is read once, where the command line (or the
notebook's `check()`) is read, and passed whole; the exercise says which kinds it knows
(`Exercise.check_options`) and applies it over the rubric's own setting.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

from .errors import KitError


@dataclass(frozen=True)
class DataOptions:
    """What to grade on instead of the rubric's own data and weights (None: the rubric's)."""
    kind: str | None = None
    """the data's kind (`--data KIND`), as the exercise names them"""
    path: str | None = None
    """the data's archive or folder (`--data KIND PATH`)"""
    weights: str | None = None
    """a weights file (`--weights`): the rubric's checksum then does not apply"""
    no_verify: bool = False
    """accept data whose checksum is not the one expected (`--no-verify`)"""

    @classmethod
    def parse(cls, data: list[str] | tuple[str, ...] | str | None = None,
              weights: str | None = None, no_verify: bool = False) -> DataOptions:
        """From `--data`'s values (a kind and at most one path; a string is one kind)."""
        if isinstance(data, str):
            data = data.split()
        if not data:
            return cls(None, None, str(weights) if weights else None, bool(no_verify))
        kind, *rest = data
        if len(rest) > 1:
            raise KitError(f"--data: expected a kind and at most one path, found {' '.join(data)}.")
        return cls(kind, rest[0] if rest else None, str(weights) if weights else None,
                   bool(no_verify))

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> DataOptions:
        return cls.parse(args.data, args.weights, args.no_verify)

    def described(self) -> str:
        """The options as they were given, for a message."""
        parts = [f"--data {self.kind}" + (f" {self.path}" if self.path else "")] if self.kind else []
        parts += [f"--weights {self.weights}"] if self.weights else []
        return " ".join(parts + (["--no-verify"] if self.no_verify else [])) or "none"


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """--data, --no-verify and --weights: overrides of what the rubric's exercise grades on
    (for the kit's own, grader/exercises/transfer_learning/data.py)."""
    parser.add_argument("--data", nargs="+", metavar="KIND [PATH]",
                        help="'synthetic' or 'cifar10 [PATH]' (archive or extracted folder; the "
                             "cache, downloaded once, when PATH is left out); default: the "
                             "rubric's data")
    parser.add_argument("--no-verify", action="store_true",
                        help="accept a CIFAR-10 archive whose MD5 is not the rubric's (or the "
                             "official one)")
    parser.add_argument("--weights", help="vgg16-conv-weights.npz; default: the rubric's weights, "
                        "else $GRADER_WEIGHTS, else stand-in weights")


def add_release_arguments(parser: argparse.ArgumentParser) -> None:
    """--released / --unreleased: kept in the gradebook, so a later batch or export that
    says neither keeps what was said last (default at first: not released)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--released", dest="released", action="store_const", const=True,
                       default=None, help="the grades are released: feedback and exports also "
                                          "show after_due_date / after_published items")
    group.add_argument("--unreleased", dest="released", action="store_const", const=False,
                       help="take the release back")


def add_rubric_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rubric", help="rubric YAML (default: the course's rubric, or the one "
                        "installed with the package)")
