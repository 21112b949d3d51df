"""`grader similarity OUT`: which submissions of a batch share code beyond what the
exercise gives them, for a person to judge.

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

import ast
import bisect
import functools
import hashlib
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import behaviour
from ..errors import KitError, SubmissionError
from ..fsutil import atomic_path
from ..names import shown, shown_text
from ..paths import MODULE_NAME
from ..submission import entries, refusal

K = 12
"""shared runs shorter than this many tokens never count (copydetect's noise threshold)"""
GUARANTEE = 17
"""shared runs at least this long are always found (the winnowing window is
GUARANTEE - K + 1)."""
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


@functools.lru_cache(maxsize=1 << 16)
def _token_id(token: str) -> int:
    """A stable 64-bit number per normalised token: the same in every process and run,
    whatever order the submissions come in (Python's own str hash is salted per process,
    which would make winnowing pick other fingerprints in every run)."""
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")


_LINE_BREAK = re.compile(r"\r\n|\r|\n")
"""Python's own line breaks (str.splitlines also breaks at form feeds and other
separators Python reads as spaces, which would shift every line number after them)"""
_PARSE_ERRORS = (SyntaxError, ValueError, RecursionError, MemoryError)
"""what ast.parse raises on hostile input (nesting too deep, null bytes, ...)"""


@dataclass
class Names:
    """What a piece of code binds and imports, for normalising its tokens."""
    bound: set = field(default_factory=set)
    """names it binds: variables, functions, classes, parameters, caught exceptions"""
    attributes: set = field(default_factory=set)
    """attribute names it defines: `self.X = ...`, methods of its classes"""
    aliases: dict = field(default_factory=dict)
    """name -> the library path it stands for (`tf` -> `tensorflow`)"""
    free: set = field(default_factory=set)
    """names it reads and binds nowhere (neither a builtin nor an import)"""
    dropped: list = field(default_factory=list)
    """(start, end) character ranges left out: import statements, and string statements
    (docstrings, strings used as comments)"""


def _library_path(node, aliases: dict) -> str | None:
    """The library path an expression names: an alias chain (`tf.keras`), or
    `__import__("m")` / `importlib.import_module("m")` with a literal module name."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name) and node.id in aliases:
        return ".".join([aliases[node.id], *reversed(parts)])
    if isinstance(node, ast.Call) and not parts and len(node.args) == 1 \
            and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
        called, name = node.func, node.args[0].value
        if isinstance(called, ast.Name) and called.id == "__import__":
            return name.split(".")[0]
        if isinstance(called, ast.Attribute) and called.attr == "import_module":
            return name
    return None


def _parse(text: str, note: list[str]) -> list[tuple[ast.AST, int]]:
    """The code's syntax trees with the line each starts at. Code that does not parse is
    read block by block (a block starts at each unindented line), and what does not parse
    of it is left out (`note` says so)."""
    try:
        return [(ast.parse(text), 0)]
    except _PARSE_ERRORS as exc:
        where = f"line {exc.lineno}: {exc.msg}" if isinstance(exc, SyntaxError) else type(exc).__name__
        note.append(f"does not parse as Python ({where}); read as text")
    lines = _LINE_BREAK.split(text)
    starts = [k for k, line in enumerate(lines)
              if line[:1] not in ("", " ", "\t", "#", ")", "]", "}")]
    trees = []
    for first, end in zip(starts, starts[1:] + [len(lines)]):
        try:
            trees.append((ast.parse("\n".join(lines[first:end])), first))
        except _PARSE_ERRORS:
            continue
    return trees


def _byte_starts(line: str):
    """Where each character of `line` starts in its UTF-8 bytes (and where the line ends),
    for turning ast's byte columns into character columns; when the line is ASCII (a byte is
    a character), its length. Built once per line, in time linear in its length: converting
    each column by encoding the line again made a long line with many statements on it
    (`"é"; "é"; ...`, 300 kB) take minutes."""
    import numpy as np

    if line.isascii():
        return len(line)
    points = np.frombuffer(line.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    widths = 1 + (points >= 0x80).astype(np.int64) + (points >= 0x800) + (points >= 0x10000)
    starts = np.zeros(len(points) + 1, dtype=np.int64)
    np.cumsum(widths, out=starts[1:])
    return starts


def _char_index(byte_starts, col: int) -> int:
    """The character at UTF-8 byte `col` of a line (`_byte_starts`); a column inside a
    character counts as that character's end, one past the line as its end."""
    if isinstance(byte_starts, int):
        return max(0, min(col, byte_starts))
    import numpy as np

    return max(0, min(int(np.searchsorted(byte_starts, col, side="left")), len(byte_starts) - 1))


def _names(text: str, note: list[str]) -> Names:
    import builtins

    found = Names()
    lines = _LINE_BREAK.split(text)
    starts = [0]
    for line, brk in zip(lines, _LINE_BREAK.findall(text) + [""]):
        starts.append(starts[-1] + len(line) + len(brk))

    columns: dict[int, object] = {}  # row -> its byte-to-character table, built once

    def offset(row: int, col: int) -> int:  # ast columns count UTF-8 bytes
        if row not in columns:
            columns[row] = _byte_starts(lines[row - 1] if 0 < row <= len(lines) else "")
        return starts[min(row, len(starts)) - 1] + _char_index(columns[row], col)

    loads: set[str] = set()
    for tree, shift in _parse(text, note):
        assigned: dict[str, int] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                if isinstance(node.ctx, ast.Load):
                    loads.add(node.id)
                else:
                    found.bound.add(node.id)
                    assigned[node.id] = assigned.get(node.id, 0) + 1
            elif isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Load):
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    found.attributes.add(node.attr)
            elif isinstance(node, ast.ClassDef):
                found.bound.add(node.name)
                found.attributes.update(n.name for n in node.body
                                        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                found.bound.add(node.name)
            elif isinstance(node, ast.arg):
                found.bound.add(node.arg)
            elif isinstance(node, (ast.Global, ast.Nonlocal)):
                found.bound.update(node.names)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                found.bound.add(node.name)
            elif isinstance(node, (ast.MatchAs, ast.MatchStar)) and node.name:
                found.bound.add(node.name)
            elif isinstance(node, ast.MatchMapping) and node.rest:
                found.bound.add(node.rest)
            if isinstance(node, (ast.Import, ast.ImportFrom)) or (
                    isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                    and isinstance(node.value.value, str)):
                found.dropped.append((offset(node.lineno + shift, node.col_offset),
                                      offset(node.end_lineno + shift, node.end_col_offset)))
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                base = (node.module or "") if isinstance(node, ast.ImportFrom) else ""
                for alias in node.names:
                    if isinstance(node, ast.Import):
                        found.aliases[alias.asname or alias.name.split(".")[0]] = \
                            alias.name if alias.asname else alias.name.split(".")[0]
                    elif alias.name != "*":
                        found.aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
        # `keras = tf.keras`, `tf = __import__("tensorflow")`: an alias by another spelling,
        # when it is the name's only binding
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                    and isinstance(node.targets[0], ast.Name) and assigned.get(node.targets[0].id) == 1:
                path = _library_path(node.value, found.aliases)
                if path:
                    found.aliases[node.targets[0].id] = path
    found.bound -= set(found.aliases)
    found.free = loads - found.bound - set(found.aliases) - set(dir(builtins))
    return found


def _api(path: str) -> str:
    """One spelling for a library name however it was imported (tf.keras is keras)."""
    for old, new in (("tensorflow.keras.", "keras."), ("tensorflow.compat.v2.", "tensorflow.")):
        if path.startswith(old):
            return new + path[len(old):]
    return "keras" if path == "tensorflow.keras" else path


def given_names(pieces: list[str]) -> set[str]:
    """The names the given code binds, and those it reads and leaves to the student to
    bind (the skeleton's `step`, say): in a submission they are names like its own."""
    names: set[str] = set()
    for piece in pieces:
        found = _names(piece, [])
        names |= found.bound | found.free
    return names


def tokens(text: str, given: set[str] = frozenset()) -> tuple[list[tuple[str, int, int]], str]:
    """The code as normalised tokens (text, start, end) and a note when it does not parse.

    Names the code binds (variables, functions, classes, parameters, attributes it
    assigns to self), and those of the given code (`given_names`), become one symbol `V`:
    renaming them changes nothing. A library name is spelled out through the imports
    (`tf.nn.conv2d`, `from tensorflow import nn; nn.conv2d`, `nn = tf.nn; nn.conv2d` all
    read `tensorflow.nn.conv2d`), so the library calls a solution makes stay part of what
    is compared: only in them do independent solutions differ; a name read and bound
    nowhere (after a star import, say) is read as a library name too. Strings become `S`;
    comments, layout, import statements, string statements, `pass`, `;` and a comma
    before a closing bracket are dropped."""
    from pygments.lexers import PythonLexer
    from pygments.token import Comment, Keyword, Name, Operator, Punctuation, String, Text

    note: list[str] = []
    found = _names(text, note)
    bound = found.bound | given
    attributes = found.attributes | given
    dropped = sorted(found.dropped)
    drop_starts = [a for a, _ in dropped]

    def is_dropped(pos: int) -> bool:
        k = bisect.bisect_right(drop_starts, pos) - 1
        return k >= 0 and pos < dropped[k][1]

    raw = [(pos, kind, value) for pos, kind, value in PythonLexer().get_tokens_unprocessed(text)
           if kind not in Text and kind not in Comment and value.strip() and not is_dropped(pos)]
    out: list[tuple[str, int, int]] = []
    i = 0
    while i < len(raw):
        pos, kind, value = raw[i]
        if kind in String:
            j = i
            while j + 1 < len(raw) and raw[j + 1][1] in String:
                j += 1
            out.append(("S", pos, raw[j][0] + len(raw[j][2])))
            i = j + 1
            continue
        if kind not in Name:
            trailing_comma = value == "," and i + 1 < len(raw) and raw[i + 1][2] in (")", "]", "}")
            if not (kind in Punctuation and (trailing_comma or value == ";")) \
                    and not (kind in Keyword and value == "pass"):
                out.append((value, pos, pos + len(value)))
            i += 1
            continue
        if kind in Name.Decorator:
            out.append(("@", pos, pos + 1))
            pos, value = pos + 1, value[1:].strip()
        parts = [(value, pos)]
        j = i + 1
        while j + 1 < len(raw) and raw[j][1] in Operator and raw[j][2] == "." \
                and raw[j + 1][1] in Name:
            parts.append((raw[j + 1][2], raw[j + 1][0]))
            j += 2
        root = parts[0][0]
        if root in found.aliases or (root in found.free and root not in given):
            path = ".".join([found.aliases.get(root, root), *(name for name, _ in parts[1:])])
            out.append((_api(path), parts[0][1], parts[-1][1] + len(parts[-1][0])))
        else:
            out.append(("V" if root in bound else root, parts[0][1], parts[0][1] + len(root)))
            for name, at in parts[1:]:
                out.append((".", at - 1, at))
                out.append(("V" if name in attributes else name, at, at + len(name)))
        i = j
    return out, (note[0] if note else "")


@dataclass
class Fingerprint:
    """What copydetect's `compare_files` reads, made from our tokens: winnowed k-gram
    hashes, the token positions where each occurs, how many tokens they cover."""
    k: int
    hashes: set
    hash_idx: dict
    filtered_code: str
    """only its length is read: one character per token"""
    token_coverage: int
    spans: list[tuple[int, int]]
    offsets: tuple = ()


def fingerprint(toks: list[tuple[str, int, int]], given: set = frozenset()) -> Fingerprint:
    """Rolling hashes of every K tokens, winnowed (copydetect.utils.winnow), without the
    hashes in `given`."""
    import numpy as np
    from copydetect.utils import get_token_coverage, winnow

    ids = np.array([_token_id(t) for t, _, _ in toks], dtype=np.uint64)
    count = len(ids) - K + 1
    index: dict[int, list[int]] = {}
    if count > 0:
        rolling = np.zeros(count, dtype=np.uint64)
        with np.errstate(over="ignore"):  # arithmetic modulo 2**64, on purpose
            for j in range(K):
                rolling = rolling * np.uint64(0x100000001B3) + ids[j:j + count]
        selected, where = winnow(rolling.view(np.int64), GUARANTEE - K + 1, remove_duplicates=False)
        for value, at in zip(selected.tolist(), where.tolist()):
            if value not in given:
                index.setdefault(value, []).append(at)
    return Fingerprint(K, set(index), index, " " * len(toks),
                       int(get_token_coverage(index, K, len(toks))),
                       [(start, end) for _, start, end in toks])


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
            with zipfile.ZipFile(path) as archive:
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
            with open(path, "rb") as handle:
                return handle.read(MAX_TEXT).decode("utf-8", "replace"), path.name
    except OSError:
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
        raw, name = _raw_text(path, exercise.module_name if exercise else MODULE_NAME)
        if not raw:
            return Code(student, "", f"{why} Nothing in it could be read as code.")
        if name.endswith(".ipynb"):
            text, note = _recovered_lines(raw), (f"{why} Read as text: the code lines recovered "
                                                 f"from {Path(name).name}.")
        else:
            text, note = raw, f"{why} Read as text: {Path(name).name}."
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
    from .corpus import correct_solutions, student_notebooks

    return [read_code(name, path).text
            for name, path in {**correct_solutions(), **student_notebooks()}.items()]


BEHAVIOUR_BACKGROUND = "behaviour.json"
"""in the corpus folder: what the kit's own solutions did when graded in the shipped setting
(benchmarks/bench_behaviour.py --write-background writes it, tests/test_corpus.py keeps it
true)"""


def background_behaviour() -> dict[str, dict[str, dict]]:
    """{solution: its behaviour} of the kit's own correct solutions; empty outside a course
    folder or when the file is not of the shape written."""
    from .corpus import default_corpus

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

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Similarity: {{ title }}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; } td, th { padding: .2em .8em; border-bottom: 1px solid #ddd; text-align: left; }
.pair { margin: 2em 0; border-top: 2px solid #888; }
.side { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 1em; }
pre { background: #f7f7f7; padding: .6em; overflow-x: auto; font-size: 12px; max-height: 40em; }
mark { background: #ffd54f; }
.note { color: #8a4b00; }
</style></head><body>
<h1>Similarity in {{ title }}</h1>
<p>{{ codes|length }} submissions; {{ compared }} pairs compared in {{ "%.1f"|format(seconds) }} s;
reported, with a code score of {{ "%.2f"|format(threshold) }} or more or behaviour alike:
{{ pairs|length }} pair(s), {{ groups|length }} group(s) of three or more. A score is the larger of the two shares of
a submission's own code (the given code and the lines honest solutions share removed)
found in the other. This is advice for a
person: it changes no score. Names, comments, layout, strings and the order of functions are
ignored; regions in yellow are shared.</p>
{% for notice in notices %}<p class="note">Notice: {{ notice }}.</p>{% endfor %}
{% if too_little %}<p>Not compared, with too little code of their own (empty, the given code
only, or only lines honest solutions share): {{ too_little|join(", ") }}.</p>{% endif %}
{% if notes %}<h2>Read as text, or not at all</h2><ul>{% for code in notes %}
<li class="note">{{ code.student }}: {{ code.note }}</li>{% endfor %}</ul>{% endif %}
{% if groups %}<h2>Groups</h2><ul>{% for group in groups %}
<li>{{ group|join(", ") }}</li>{% endfor %}</ul>{% endif %}
<p>Behaviour: {{ behaviour_kept }} submissions kept what they did when graded. Two runs that
agree in every behaviour both kept (the same numbers to float precision: losses, logits
after training, the pipeline's order, the checkpoint's objects and steps, the TensorBoard
tags), and in {{ rare_checks }} checks or more in a way that none of the kit's own solutions
and at most {{ behaviour_common }} submissions ran, are reported whatever their code looks
like. It shows that two runs were the same program, not who wrote it.</p>
{% if pairs %}<h2>Pairs</h2>
<table><tr><th>strength</th><th>code score</th><th>submission</th><th>share</th><th>submission</th><th>share</th><th>behaviour</th></tr>
{% for pair in pairs %}<tr><td>{{ pair.strength }}</td><td><a href="#pair-{{ loop.index }}">{{ "%.2f"|format(pair.score) }}</a></td>
<td>{{ pair.a }}</td><td>{{ "%.2f"|format(pair.shares[0]) }}</td>
<td>{{ pair.b }}</td><td>{{ "%.2f"|format(pair.shares[1]) }}</td>
<td>{% if pair.behaviour %}alike in all {{ pair.behaviour.agreed|length }}{% else %}not alike{% endif %}</td></tr>{% endfor %}</table>
{% for pair in pairs %}<section class="pair" id="pair-{{ loop.index }}">
<h3>{{ pair.a }} and {{ pair.b }}: {{ pair.evidence() }}</h3>
{% if pair.behaviour %}<h4>Behaviour when graded (every value both kept agrees; their own in
{{ pair.behaviour.rare|join(", ") }})</h4>
{% if curves[loop.index0] %}{{ curves[loop.index0] }}{% endif %}
<table><tr><th>behaviour</th><th>{{ pair.a }}</th><th>{{ pair.b }}</th></tr>
{% for row in behaviour_rows[loop.index0] %}<tr><td>{{ row[0] }}</td><td><code>{{ row[1] }}</code></td><td><code>{{ row[2] }}</code></td></tr>{% endfor %}</table>{% endif %}
<h4>Code</h4>
<div class="side"><div><b>{{ pair.a }}</b><pre>{{ views[loop.index0][0] }}</pre></div>
<div><b>{{ pair.b }}</b><pre>{{ views[loop.index0][1] }}</pre></div></div></section>
{% endfor %}{% else %}<p>No pair reaches the threshold, and none behaved alike.</p>{% endif %}
{% if nearest %}<h2>Nearest partners by code</h2>
<p>Each submission's highest code score, and how far it stands above that submission's next
one. Measured on the kit's solutions, an honest pair stands out as far as a disguised copy
does, so this reports nothing: it is for a person looking at one submission.</p>
<table><tr><th>submission</th><th>nearest</th><th>score</th><th>above the next</th></tr>
{% for row in nearest %}<tr><td>{{ row[0] }}</td><td>{{ row[1] }}</td><td>{{ "%.2f"|format(row[2]) }}</td><td>{{ "%.2f"|format(row[3]) }}</td></tr>{% endfor %}</table>{% endif %}
</body></html>
"""




def _highlighted(text: str, spans: list[tuple[int, int]]):
    """`text` as HTML, the shared regions in <mark>: every character of it escaped, and
    every unprintable one but line breaks and tabs spelled out (`_code_shown`)."""
    from markupsafe import Markup, escape

    out, at = [], 0
    for start, end in sorted(spans):
        start, end = max(start, at), max(end, at)
        out.append(escape(shown_text(text[at:start])))
        out.append(Markup("<mark>") + escape(shown_text(text[start:end])) + Markup("</mark>"))
        at = end
    out.append(escape(shown_text(text[at:])))
    return Markup("").join(out)


def _page_value(value):
    """What the page shows of a `{{ value }}`: the code views as built (`_highlighted`),
    any other text (a student's name, a note, a group, a path, a notice) as one printable
    line (`names.shown`): a right-to-left override in a name cannot make it read as
    another student's."""
    from markupsafe import Markup

    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    return shown(value)


def _curves_svg(first: list, second: list, labels: tuple[str, str], width: int = 420,
                height: int = 120):
    """The losses two submissions logged, overlaid (the second dashed): equal runs draw one
    line. None when neither logged any."""
    from markupsafe import Markup, escape

    values = [v for v in (*first, *second) if isinstance(v, (int, float))]
    if not values:
        return None
    low, high = min(values), max(values)
    span = (high - low) or 1.0

    def line(points, style):
        if len(points) < 2:
            return ""
        step = (width - 20) / (len(points) - 1)
        xy = " ".join(f"{10 + k * step:.1f},{height - 10 - (v - low) / span * (height - 20):.1f}"
                      for k, v in enumerate(points))
        return f'<polyline fill="none" stroke-width="2" {style} points="{xy}"/>'

    blue = line(first, 'stroke="#1565c0"')
    orange = line(second, 'stroke="#e65100" stroke-dasharray="6 4"')
    return Markup(f'<svg width="{width}" height="{height}" role="img" aria-label="losses logged">'
                  f'{blue}{orange}</svg>') + Markup("<p>Losses logged: ") + escape(shown(labels[0])) \
        + Markup(" (blue), ") + escape(shown(labels[1])) \
        + Markup(f" (orange, dashed), from {low:.4g} to {high:.4g}.</p>")


def render(result: Result, title: str) -> str:
    import jinja2

    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined,
                                     finalize=_page_value)
    texts = {c.student: c.text for c in result.codes}
    views = [(_highlighted(texts.get(p.a, ""), p.slices[0] if p.slices else ()),
              _highlighted(texts.get(p.b, ""), p.slices[1] if p.slices else ()))
             for p in result.pairs]
    rows, curves = [], []
    for pair in result.pairs:
        kept_a, kept_b = (result.behaviours.get(pair.a, {}), result.behaviours.get(pair.b, {}))
        agreed = pair.behaviour.agreed if pair.behaviour is not None else []
        rows.append([(name, behaviour.shown_values(kept_a[name]), behaviour.shown_values(kept_b[name]))
                     for name in agreed if name in kept_a and name in kept_b])
        curves.append(_curves_svg(result.losses.get(pair.a, []), result.losses.get(pair.b, []),
                                  (pair.a, pair.b)) if pair.behaviour is not None else None)
    return environment.from_string(PAGE).render(
        title=title, codes=result.codes, compared=result.compared, seconds=result.seconds,
        threshold=result.threshold, pairs=result.pairs, groups=result.groups, views=views,
        too_little=result.too_little, notes=[c for c in result.codes if c.note],
        notices=result.notices, behaviour_kept=len(result.behaviours),
        behaviour_common=behaviour.COMMON, rare_checks=behaviour.RARE_CHECKS,
        behaviour_rows=rows, curves=curves,
        nearest=result.nearest()[:30])


# --- the verb ---------------------------------------------------------------------------

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
        for row in book.submissions():
            if found is not None:  # the folder as the batch read it: the same ids and refusals
                entry = found.get(row["student"])
                if entry is None:
                    codes.append(Code(row["student"], "", "no longer in the submissions folder; "
                                                          "not compared."))
                elif entry.problem:  # a link, a pipe, a file over its bound: never read here either
                    codes.append(Code(row["student"], "", f"{entry.problem} Not compared."))
                else:
                    codes.append(read_code(row["student"], entry.path, exercise))
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


def main(out: str, threshold: float = THRESHOLD, given: list[str] | None = None,
         submissions: str | None = None, common: int = COMMON) -> Result:
    result = run(Path(out), threshold, given, submissions, common)
    print(summary(result, Path(out)))
    return result


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1])
