"""Each submission's code read and compared with every other's: the pairs whose code
scores at or above the threshold, and the pairs that behaved alike joined to them."""
from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import KitError, SubmissionError
from ..paths import MODULE_NAME
from ..plainfile import open_plain
from . import behaviour
from .fingerprints import fingerprint, given_names, tokens

THRESHOLD = 0.45
"""reported at or above this score (see the module docstring and docs/copying.md)"""
MIN_OWN = 150
"""fingerprinted tokens of its own a submission needs to be compared at all"""
MIN_BACKGROUND = 7
"""fewer of the kit's own solutions than this and a notice says idioms are known less well"""
IDIOM = 2
"""a fingerprint that this many of the kit's own independent solutions hold is an idiom:
the lines of TensorFlow honest work converges on"""
COMMON = 10
"""a fingerprint held by more than this many submissions of the class is an idiom too
(MOSS's -m, with its default): a group of more than COMMON copies of one source needs
--common raised to show"""


@dataclass
class Code:
    """One submission's code as compared."""
    student: str
    text: str
    note: str = ""
    """how it was read, when not as plain Python"""
    own: int = 0
    """fingerprinted characters left after the given code is removed"""
    fingerprint: object = None


@dataclass
class Pair:
    a: str
    b: str
    score: float
    """the code's score (0 when the two share no fingerprint)"""
    shares: tuple[float, float]
    slices: tuple = ()
    behaviour: object = None
    """behaviour.Alike when the two behaved alike when graded"""
    code_reported: bool = True
    """the code's score reaches the threshold"""

    @property
    def strength(self) -> str:
        """One advisory strength: both kinds of evidence, or one."""
        if self.behaviour is not None and self.code_reported:
            return "strong: code and behaviour"
        return "behaviour" if self.behaviour is not None else "code"

    def evidence(self) -> str:
        """What `grader flags` and the review page say of the pair, after the other's name."""
        if self.behaviour is None:
            return f"{self.score:.2f}"
        alike = (f"ran alike in all {len(self.behaviour.agreed)} behaviours both kept, "
                 f"their own in {', '.join(self.behaviour.rare)}")
        if self.code_reported:
            return f"{self.score:.2f}, and {alike} (strong)"
        return f"{alike}; code {self.score:.2f}"

    def label(self) -> str:
        return f"{self.a} and {self.b}: {self.evidence()}"


@dataclass
class Result:
    codes: list[Code]
    pairs: list[Pair]
    """at or above the threshold, highest first"""
    groups: list[list[str]]
    threshold: float
    compared: int = 0
    seconds: float = 0.0
    too_little: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)
    scores: dict = field(default_factory=dict)
    """{(a, b): code score} of every compared pair that shares a fingerprint (a < b)"""
    behaviours: dict = field(default_factory=dict)
    """{student: {behaviour: its values}} as read from the gradebook (behaviour.read)"""
    losses: dict = field(default_factory=dict)
    """{student: the losses its run logged, in step order} for the reported pairs' plots"""

    def nearest(self) -> list[tuple[str, str, float, float]]:
        """(student, its nearest partner by code, their score, how far it stands above the
        student's next score), the farthest first: the relative view of the code scores."""
        by: dict[str, list[tuple[float, str]]] = {}
        for (a, b), score in self.scores.items():
            by.setdefault(a, []).append((score, b))
            by.setdefault(b, []).append((score, a))
        rows = []
        for student, found in by.items():
            found.sort(reverse=True)
            second = found[1][0] if len(found) > 1 else 0.0
            rows.append((student, found[0][1], found[0][0], found[0][0] - second))
        return sorted(rows, key=lambda r: (-r[3], r[0]))


_JSON_LINE = re.compile(r'^\s*("(?:[^"\\]|\\.)*")\s*,?\s*$')


def _recovered_lines(raw: str) -> str:
    """From a notebook file that does not load, the lines that are JSON strings (its cells'
    source lines, one per string in nbformat's layout), decoded."""
    lines = []
    for line in raw.splitlines():
        match = _JSON_LINE.match(line)
        if match:
            try:
                lines.append(json.loads(match.group(1)).rstrip("\n"))
            except ValueError:
                continue
    return "\n".join(lines)


MAX_TEXT = 1 << 20
"""at most this much of a submission's code is compared (an honest solution is about
10 kB; reading costs about 3 s a MB)"""


def _raw_text(path: Path, module_name: str = MODULE_NAME) -> tuple[str, str]:
    """(text, name) of what a submission that could not be read holds: the file itself,
    or in a zip its module (read from the archive, nothing extracted)."""
    if path.suffix == ".zip":
        import zipfile

        try:
            with os.fdopen(open_plain(path), "rb") as raw, zipfile.ZipFile(raw) as archive:
                names = [n for n in archive.namelist() if n.endswith((".py", ".ipynb"))
                         and "__MACOSX" not in n]
                named = [n for n in names if Path(n).name in (f"{module_name}.py",
                                                              f"{module_name}.ipynb")]
                if not (named or len(names) == 1):
                    return "", ""
                with archive.open((named or names)[0]) as member:
                    return member.read(MAX_TEXT).decode("utf-8", "replace"), (named or names)[0]
        except Exception:  # noqa: BLE001 - a member name that is not UTF-8, a bad header, ...
            return "", ""
    try:
        if path.is_file():
            with os.fdopen(open_plain(path), "rb") as handle:  # no link followed
                return handle.read(MAX_TEXT).decode("utf-8", "replace"), path.name
    except (OSError, SubmissionError):
        pass
    return "", ""


def read_code(student: str, path: Path, exercise=None) -> Code:
    """The code to compare for one submission, never skipped: what the grader keeps, else
    what can be recovered as text (and a note saying so). At most MAX_TEXT of it.
    `exercise`: the one the batch graded (default: the course folder's). Never raises: a
    submission nothing can be read from (a zip whose member names are not UTF-8, say) is
    empty code with a note saying why, so it is listed as not compared and the rest of the
    class still is."""
    try:
        return _read_code(student, Path(path), exercise)
    except Exception as exc:  # noqa: BLE001 - one submission's failure is its own
        name = Path(path).name if isinstance(path, (str, Path)) else repr(path)
        return Code(student, "", f"{name}: could not be read ({type(exc).__name__}); not compared.")


def _read_code(student: str, path: Path, exercise=None) -> Code:
    from ..submission import graded_code

    try:
        if path.is_file() and path.suffix == ".py" and path.stat().st_size > MAX_TEXT:
            raise SubmissionError(f"{path.name}: longer than {MAX_TEXT >> 20} MB.")
        text, note = graded_code(path, exercise), ""
    except Exception as exc:  # noqa: BLE001 - a submission's file: any failure is its own
        why = str(exc) if isinstance(exc, SubmissionError) else \
            f"{path.name}: could not be read as a submission ({type(exc).__name__})."
        return recovered_code(student, path, why, exercise)
    return _bounded(student, text, note)


def recovered_code(student: str, path: Path, why: str, exercise=None) -> Code:
    """The code of a submission that could not be read as one (`why`), recovered as text
    where it can be: the file itself, or in a zip its module read from the archive."""
    raw, name = _raw_text(Path(path), exercise.module_name if exercise else MODULE_NAME)
    if not raw:
        return Code(student, "", f"{why} Nothing in it could be read as code.")
    if name.endswith(".ipynb"):
        return _bounded(student, _recovered_lines(raw), f"{why} Read as text: the code lines "
                                                        f"recovered from {Path(name).name}.")
    return _bounded(student, raw, f"{why} Read as text: {Path(name).name}.")


def _bounded(student: str, text: str, note: str) -> Code:
    text = text.removeprefix("\ufeff")
    if len(text) > MAX_TEXT:
        text = text[:MAX_TEXT]
        note = (note + " " if note else "") + f"Longer than {MAX_TEXT >> 20} MB: its first MB compared."
    return Code(student, text, note)


def given_code(paths: list[Path] | None = None) -> list[str]:
    """The code every student is given: the skeleton module, the skeleton notebook's code
    cells, and the code blocks of its text (the handout). Default: the course's skeletons."""
    if paths is None:
        from ..paths import course_root

        folder = course_root() / "skeletons"
        paths = sorted(p for p in folder.glob("*") if p.suffix in (".py", ".ipynb"))
        if not paths:
            raise KitError(f"{folder}: expected the skeletons the students were given (run "
                           "`grader generate`), found none; or pass --given FILE.")
    pieces = []
    for path in map(Path, paths):
        if not path.is_file():
            raise KitError(f"{path}: expected a file of given code (.py, .ipynb or text), "
                           "found none.")
        if path.suffix == ".ipynb":
            import nbformat

            try:
                notebook = nbformat.read(str(path), as_version=4)
            except Exception as exc:  # noqa: BLE001 - nbformat raises several kinds
                raise KitError(f"{path}: expected a notebook of given code, could not read it "
                               f"({type(exc).__name__}).") from None
            for cell in notebook.cells:
                if cell.cell_type == "code":
                    pieces.append(cell.source)
                else:
                    pieces += re.findall(r"```(?:python|py)?\n(.*?)```", cell.source, re.S)
        elif path.suffix == ".py":
            pieces.append(path.read_text(encoding="utf-8"))
        else:  # a handout as text or markdown: its code blocks
            pieces += re.findall(r"```(?:python|py)?\n(.*?)```", path.read_text(encoding="utf-8"), re.S)
    return pieces


def background_code() -> list[str]:
    """The kit's own correct solutions, written independently (the reference,
    tests/corpus/correct and tests/corpus/notebooks): what they share with each other is
    what honest work converges on. Raises KitError outside a course folder."""
    from ..corpus import correct_solutions, student_notebooks

    return [read_code(name, path).text
            for name, path in {**correct_solutions(), **student_notebooks()}.items()]


BEHAVIOUR_BACKGROUND = "behaviour.json"
"""in the corpus folder: what the kit's own solutions did when graded in the shipped setting
(benchmarks/bench_behaviour.py --write-background writes it, tests/test_corpus.py keeps it
true)"""


def background_behaviour() -> dict[str, dict[str, dict]]:
    """{solution: its behaviour} of the kit's own correct solutions; empty outside a course
    folder or when the file is not of the shape written."""
    from ..corpus import default_corpus

    try:
        path = Path(default_corpus()) / BEHAVIOUR_BACKGROUND
        found = json.loads(path.read_text(encoding="utf-8"))["solutions"]
    except (KitError, OSError, ValueError, KeyError, TypeError):
        return {}
    if not isinstance(found, dict):
        return {}
    return {name: {key: spec for key, spec in kept.items() if behaviour._valid(spec)}
            for name, kept in found.items() if isinstance(kept, dict)}


def compare(codes: list[Code], given: list[str], threshold: float = THRESHOLD,
            min_own: int = MIN_OWN, keep_below: bool = False, common_above: int = COMMON,
            background: list[str] = (), idiom_at: int = IDIOM) -> Result:
    """Fingerprint every submission without the given code and compare every pair that
    shares a fingerprint (the others score 0). Fingerprints that `idiom_at` or more of the
    `background` solutions hold, or more than `common_above` submissions, are idioms and
    count for no one. `keep_below`: return every compared pair, not only those at or
    above `threshold` (for measuring)."""
    from copydetect import compare_files
    from copydetect.utils import get_token_coverage

    start = time.perf_counter()
    names = given_names(given)
    boilerplate: set = set()
    for piece in given:
        boilerplate |= fingerprint(tokens(piece, names)[0]).hashes
    held: dict[int, int] = {}
    for text in background:
        for value in fingerprint(tokens(text, names)[0], boilerplate).hashes:
            held[value] = held.get(value, 0) + 1
    idioms = {h for h, n in held.items() if n >= idiom_at}
    for code in codes:
        try:
            toks, note = tokens(code.text, names)
            code.note = code.note or note
            code.fingerprint = fingerprint(toks, boilerplate)
        except Exception as exc:  # noqa: BLE001 - one submission's code, not the class's
            code.note = (code.note + " " if code.note else "") + \
                f"Its code could not be compared ({type(exc).__name__}); not compared."
            code.fingerprint = fingerprint([], boilerplate)
    by_hash: dict[int, list[int]] = {}
    for index, code in enumerate(codes):
        for value in code.fingerprint.hashes:
            by_hash.setdefault(value, []).append(index)
    common = idioms | {h for h, holders in by_hash.items() if len(holders) > common_above}
    for code in codes:  # what is left is the submission's own code
        f = code.fingerprint
        f.hash_idx = {h: i for h, i in f.hash_idx.items() if h not in common}
        f.hashes = set(f.hash_idx)
        f.token_coverage = code.own = int(get_token_coverage(f.hash_idx, f.k, len(f.filtered_code)))
    able = [c for c in codes if c.own >= min_own]
    by_hash = {}
    for index, code in enumerate(able):
        for value in code.fingerprint.hashes:
            by_hash.setdefault(value, []).append(index)
    candidates = set()
    for holders in by_hash.values():
        for i, first in enumerate(holders):
            for second in holders[i + 1:]:
                candidates.add((first, second))
    pairs, scores = [], {}
    for i, j in sorted(candidates):
        _, shares, slices = compare_files(able[i].fingerprint, able[j].fingerprint)
        score = float(max(shares))
        scores[tuple(sorted((able[i].student, able[j].student)))] = score
        if keep_below or score >= threshold:
            spans = tuple(_char_spans(s, c.fingerprint.spans)
                          for s, c in zip(slices, (able[i], able[j])))
            pairs.append(Pair(able[i].student, able[j].student, score,
                              (float(shares[0]), float(shares[1])), spans))
    pairs.sort(key=lambda p: (-p.score, p.a, p.b))
    return Result(codes, pairs, _groups([p for p in pairs if p.score >= threshold]), threshold,
                  compared=len(able) * (len(able) - 1) // 2, seconds=time.perf_counter() - start,
                  too_little=[c.student for c in codes if c.own < min_own], scores=scores)


def with_behaviour(result: Result, found) -> Result:
    """`result` with the pairs that behaved alike (behaviour.Comparison) joined to it: a
    pair reported by its code gains the behaviour evidence, one that behaved alike under
    the code's threshold is reported too, with its code shown as compared. Groups are
    formed again from all reported pairs; groups too common to count are named."""
    from copydetect import compare_files

    by_pair = {frozenset((p.a, p.b)): p for p in result.pairs}
    codes = {c.student: c for c in result.codes}
    for alike in found.alike:
        pair = by_pair.get(frozenset((alike.a, alike.b)))
        if pair is None:
            first, second = codes.get(alike.a), codes.get(alike.b)
            shares, slices = (0.0, 0.0), ((), ())
            if first is not None and second is not None and first.fingerprint is not None \
                    and second.fingerprint is not None and first.fingerprint.hash_idx \
                    and second.fingerprint.hash_idx:
                _, found_shares, found_slices = compare_files(first.fingerprint, second.fingerprint)
                shares = (float(found_shares[0]), float(found_shares[1]))
                slices = tuple(_char_spans(s, c.fingerprint.spans)
                               for s, c in zip(found_slices, (first, second)))
            pair = Pair(alike.a, alike.b, max(shares), shares, slices, code_reported=False)
            by_pair[frozenset((alike.a, alike.b))] = pair
            result.pairs.append(pair)
        pair.behaviour = alike
    result.pairs = [p for p in result.pairs if p.code_reported or p.behaviour is not None]
    result.pairs.sort(key=lambda p: (p.behaviour is None or not p.code_reported,
                                     p.behaviour is None, -p.score, p.a, p.b))
    result.groups = _groups(result.pairs)
    for members in found.idioms:
        result.notices.append(
            f"{', '.join(members[:6])}{', ...' if len(members) > 6 else ''} ran alike in every "
            f"behaviour both kept, but in fewer than {behaviour.RARE_CHECKS} checks in a way of "
            "their own (the rest as the kit's own solutions, or more than "
            f"{behaviour.COMMON} submissions, ran): what honest work can share, not reported; "
            "if their code is close too, look at them together")
    return result


def _char_spans(slices, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Token ranges [start, end) shared with the other submission, as character ranges."""
    if len(slices) != 2 or not len(slices[0]):
        return []
    return [(spans[int(a)][0], spans[min(int(b), len(spans)) - 1][1])
            for a, b in zip(slices[0], slices[1])]


def _groups(pairs: list[Pair]) -> list[list[str]]:
    """Three or more submissions joined by reported pairs."""
    return [members for members in behaviour.groups((p.a, p.b) for p in pairs) if len(members) >= 3]


# --- the page ---------------------------------------------------------------------------
