"""Code as the similarity check compares it: normalised tokens and their winnowed
fingerprints (see grader/copying/__init__.py for the method and why the tokens are ours).
"""
from __future__ import annotations

import ast
import bisect
import functools
import hashlib
import re
from dataclasses import dataclass, field

K = 12
"""shared runs shorter than this many tokens never count (copydetect's noise threshold)"""
GUARANTEE = 17
"""shared runs at least this long are always found (the winnowing window is
GUARANTEE - K + 1)."""


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
