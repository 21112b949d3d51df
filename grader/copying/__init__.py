"""Which submissions of a batch share code beyond what the exercise gives them, or ran
alike in ways of their own, for a person to judge (`grader similarity`, and the end of
`grader batch`).

The package: `fingerprints` (tokens and winnowing), `code` (reading and comparing code),
`behaviour` (comparing what the runs kept), `page` (the HTML page); here, `run` over a
gradebook.

Every pair of submissions in the batch's gradebook is compared on the code the grader
keeps (a notebook's kept statements as written, see `submission.graded_code`), by token
fingerprinting with winnowing (Schleimer, Wilkerson and Aiken, 2003; the method of
MOSS). The winnowing, the fingerprint matching and the mapping of shared fingerprints
back to regions come from copydetect (PyPI) rather than being written here: it is
maintained, built on numpy and Pygments (it also brings jinja2, tqdm and matplotlib,
which it imports), and takes fingerprints to discard.

copydetect's own tokenizer replaces every identifier by one letter, library names
included. On this exercise that makes honest solutions look alike (`V.V.V.V(V, V=V)` is
half of any TensorFlow program): independent solutions scored up to 0.48 and disguised
copies from 0.23. So the tokens are ours (`tokens`): names the code binds (variables,
functions, classes, parameters, attributes it assigns) become one symbol, so renaming
changes nothing, while library names are spelled out through the imports
(`tf.nn.conv2d` and `from tensorflow import nn; nn.conv2d` both read
`tensorflow.nn.conv2d`), since which library calls a solution makes, in which order, is
where independent work differs. Comments, layout, import statements and the contents of
strings are dropped; the order of functions and cells does not matter (fingerprints are
compared as sets: only the few that span a seam change). A rewritten loop or a
restructured expression hides what it rewrote, and only that.

Three kinds of code never count as shared. The given code (the skeletons, module and
notebook, and the code blocks of the handout) is fingerprinted the same way and removed
from every submission. Idioms are ignored: code that two or more of the kit's own
correct solutions hold (written independently, tests/corpus) is what honest work
converges on, whatever the class's size; and so is code held by more than COMMON
submissions of the class (MOSS's -m). A submission with too little code of its own
(empty, or the untouched skeleton) is listed and not compared, so two of them are never
"similar". One that does not parse is read as text (its names found with the failing
lines left out) and says so; a notebook that does not load is read as the code lines
recovered from its file, a zip that cannot be unpacked safely as the module inside it
(read, not extracted), and each says so.

A pair's score is the larger of its two shares, the fraction of one submission's own
code found in the other (so padding a copy with dead code does not hide it). Pairs at
or above the threshold are reported, and groups of three or more joined by such pairs,
with the shared regions highlighted side by side (`similarity.html`); each member gets
an advisory entry that `grader flags` lists ("similar to NAME, 0.83"). It never changes
a score. K, COMMON and THRESHOLD come from measurements: disguised copies of correct
solutions against independent correct solutions (tests/corpus/copies,
`benchmarks/bench_similarity.py`, docs/copying.md).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ..errors import KitError
from ..fsutil import atomic_path
from ..names import shown
from ..paths import MODULE_NAME
from ..submission import entries, refusal
from . import behaviour
from .code import (COMMON, IDIOM, MIN_BACKGROUND, MIN_OWN, THRESHOLD, Code, Pair, Result,
                   background_behaviour, background_code, compare, given_code, read_code,
                   with_behaviour)
from .fingerprints import GUARANTEE, K, fingerprint, tokens
from .page import render

__all__ = ["COMMON", "GUARANTEE", "IDIOM", "K", "MIN_BACKGROUND", "MIN_OWN", "THRESHOLD",
           "Code", "Pair", "Result", "background_behaviour", "background_code", "compare",
           "fingerprint", "given_code", "read_code", "render", "run", "summary", "tokens",
           "with_behaviour"]


def _logged_losses(book, student: str) -> list[float]:
    """The loss curve a submission's run logged, as an item's details keep it for the
    review page ({"curves": {"loss": [[step, value], ...]}}); empty when none did."""
    for item in book.items(student):
        details = item.get("details")
        curves = details.get("curves") if isinstance(details, dict) else None
        points = curves.get("loss") if isinstance(curves, dict) else None
        if isinstance(points, list):
            return [float(p[1]) for p in points if isinstance(p, list) and len(p) == 2
                    and isinstance(p[1], (int, float)) and not isinstance(p[1], bool)
                    and math.isfinite(p[1]) and abs(p[1]) < behaviour.LARGEST]
    return []


def graded_folder(book) -> Path | None:
    """The submissions folder the batch last graded (kept as its bytes, in hex: a folder's
    name need not be UTF-8), or None for a gradebook from before it was kept."""
    import os

    kept = book.get_meta("submissions_folder_hex")
    return Path(os.fsdecode(bytes.fromhex(kept))) if kept else None


def _entries(folder: Path | None) -> dict | None:
    """{id: submission.Entry} of `folder` (None when there is no such folder)."""
    if folder is None or not folder.is_dir():
        return None
    return {entry.student: entry for entry in entries(folder)}


def run(out: Path, threshold: float = THRESHOLD, given: list[str] | None = None,
        submissions: str | None = None, common: int = COMMON) -> Result:
    """Compare a batch's submissions, record the advisory entries in its gradebook and
    write `similarity.html` beside it."""
    from ..records.gradebook import Gradebook

    out = Path(out)
    if not (out / "gradebook.sqlite").is_file():
        raise KitError(f"{shown(out)}: expected the output folder of `grader batch` (with "
                       "gradebook.sqlite); found none. Pass the folder given to --out.")
    if not 0 < threshold <= 1:
        raise KitError(f"--threshold: expected a share between 0 and 1, found {threshold}.")
    if common < 2:
        raise KitError(f"--common: expected at least 2 (a pair must count), found {common}.")
    from ..exercise import load

    book = Gradebook(out / "gradebook.sqlite")
    try:
        graded = json.loads(book.get_meta("exercise") or "null")
        exercise = load(graded["name"], graded["search_path"]) if graded else load()
        own = exercise.name == MODULE_NAME  # the course folder's skeletons and solutions are its
        notices = []
        if own or given:
            pieces = given_code([Path(p) for p in given] if given else None)
        else:
            pieces = []
            notices.append(f"the batch graded {exercise.name}, not the course folder's exercise: "
                           "pass its skeletons with --given, or code every student was given "
                           "counts as their own")
        try:
            background = background_code() if own else []
        except KitError:
            background = []
        if len(background) < MIN_BACKGROUND:
            notices.append(f"{len(background)} of the kit's own correct solutions were found here "
                           f"(tests/corpus; measured with {MIN_BACKGROUND} or more), so the lines "
                           "honest solutions share are recognised mostly within this class: honest "
                           "pairs can score higher than the measurements in docs/copying.md")
        codes = []
        found = _entries(Path(submissions) if submissions else graded_folder(book))
        stored = {} if submissions else book.code()  # what grading read, kept as it read it
        for row in book.submissions():
            if found is not None:  # the folder as the batch read it: the same ids and refusals
                entry = found.get(row["student"])
                if entry is None:
                    codes.append(Code(row["student"], "", "no longer in the submissions folder; "
                                                          "not compared."))
                elif entry.problem:  # a link, a pipe, a file over its bound: never read here either
                    codes.append(Code(row["student"], "", f"{entry.problem} Not compared."))
                elif row["student"] in stored:
                    codes.append(Code(row["student"], *stored[row["student"]]))
                else:  # a gradebook from before the code was kept
                    codes.append(read_code(row["student"], entry.path, exercise))
                continue
            if row["student"] in stored:  # the folder is gone: the code grading kept
                codes.append(Code(row["student"], *stored[row["student"]]))
                continue
            path = Path(submissions) / Path(row["source"]).name if submissions else Path(row["source"])
            try:
                gone = not os.path.lexists(path)
                refused = "" if gone else refusal(path)  # a link, a pipe, too large: not read
            except (OSError, ValueError):  # a name too long, a null byte: read_code says so
                gone, refused = False, ""
            if refused:
                codes.append(Code(row["student"], "", f"{refused} Not compared."))
                continue
            if gone:
                raise KitError(f"{shown(path)}: the submission {shown(repr(row['student']))} was "
                               "graded from there and is gone; pass --submissions FOLDER with the "
                               "graded folder.")
            codes.append(read_code(row["student"], path, exercise))
        result = compare(codes, pieces, threshold, common_above=common, background=background)
        result.notices = notices
        kept = behaviour.read(book)
        known = background_behaviour() if own else {}
        found = behaviour.compare(kept, background=known)
        result = with_behaviour(result, found)
        result.behaviours = kept
        if not kept:
            result.notices.append("no submission's grading kept what it did (a gradebook from "
                                  "before behaviour was kept: grade again with --regrade), so "
                                  "only code is compared")
        elif not found.background_met:
            result.notices.append(
                "none of the kit's own solutions behaved as any submission here in any check ("
                + ("they were graded in another setting: other data, weights or rubric"
                   if known else "their behaviour was not found: tests/corpus/behaviour.json")
                + "), so the behaviour honest work converges on is known from this class alone: "
                "two honest submissions that both follow the skeleton to the letter can be "
                "reported as behaving alike")
        result.losses = {name: _logged_losses(book, name)
                         for name in {n for p in result.pairs if p.behaviour for n in (p.a, p.b)}}
        book.set_similar([(p.a, p.b, p.score, p.evidence()) for p in result.pairs])
    finally:
        book.close()
    with atomic_path(out / "similarity.html") as tmp:
        tmp.write_text(render(result, str(out.resolve())), encoding="utf-8")
    return result


def summary(result: Result, out: Path) -> str:
    lines = [f"similarity: {len(result.pairs)} pair(s) reported (code at {result.threshold:.2f} or "
             "more, or behaviour alike), "
             f"{len(result.groups)} group(s), among {len(result.codes)} submissions "
             f"({result.compared} pairs in {result.seconds:.1f} s); {shown(out / 'similarity.html')}"]
    alike = sum(p.behaviour is not None for p in result.pairs)
    lines.append(f"  behaviour: {alike} of these reported for running alike, in ways of their own "
                 f"({len(result.behaviours)} submissions kept what they did when graded)")
    lines += [f"  {shown(p.label())}" for p in result.pairs[:10]]
    if len(result.pairs) > 10:
        lines.append(f"  ... and {len(result.pairs) - 10} more in the page")
    lines += [f"  group: {shown(', '.join(g))}" for g in result.groups]
    if result.too_little:
        lines.append("  not compared (too little code of their own): "
                     + shown(", ".join(result.too_little)))
    lines += [f"  {shown(c.student)}: {shown(c.note)}" for c in result.codes if c.note]
    lines += [f"  notice: {shown(n)}" for n in result.notices]
    return "\n".join(lines)
