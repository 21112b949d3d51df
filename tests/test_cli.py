"""The command line's table (grader/cli.py): every verb listed, and the default exercise's
own commands only where that exercise is installed."""
from __future__ import annotations

import pytest

from grader import cli
from grader.errors import KitError


def test_every_verb_and_the_exercise_commands_are_listed(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser(["--help"]).parse_args(["--help"])
    usage = capsys.readouterr().out
    assert all(verb in usage for verb in cli.VERBS)
    assert "train" in usage and "convert-weights" in usage


def test_a_package_without_the_default_exercise_still_lists_its_verbs(monkeypatch, capsys):
    """A student package built for another exercise carries no transfer_learning: the
    usage line lists what it has, with no traceback."""
    def absent(name, *args, **kwargs):
        raise KitError(f"no exercise {name} here")

    monkeypatch.setattr("grader.exercise.load", absent)
    for argv in (["--help"], ["chekc"]):
        with pytest.raises(SystemExit):
            cli.build_parser(argv).parse_args(argv)
        printed = capsys.readouterr()
        text = printed.out + printed.err
        assert "similarity" in text and "convert-weights" not in text, text
