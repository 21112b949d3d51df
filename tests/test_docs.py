"""The README and docs/ stay true: every `grader` command they show exists with the options
shown, every file they name is in the repository, and every link resolves."""
from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from grader import cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MOST_LINES = 150
# repository folders whose files the docs may name; anything else (grades/, dist/, the
# cache) is made by a command and need not exist in a clone
TRACKED = ("grader/", "tests/", "benchmarks/", "solutions/", "skeletons/", "rubrics/",
           "docs/", ".ci/")


def _code(text: str) -> list[str]:
    """Every line of code a page shows: fenced blocks' lines and inline spans."""
    found, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            found.append(line)
        else:
            found.extend(re.findall(r"`([^`\n]+)`", line))
    return found


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {o for action in parser._actions for o in action.option_strings}


def _commands(code: str) -> list[tuple[str, list[str]]]:
    """(verb, options) for each `grader VERB ...` in a line of code, up to a pipe, `;`,
    `&&` or a comment."""
    found = []
    for segment in re.split(r"\s(?:\||;|&&|#)\s|\s#", code):
        match = re.search(r"(?:^|[\s/])(?<!from )(?<!import )grader((?:\s+--?[a-z-]+)*)\s+([a-z][a-z-]*)(.*)", segment)
        if not match:
            continue
        try:
            rest = shlex.split(match.group(3), posix=True)
        except ValueError:
            rest = match.group(3).split()
        found.append((match.group(2), [t.split("=")[0] for t in rest if t.startswith("--")]))
    return found


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    heading = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    fenced, anchors = False, set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            anchors.add(_slug(line.lstrip("#")))
    return anchors


def test_readme_is_short():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MOST_LINES, "move detail into docs/ and link to it"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_grader_command_shown_exists(page):
    parser = cli.build_parser()
    verbs = _subparsers(parser)
    wrong = []
    for code in _code(page.read_text(encoding="utf-8")):
        for verb, options in _commands(code):
            if verb not in verbs:
                wrong.append(f"`{code}`: no verb {verb!r}")
                continue
            known = _options(verbs[verb]) | _options(parser)
            wrong += [f"`{code}`: {verb} has no {o}" for o in options if o not in known]
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_file_named_exists(page):
    missing = []
    for code in _code(page.read_text(encoding="utf-8")):
        for token in re.findall(r"(?:^|[\s(=])((?:%s)[\w./<>*-]*)" % "|".join(map(re.escape, TRACKED)),
                                code):
            path = token.rstrip(".,:;)").split("::")[0]
            if not re.search(r"[*<]|[A-Z]{3,}", path) and not (ROOT / path).exists():
                missing.append(f"`{code}` names {path}")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_resolves(page):
    text = page.read_text(encoding="utf-8")
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue  # a web address: not checked offline
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no file {path}")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert not broken, "\n".join(broken)


def test_the_checks_find_what_they_should(tmp_path):
    """The checkers themselves: a wrong verb, option, file and anchor are each caught."""
    assert _commands("grader batch subs/ --out g/ --nope") == [("batch", ["--out", "--nope"])]
    assert _commands("grader --debug check x.py") == [("check", [])]
    assert _commands("from grader import notebook") == []
    assert _commands("pip install -e . && .venv/bin/grader train") == [("train", [])]
    page = tmp_path / "p.md"
    page.write_text("# A title\n\n[ok](#a-title) [bad](#other) [gone](missing.md)\n")
    assert _anchors(page) == {"a-title"}
    with pytest.raises(AssertionError, match="other"):
        test_every_link_resolves(page)
