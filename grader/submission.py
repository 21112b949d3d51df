"""Turning a submission (.py module or .ipynb notebook) into a module file to grade.

In a notebook only the code cells count. Cells tagged `graded` are kept whole, cells
tagged `experiment` (and the notebook's own `check` cells) are dropped. From every other
cell the grader keeps what the graded code needs and nothing else:

- the statements that bind the functions of the exercise's contract, however they do it (a
  `def`, an alias, a wrapper, inside an `if`, `with` or `try`), and star imports;
- then, name by name, every top-level statement that binds a name some kept code reads
  as a *global* (found with `symtable`, so a parameter or a local variable that happens
  to share a demo line's name never pulls that line in). Binding includes building a
  container in place (`LAYERS.append(...)`, `CONFIG[k] = v`), calling a function that
  assigns the name with `global`, and configuration calls on a kept module
  (`keras.backend.set_floatx`, `tf.config.run_functions_eagerly`);
- never a statement that calls one of the contract's functions: that is a demo run. When the
  functions read a name only such a statement sets, the report says so.

A student's demo runs, prints, plots and experiments with the same names are not executed
at grading time. IPython magics and shell escapes are turned into calls (IPython's own
transformer) and dropped with the rest of the demo code; `%time STATEMENT` keeps its
statement. Statements that share a line (`a = 1; b = 2`) are taken one by one.

Import is strict in graded cells and tolerant elsewhere: a kept statement from an
untagged cell that raises (a data file that is not there, a name from a dropped cell) is
skipped, the rest still imports, and the report names the cell, the line and the error
(`SKIPPED`, read by the worker after import). A cell that does not parse is skipped the
same way, unless it is tagged `graded`.

The module's last line maps its lines back to the cells they came from (`LINE_MAP`, read
by `cell_line`): an error in the module is reported at the student's cell and line.
"""
from __future__ import annotations

import ast
import errno
import functools
import io
import json
import os
import re
import shutil
import stat as stat_mod
import symtable
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SubmissionError
from . import exercise as exercise_mod, names


def _the(exercise: exercise_mod.Exercise | None) -> exercise_mod.Exercise:
    """The exercise a submission is for: the one given, else the kit's default."""
    return exercise or exercise_mod.load()

TAG_GRADED = "graded"          # cells defining the graded functions
TAG_EXPERIMENT = "experiment"  # cells the grader never runs
TAG_HANDOUT = "handout"        # Markdown cells of the handout
TAG_CHECK = "check"            # the notebook's own check cells (grader.notebook)
SKIPPED = "__grader_skipped__"
"""the prepared module's list of (where, statement, exception) for what it skipped"""
LINE_MAP = "# __grader_lines__ "
"""the prefix of a built module's last line: JSON [[first module line, lines, cell, first
line in the cell], ...], one entry for each run of lines copied from a cell"""
MAX_MAPPED = 20_000
"""runs of lines the map holds at most (a longer notebook's later lines are not mapped)"""
DEMO_NOTE = ("not run when grading: it calls one of the graded functions, so it counts as a "
             "demo, yet the functions read a name it sets; set that name without calling them")
# Cell magics whose body is Python that runs in the kernel: the body counts, the magic not.
_PYTHON_CELL_MAGICS = {"time", "timeit", "capture", "prun", "memit", "debug"}


@dataclass
class _Piece:
    """One top-level statement of an untagged cell, or a whole graded cell."""
    text: str
    where: str                      # "code cell 3, line 2"
    graded: bool
    cell: str = ""                  # "code cell 3 (In [7])"
    row: int = 1                    # the cell's line where `text` starts
    binds: set[str] = field(default_factory=set)
    needs: set[str] = field(default_factory=set)
    demo: bool = False                              # it calls one of the graded functions
    mutates: set[str] = field(default_factory=set)  # names it changes in place (X.append(...))
    writes: set[str] = field(default_factory=set)   # globals its functions assign when called
    called: set[str] = field(default_factory=set)   # plain names it calls when it runs
    configures: set[str] = field(default_factory=set)  # modules it sets configuration on
    imports: bool = False
    root: bool = False


def _global_reads(table: symtable.SymbolTable) -> set[str]:
    """Names the code under `table` reads from the module's namespace: what module-level
    code reads, and the globals (never parameters or locals) its functions and classes read."""
    found = set()
    for symbol in table.get_symbols():
        if symbol.is_referenced() and (table.get_type() == "module" or symbol.is_global()):
            found.add(symbol.get_name())
    for child in table.get_children():
        found |= _global_reads(child)
    return found


# Methods that build a container in place: a statement calling one on a global builds it
# (`LAYERS.append(...)` in a loop). Other method calls (a metric's update_state in a demo
# loop) change nothing the functions are defined by.
_BUILDERS = {"append", "extend", "insert", "update", "add", "setdefault", "appendleft",
             "sort", "reverse", "remove", "discard", "pop", "clear"}
# Calls that set a global configuration the functions behave by: kept whenever the module
# they are called on is.
_CONFIG_CALLS = {"run_functions_eagerly", "set_floatx", "set_epsilon", "set_image_data_format",
                 "set_global_policy", "enable_op_determinism", "enable_numpy_behavior"}


def _root_name(target: ast.AST) -> str | None:
    while isinstance(target, (ast.Subscript, ast.Attribute, ast.Call)):
        target = target.func if isinstance(target, ast.Call) else target.value
    return target.id if isinstance(target, ast.Name) else None


def _calls(node: ast.AST) -> list[ast.Call]:
    """The calls a top-level statement makes when it runs (not those inside the bodies of
    functions, lambdas and classes it defines)."""
    found, todo = [], [node]
    while todo:
        sub = todo.pop()
        if isinstance(sub, ast.Call):
            found.append(sub)
        for child in ast.iter_child_nodes(sub):
            if not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                todo.append(child)
    return found


def _mutated(node: ast.AST) -> set[str]:
    """Module-level names a statement changes in place: `X.append(...)` (and the other
    container builders) as a statement, `X[k] = v`, `X.attr = v`, `X[k] += v`."""
    targets = [sub.value.func.value for sub in ast.walk(node) if isinstance(sub, ast.Expr)
               and isinstance(sub.value, ast.Call) and isinstance(sub.value.func, ast.Attribute)
               and sub.value.func.attr in _BUILDERS]
    targets += [sub.value for sub in ast.walk(node)
                if isinstance(sub, (ast.Subscript, ast.Attribute)) and isinstance(sub.ctx, ast.Store)]
    return {name for name in map(_root_name, targets) if name}


def _global_writes(table: symtable.SymbolTable) -> set[str]:
    """Names the functions under `table` assign with a `global` statement."""
    found = {s.get_name() for s in table.get_symbols()
             if table.get_type() != "module" and s.is_declared_global() and s.is_assigned()}
    for child in table.get_children():
        found |= _global_writes(child)
    return found


def _analyse(piece: _Piece, node: ast.AST | None) -> None:
    table = symtable.symtable(piece.text, "<cell>", "exec")
    piece.needs = _global_reads(table)
    piece.binds = {s.get_name() for s in table.get_symbols() if s.is_assigned() or s.is_imported()}
    piece.writes = _global_writes(table)
    piece.imports = isinstance(node, (ast.Import, ast.ImportFrom))
    if node is None or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return
    piece.mutates = _mutated(node)
    calls = _calls(node)
    piece.called = {c.func.id for c in calls if isinstance(c.func, ast.Name)}
    piece.configures = {_root_name(c.func) for c in calls if isinstance(c.func, ast.Attribute)
                        and c.func.attr in _CONFIG_CALLS} - {None}
    if isinstance(node, ast.ImportFrom) and any(a.name == "*" for a in node.names):
        piece.root = True  # the names it brings cannot be listed: kept whenever it imports


def _private_grader_import(node: ast.AST, public: frozenset[str]) -> bool:
    """An import of the grader's machinery (a check cell that lost its tag, for instance):
    never graded. The public data modules may be imported."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names = ([f"{node.module}.{a.name}" for a in node.names] if node.module == "grader"
                 else [node.module])
    else:
        return False
    return any(n.split(".")[0] == "grader" and n not in public for n in names)


def _python_of_cell(code: str) -> str | None:
    """The cell as Python: magics and shell escapes turned into `get_ipython()` calls (None
    for a cell magic whose body is not Python, such as %%bash or %%writefile)."""
    first = code.lstrip().split("\n", 1)[0].strip()
    if first.startswith("%%"):
        magic = first[2:].split(None, 1)[0] if first[2:].strip() else ""
        if magic not in _PYTHON_CELL_MAGICS:
            return None
        lines = code.lstrip().split("\n", 1)
        code = "\n" * (_blank_lines(code) + 1) + (lines[1] if len(lines) > 1 else "")  # rows kept
    # `%time STATEMENT` runs the statement in the kernel's namespace: it counts.
    code = "\n".join(re.sub(r"^(\s*)%time\s+(?=\S)", r"\1", line) for line in code.split("\n"))
    if "%" not in code and "!" not in code and "?" not in code:
        return code
    transformer = _ipython_transformer()
    if transformer is None:  # without IPython: the old rule, a magic line becomes `pass`
        return "\n".join(line[: len(line) - len(line.lstrip())] + "pass"
                         if line.lstrip().startswith(("%", "!")) else line
                         for line in code.splitlines()) + "\n"
    python = transformer.transform_cell(code)
    # IPython drops the leading blank lines: put them back, so rows are the cell's rows
    return "\n" * max(_blank_lines(code) - _blank_lines(python), 0) + python


def _blank_lines(text: str) -> int:
    """How many lines `text` opens with that hold nothing but white space."""
    stripped = text.lstrip()
    return text[:len(text) - len(stripped)].count("\n") if stripped else 0


@functools.lru_cache(maxsize=1)
def _ipython_transformer():
    """IPython's input transformer, made once (None where IPython is not installed)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:
        return None
    return TransformerManager()


def _parse(code: str) -> ast.Module:
    return compile(code, "<cell>", "exec", ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def _string_rows(text: str) -> set[int]:
    """Rows (1-based) that begin inside a multi-line token (a string literal): indenting
    them would change the string."""
    rows = set()
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.start[0] < token.end[0] and token.type not in (tokenize.NL, tokenize.NEWLINE):
                rows.update(range(token.start[0] + 1, token.end[0] + 1))
    except (tokenize.TokenError, SyntaxError):
        pass
    return rows


def _tolerant(piece: _Piece) -> str:
    """The statement wrapped so that an exception skips it and is recorded."""
    inside = _string_rows(piece.text)
    body = "\n".join(line if row in inside or not line.strip() else "    " + line
                     for row, line in enumerate(piece.text.splitlines(), 1))
    first = piece.text.strip().splitlines()[0][:120]
    return (f"try:\n{body}\nexcept Exception as __grader_error:\n"
            f"    {SKIPPED}.append(({piece.where!r}, {first!r}, __grader_error))")


_UNPARSABLE = (SyntaxError, RecursionError, MemoryError, ValueError)
"""what parsing or analysing a cell may raise: a cell that raises one is skipped (a graded
cell is kept whole, and its error is reported at import)"""


class _Lines:
    """A cell's lines, split once, each encoded once when first used: the source text of a
    statement as ast.get_source_segment gives it, without splitting the whole cell again for
    each statement (which made a line of many statements quadratic)."""

    def __init__(self, lines: list[str]):
        self.lines, self.encoded = lines, {}

    def _bytes(self, row: int) -> bytes:
        if row not in self.encoded:
            self.encoded[row] = self.lines[row].encode("utf-8")
        return self.encoded[row]

    def segment(self, node: ast.AST) -> str:
        first, last = node.lineno - 1, node.end_lineno - 1
        if first == last:
            return self._bytes(first)[node.col_offset:node.end_col_offset].decode("utf-8")
        return "\n".join([self._bytes(first)[node.col_offset:].decode("utf-8"),
                          *self.lines[first + 1:last],
                          self._bytes(last)[:node.end_col_offset].decode("utf-8")])


def _closure(pieces: list[_Piece]) -> list[bool]:
    """Which pieces are kept: the roots, then every piece (not a demo) that binds or
    configures a name a kept piece reads, to a fixed point. A work list over the names, so
    the time is linear in the names read and bound (a notebook of long assignment chains
    is no slower per line than a short one)."""
    binders: dict[str, list[int]] = {}
    for i, piece in enumerate(pieces):
        if not piece.demo:
            for name in piece.binds | piece.configures:
                binders.setdefault(name, []).append(i)
    kept = [p.root for p in pieces]
    needed: set[str] = set()
    todo = [name for p, k in zip(pieces, kept) if k for name in p.needs]
    while todo:
        name = todo.pop()
        if name in needed:
            continue
        needed.add(name)
        for i in binders.pop(name, ()):
            if not kept[i]:
                kept[i] = True
                todo.extend(pieces[i].needs - needed)
    return kept


def definitions_only(cells: list[tuple[str, bool]], plain: bool = False,
                     exercise: exercise_mod.Exercise | None = None,
                     labels: list[str] | None = None) -> str:
    """The module made of notebook code cells [(code, graded)]: graded cells whole, and
    from the others what the graded code needs (see the module's docstring). `plain`:
    the kept statements as written, without what makes them importable (the wrapping
    that skips a failing statement, the record of what was skipped, the line map).
    `labels` names each cell ("code cell 3 (In [7])"; by default "code cell N")."""
    exercise = _the(exercise)
    contract, public = set(exercise.contract), exercise.public_names()
    pieces: list[_Piece] = []
    unparsed: list[tuple[str, str]] = []  # (where, why) of untagged cells skipped unread
    future: list[str] = []
    statements = 0
    for number, (code, graded) in enumerate(cells, 1):
        cell = labels[number - 1] if labels else f"code cell {number}"
        if graded:
            try:
                tree = _parse(code)
            except _UNPARSABLE:  # kept whole, so its error is reported where it is
                pieces.append(_Piece(code, cell, True, cell, root=True))
                continue
            lines = code.splitlines()
            for node in tree.body:  # `from __future__` must open the module
                if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                    future.append(ast.get_source_segment(code, node) or "")
                    for row in range(node.lineno - 1, node.end_lineno):
                        lines[row] = ""
            piece = _Piece("\n".join(lines) + "\n", cell, True, cell, root=True)
            try:
                _analyse(piece, None)
            except _UNPARSABLE:  # top-level await: kept whole, its error reported at import
                pass
            pieces.append(piece)
            continue
        python = _python_of_cell(code)
        if python is None:
            continue
        try:
            tree = _parse(python)
        except SyntaxError as exc:
            unparsed.append((f"{cell}, line {exc.lineno or 1}", exc.msg))
            continue
        except _UNPARSABLE as exc:  # nested too deep to parse, or too large
            unparsed.append((cell, f"could not be parsed ({type(exc).__name__})"))
            continue
        statements += len(tree.body)
        if statements > MAX_STATEMENTS:
            raise SubmissionError(f"holds more than {MAX_STATEMENTS:,} top-level statements, more "
                                  "than any solution needs (each costs the grader memory to "
                                  "sort out); keep generated code and data out of the notebook.")
        lines = python.splitlines()
        shared = _Lines(lines)
        for index, node in enumerate(tree.body):
            if _private_grader_import(node, public):
                continue
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                future.append(ast.get_source_segment(python, node) or "")
                continue
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            shares_a_line = any(other is not node and other.lineno <= node.end_lineno
                                and other.end_lineno >= start for other in tree.body[max(index - 1, 0):index + 2])
            # statements separated by ';' each get their own text, the others whole lines
            text = (shared.segment(node) if shares_a_line
                    else "\n".join(lines[start - 1:node.end_lineno]))
            piece = _Piece(text + "\n", f"{cell}, line {start}", False, cell,
                           node.lineno if shares_a_line else start)
            try:
                _analyse(piece, node)
            except _UNPARSABLE:  # top-level await and the like: demo code, never needed
                continue
            # The functions the grader calls, however they are bound (def, assignment,
            # inside if/with/try); never a statement that calls them: that is a demo.
            piece.demo = bool(piece.called & contract)
            piece.root = piece.root or (bool(piece.binds & contract) and not piece.demo)
            pieces.append(piece)
    writes = {}  # function name -> globals it assigns (a `def init(): global X` called at top level)
    for piece in pieces:
        for name in piece.binds:
            writes.setdefault(name, set()).update(piece.writes)
    modules = set().union(*(p.binds for p in pieces if p.imports))
    for piece in pieces:
        piece.mutates -= modules
        piece.binds |= piece.mutates
        for name in piece.called:
            piece.binds |= writes.get(name, set())
    kept = _closure(pieces)
    needed = set().union(*(p.needs for p, k in zip(pieces, kept) if k))
    bound = set().union(*(p.binds for p, k in zip(pieces, kept) if k))
    demos = [(p.where, p.text.strip().splitlines()[0][:120]) for p, k in zip(pieces, kept)
             if not k and p.demo and (p.binds & needed) - bound]
    head = sorted(set(future)) + [f"{SKIPPED} = []"]
    head += [f"{SKIPPED}.append(({where!r}, '', SyntaxError({why!r})))" for where, why in unparsed]
    head += [f"{SKIPPED}.append(({where!r}, {what!r}, {DEMO_NOTE!r}))" for where, what in demos]
    if plain:
        return "\n".join(p.text for p, k in zip(pieces, kept) if k)
    body = [p.text if p.graded else _tolerant(p) for p, k in zip(pieces, kept) if k]
    module = "\n".join(head) + "\n\n" + "\n\n".join(body) + "\n"
    return module + LINE_MAP + json.dumps(_line_map(head, [p for p, k in zip(pieces, kept) if k], body),
                                          separators=(",", ":")) + "\n"


def _line_map(head: list[str], pieces: list[_Piece], body: list[str]) -> list[list]:
    """The runs of the module's lines copied from cells (see LINE_MAP): a graded cell's
    lines from its first, a wrapped statement's (`_tolerant`) after its `try:`."""
    runs, line = [], "\n".join(head).count("\n") + 3  # after the head and a blank line
    for piece, block in zip(pieces, body):
        if len(runs) < MAX_MAPPED:
            runs.append([line + (0 if piece.graded else 1), piece.text.count("\n") or 1,
                         piece.cell, piece.row])
        line += block.count("\n") + 2  # and the blank line between blocks
    return runs


def cell_line(source: str, lineno: int) -> tuple[str, int] | None:
    """(cell, line in the cell) of line `lineno` of a module built from a notebook (see
    LINE_MAP); None for a line that came from no cell, or a module with no map."""
    last = source.rstrip("\n").rsplit("\n", 1)[-1]
    if not last.startswith(LINE_MAP):
        return None
    try:
        runs = json.loads(last[len(LINE_MAP):])
        for first, count, cell, row in runs:
            if first <= lineno < first + count:
                return str(cell), int(row) + lineno - first
    except (ValueError, TypeError):  # not a map the kit wrote
        return None
    return None


def read_notebook_cells(path: Path) -> list[dict]:
    """The cells of the notebook at `path` as plain dicts, read with bounds before anything
    large is built: the file's size (MAX_NOTEBOOK_BYTES), then its JSON values counted
    before parsing (answers.MAX_JSON_VALUES), then parsed as plain JSON. nbformat's
    validation is not used for nbformat 4 (it takes gigabytes on a small file of many empty
    lists); an older notebook is upgraded by nbformat once it has passed the same bounds."""
    from . import answers

    label = names.student_id(path.name)
    raw = read_plain(path, MAX_NOTEBOOK_BYTES, label)
    if answers._too_many_values(raw):
        raise SubmissionError(f"{label}: holds more than {answers.MAX_JSON_VALUES:,} JSON values, "
                              "more than a notebook needs; clear its outputs and save it again.")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SubmissionError(f"{label}: expected a UTF-8 notebook file, found other bytes. "
                              "Save the notebook again from Jupyter.") from None
    except (ValueError, RecursionError) as exc:
        raise SubmissionError(f"{label}: expected a Jupyter notebook (JSON, nbformat 4), could not "
                              f"read it ({type(exc).__name__}). Save it again from Jupyter.") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells", []), list):
        raise SubmissionError(f"{label}: expected a Jupyter notebook (a JSON object with cells), "
                              "found other JSON. Save it again from Jupyter.")
    if data.get("nbformat") != 4:
        import nbformat

        try:
            data = nbformat.reads(raw.decode("utf-8"), as_version=4)
        except Exception as exc:  # nbformat raises several JSON and schema errors
            raise SubmissionError(f"{label}: expected a Jupyter notebook (JSON, nbformat 4), could "
                                  f"not read it ({type(exc).__name__}). Save it again from "
                                  "Jupyter.") from None
    return [cell for cell in data.get("cells", []) if isinstance(cell, dict)]


def _cell_source(cell: dict) -> str:
    source = cell.get("source", "")
    if isinstance(source, list):
        return "".join(line for line in source if isinstance(line, str))
    return source if isinstance(source, str) else ""


def _cell_tags(cell: dict) -> set[str]:
    metadata = cell.get("metadata")
    tags = metadata.get("tags", []) if isinstance(metadata, dict) else []
    return {t for t in tags if isinstance(t, str)} if isinstance(tags, list) else set()


def _dropped(tags: set[str]) -> bool:
    """A code cell the module leaves out: the notebook's experiments and its own checks."""
    return bool(tags & {TAG_EXPERIMENT, TAG_CHECK})


def notebook_to_source(path: Path, plain: bool = False,
                       exercise: exercise_mod.Exercise | None = None) -> str:
    """The module the grader makes of a notebook (`plain`: see definitions_only)."""
    cells, labels = [], []
    for cell in read_notebook_cells(Path(path)):
        if cell.get("cell_type") != "code":
            continue
        tags = _cell_tags(cell)
        # Dropped cells keep their number, so "code cell N" is what the student counts.
        cells.append(("" if _dropped(tags) else _cell_source(cell) + "\n", TAG_GRADED in tags))
        count = cell.get("execution_count")
        labels.append(f"code cell {len(cells)}" + (f" (In [{count}])" if type(count) is int and 0 < count < 10**9 else ""))
    code = sum(len(c) for c, _ in cells)
    if code > MAX_MODULE_BYTES:
        raise SubmissionError(f"{names.student_id(Path(path).name)}: holds "
                              f"{_mb(code)} of code, more than the {_mb(MAX_MODULE_BYTES)} allowed; "
                              "keep data out of code cells.")
    try:
        return definitions_only(cells, plain, exercise, labels)
    except SubmissionError as exc:
        if str(exc).startswith("holds more than"):
            raise SubmissionError(f"{names.student_id(Path(path).name)}: {exc}") from None
        raise


def prepare(path: str | Path, dest_dir: Path, exercise: exercise_mod.Exercise | None = None) -> Path:
    """Write the module to grade into `dest_dir` and return its path."""
    path, name = Path(path), _the(exercise).module_name
    if not path.exists():
        raise SubmissionError(f"{path}: no such file; expected {name}.py or .ipynb.")
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / f"{name}.py"
    if path.suffix == ".ipynb":
        target.write_text(notebook_to_source(path, exercise=exercise), encoding="utf-8")
    elif path.suffix == ".py":
        raw = read_plain(path, MAX_MODULE_BYTES)  # a module found in a folder or zip, bounded too
        try:
            encoding, _ = tokenize.detect_encoding(io.BytesIO(raw).readline)
            raw.decode(encoding)
        except (SyntaxError, UnicodeDecodeError, LookupError):
            raise SubmissionError(f"{path.name}: expected UTF-8 Python source, found bytes that are "
                                  "not valid UTF-8. Save the file as UTF-8 and submit again.") from None
        target.write_bytes(raw)
    else:
        raise SubmissionError(f"{path}: expected a .py module or an .ipynb notebook, found "
                              f"'{path.suffix or 'no extension'}'.")
    return target


# ---------------------------------------------------------------- batch submissions

MAX_UNPACKED = 50 << 20  # a zip may unpack to at most this many bytes
MAX_MEMBERS = 10_000     # and hold at most this many files and folders
MAX_ZIP_BYTES = MAX_UNPACKED       # a zip file itself
MAX_FOLDER_BYTES = MAX_UNPACKED    # a student's folder, all its files together
MAX_NOTEBOOK_BYTES = 50 << 20      # a notebook (images in outputs make them large)
MAX_MODULE_BYTES = 1 << 20         # a .py module, and the code of a notebook
MAX_STATEMENTS = 120_000           # top-level statements of a notebook's untagged cells
MAX_DEPTH = 32                     # folders inside a student's folder or zip
KINDS = (".py", ".ipynb", ".zip")
_LIMITS = {".py": MAX_MODULE_BYTES, ".ipynb": MAX_NOTEBOOK_BYTES, ".zip": MAX_ZIP_BYTES}


@dataclass(frozen=True)
class Entry:
    """One entry of a class folder: the student's id (from the name's bytes, printable,
    unique in the folder: see `entries`), its path, and a problem that keeps it from being
    graded ("" when it can be graded)."""
    student: str
    path: Path
    problem: str = ""


def _mb(size: int) -> str:
    return f"{size / (1 << 20):.1f} MB"


def refusal(path: Path) -> str:
    """Why the entry at `path` cannot be graded, read from metadata only (lstat; nothing is
    opened and no link is followed); "" when it can."""
    label = names.student_id(path.name)
    info = path.lstat()
    if stat_mod.S_ISLNK(info.st_mode):
        return (f"{label}: is a symbolic link; the grader follows no links. Put the "
                "submission itself in the folder.")
    if stat_mod.S_ISREG(info.st_mode) and info.st_nlink > 1:
        return (f"{label}: has {info.st_nlink} hard links; the grader reads files with one. "
                "Put a copy of the file itself in the folder.")
    if stat_mod.S_ISREG(info.st_mode):
        limit = _LIMITS[path.suffix]
        if info.st_size > limit:
            return (f"{label}: is {_mb(info.st_size)}, more than the {_mb(limit)} allowed for a "
                    f"{path.suffix} submission; submit the work without data or outputs.")
        return ""
    total, count = 0, 0
    todo = [(path, 0)]
    while todo:  # a work list, not os.walk's recursion: a folder 1,100 deep is one more case
        folder, depth = todo.pop()
        if depth > MAX_DEPTH:
            return (f"{label}: holds folders nested more than {MAX_DEPTH} deep; submit the work "
                    "alone.")
        with os.scandir(folder) as listing:
            children = list(listing)
        for child in children:
            inner = Path(child.path)
            where = names.student_id(str(inner.relative_to(path)))
            mode = child.stat(follow_symlinks=False)
            count += 1
            if stat_mod.S_ISLNK(mode.st_mode):
                return (f"{label}: holds the symbolic link {where}; the grader follows no "
                        "links. Replace it with the file itself.")
            if stat_mod.S_ISDIR(mode.st_mode):
                todo.append((inner, depth + 1))
            elif not stat_mod.S_ISREG(mode.st_mode):
                return (f"{label}: holds {where}, which is not a regular file (a pipe or a "
                        "device); remove it.")
            elif mode.st_nlink > 1:
                return (f"{label}: holds {where}, which has {mode.st_nlink} hard links; the "
                        "grader reads files with one. Put a copy of the file itself there.")
            else:
                total += mode.st_size
        if total > MAX_FOLDER_BYTES:
            return (f"{label}: holds more than the {_mb(MAX_FOLDER_BYTES)} allowed for a "
                    "submission's folder; submit the work without data, weights or outputs.")
        if count > MAX_MEMBERS:
            return (f"{label}: holds more than the {MAX_MEMBERS} files and folders allowed; "
                    "submit the work alone.")
    return ""


def entries(folder: Path, previous: dict[str, str] | None = None) -> list[Entry]:
    """Every submission in `folder`: .py, .ipynb and .zip files and per-student folders (a
    lone NAME.py's written answers are NAME.answers.md beside it); names starting with a dot
    are left out. Nothing is followed or opened: a symbolic link, a file with several hard
    links, a folder holding either (or a pipe or a device), and anything over its size bound
    is an entry with a problem.

    The id is the name without its extension, spelled one to one as printable text
    (names.student_id). When several entries would share an id they keep their full names,
    (a folder's with a "/" after it), which never clash. `previous` ({name as spelled: id},
    from the gradebook) keeps the
    id an entry had in an earlier run, unless another entry's id clashes with it: an entry
    added later (lee.ipynb beside lee.py) does not rename a student already graded."""
    found = []
    for path in sorted(Path(folder).iterdir(), key=lambda p: os.fsencode(p.name)):
        if path.name.startswith("."):
            continue
        info = path.lstat()
        if not (stat_mod.S_ISLNK(info.st_mode) or stat_mod.S_ISDIR(info.st_mode)
                or (stat_mod.S_ISREG(info.st_mode) and path.suffix in KINDS)):
            continue  # a roster, a README, a pipe: not a submission
        try:
            problem = refusal(path)
        except Exception as exc:  # noqa: BLE001 - one entry's folder, one entry's problem
            problem = (f"{names.student_id(path.name)}: could not be read "
                       f"({getattr(exc, 'strerror', None) or type(exc).__name__}).")
        # the full name, used when stems clash: a folder's ends in "/", so a folder `lee`
        # beside `lee.py` has one of its own
        full = names.student_id(path.name) + ("/" if stat_mod.S_ISDIR(info.st_mode) else "")
        stem = (names.student_id(path.name) if stat_mod.S_ISDIR(info.st_mode)
                or stat_mod.S_ISLNK(info.st_mode) and not path.suffix
                else names.student_id(path.stem))
        found.append((stem, full, path, problem))
    previous = previous or {}
    named = [names.student_id(path.name) for _, _, path, _ in found]
    ids = [previous.get(name, stem) for name, (stem, *_) in zip(named, found)]
    kept = [name in previous for name in named]  # ids given before yield last
    while True:  # ids shared by several entries: those entries take their full names
        sharing: dict[str, list[int]] = {}
        for n, i in enumerate(ids):
            sharing.setdefault(i, []).append(n)
        changed = []
        for group in (g for g in sharing.values() if len(g) > 1):
            movable = [n for n in group if ids[n] != found[n][1]]
            newcomers = [n for n in movable if not kept[n]]
            changed += newcomers or movable
        if not changed:  # full names are all different (student_id is one to one)
            break
        for n in changed:
            ids[n], kept[n] = found[n][1], False
    return [Entry(i, path, problem) for i, (_, _, path, problem) in zip(ids, found)]


def content_hash(path: Path) -> str:
    """A digest of what grading reads of a submission, so that a change to anything else
    does not regrade it: file names (as bytes) and contents, read in chunks as materialize
    reads them (no link followed: a file that is not plain counts by its name), except that
    a notebook counts by its code cells (source, tags, execution count: the module and the
    places its messages name) and written answers not at all (`answers.md`,
    `NAME.answers.md`, a notebook's Markdown cells and outputs), since a batch reads those
    again on every run. A zip counts by its bytes."""
    import hashlib

    digest = hashlib.sha256()
    path = Path(path)

    def add(name: bytes, opener, where: Path | None = None) -> None:
        digest.update(name + b"\0")
        if name.endswith(b".ipynb") and where is not None:
            code = _code_of_notebook(where)
            if code is not None:
                digest.update(b"code cells\0" + code)
                return
        content = hashlib.sha256()  # each file's own digest: no content can pass for a name
        try:
            with os.fdopen(opener(), "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    content.update(chunk)
        except (OSError, SubmissionError):
            digest.update(b"<not a plain file>")
            return
        digest.update(content.digest())

    if not stat_mod.S_ISDIR(path.lstat().st_mode):
        add(os.fsencode(path.name), lambda: open_plain(path), path)
        return digest.hexdigest()
    for root, folders, files, root_fd in os.fwalk(path, follow_symlinks=False):
        folders.sort(key=os.fsencode)
        relative = os.fsencode(os.path.relpath(root, path))
        for name in sorted(files, key=os.fsencode):
            if name == "answers.md" or name.endswith(".answers.md"):
                continue  # written answers: read again on every run, never a reason to regrade
            add(relative + b"/" + os.fsencode(name), lambda: open_plain(name, dir_fd=root_fd),
                Path(root) / name)
    return digest.hexdigest()


def _code_of_notebook(path: Path) -> bytes | None:
    """A notebook's code cells as grading reads them (source, tags, execution count; an
    experiment or check cell, which the grader drops, by its place only), or
    None when it cannot be read as a notebook (then its bytes count, and grading says why)."""
    try:
        cells = read_notebook_cells(path)
    except (SubmissionError, OSError):
        return None
    # the cells the module leaves out count by their place only
    code = [[] if _dropped(_cell_tags(c)) else [_cell_source(c), sorted(_cell_tags(c)), c.get("execution_count")]
            for c in cells if c.get("cell_type") == "code"]
    return json.dumps(code, default=str).encode("utf-8", "surrogatepass")


MAX_CLASS_MEMBERS = 200_000    # a class's download (grader batch DOWNLOAD.zip): files and folders
MAX_CLASS_UNPACKED = 16 << 30  # and bytes; each student's entry is bounded again as a submission


MAX_PATH_CHARS = 1024  # a member's path in any zip
MAX_CENTRAL_DIRECTORY = 256 << 20  # a zip's list of entries, as its end record declares it


def _declared_members(handle) -> int | None:
    """How many entries a zip's end-of-central-directory record declares (zip64 too), read
    from its last bytes, or more than any bound when the list it declares is larger than
    MAX_CENTRAL_DIRECTORY; None when there is no such record (zipfile then says why)."""
    import zipfile

    try:
        record = zipfile._EndRecData(handle)  # the standard library's own reader of that record
    except (OSError, EOFError, ValueError):
        return None
    finally:
        handle.seek(0)
    if record is None:
        return None
    if record[zipfile._ECD_SIZE] > MAX_CENTRAL_DIRECTORY:  # what zipfile would read into memory
        return 1 << 62
    return int(record[zipfile._ECD_ENTRIES_TOTAL])


def unpack_class(archive: Path, dest: Path) -> None:
    """A class downloaded from an LMS as one zip (Moodle's or Canvas's "download all
    submissions"), unpacked into `dest` with the bounds and refusals of a submission's zip
    at a class's scale; each entry in it is then read as any submission is."""
    _safe_unzip(archive, dest, MAX_CLASS_MEMBERS, MAX_CLASS_UNPACKED,
                "download the class again, or unpack it and pass the folder")


def _safe_unzip(archive: Path, dest: Path, max_members: int = MAX_MEMBERS,
                max_bytes: int = MAX_UNPACKED, advice: str = "submit the work alone") -> None:
    import stat
    import zipfile

    try:
        with os.fdopen(open_plain(archive, label=names.student_id(archive.name)), "rb") as raw:
            declared = _declared_members(raw)  # before zipfile reads every entry into memory
            if declared is not None and declared > max_members:
                raise SubmissionError(f"{archive.name}: holds {declared} files and folders, more "
                                      f"than the {max_members} allowed; {advice}.")
            zf = zipfile.ZipFile(raw)
            members = zf.infolist()
            if any(len(m.filename) > MAX_PATH_CHARS for m in members):
                raise SubmissionError(f"{archive.name}: holds a path longer than {MAX_PATH_CHARS} "
                                      f"characters; {advice}.")
            if len(members) > max_members:
                raise SubmissionError(f"{archive.name}: holds {len(members)} files and folders, more "
                                      f"than the {max_members} allowed; {advice}.")
            total = sum(m.file_size for m in members)
            if total > max_bytes:
                raise SubmissionError(f"{archive.name}: unpacks to {total >> 20} MB, more than the "
                                      f"{max_bytes >> 20} MB allowed.")
            folders = {str(Path(m.filename).parent) for m in members}
            implied = {str(parent) for folder in folders for parent in Path(folder).parents} | folders
            if len(members) + len(implied) > max_members:
                raise SubmissionError(f"{archive.name}: holds more than the {max_members} files and "
                                      f"folders allowed (its paths imply folders too); {advice}.")
            for member in members:
                name = member.filename
                parts = Path(name).parts
                if len(parts) > MAX_DEPTH + 1:
                    raise SubmissionError(f"{archive.name}: holds paths nested more than {MAX_DEPTH} "
                                          f"folders deep; {advice}.")
                if name.startswith(("/", "\\")) or ".." in parts or ":" in name:
                    raise SubmissionError(f"{archive.name}: refusing the path {name!r} that points "
                                          "outside the archive's folder.")
                if stat.S_ISLNK(member.external_attr >> 16):
                    raise SubmissionError(f"{archive.name}: refusing the symbolic link {name!r}.")
            for member in members:
                target = dest / member.filename
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as source, open(target, "wb") as out:
                    shutil.copyfileobj(source, out)
            zf.close()
    except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError) as exc:
        raise SubmissionError(f"{archive.name}: expected a zip archive, could not read it "
                              f"({type(exc).__name__}).") from None


def _find_module(folder: Path, label: str, exercise: exercise_mod.Exercise | None = None) -> Path:
    name = _the(exercise).module_name
    candidates = [p for p in sorted(folder.rglob("*"))
                  if p.is_file() and p.suffix in (".py", ".ipynb") and not p.is_symlink()
                  and "__MACOSX" not in p.parts and ".ipynb_checkpoints" not in p.parts]
    for file in (f"{name}.py", f"{name}.ipynb"):
        named = [p for p in candidates if p.name == file]
        if named:
            return named[0]
    if len(candidates) == 1:
        return candidates[0]
    raise SubmissionError(f"{label}: expected {name}.py or {name}.ipynb, "
                          f"found {len(candidates)} candidate files.")


def open_plain(path, dir_fd: int | None = None, label: str = "") -> int:
    """A descriptor of the regular file at `path`, opened without following a link (checked
    on the open file, so a file swapped for a link after the folder was scanned is refused
    too), with no other hard link to it (a hard link to /etc/shadow is a regular file)."""
    label = label or names.student_id(os.fsdecode(path))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SubmissionError(f"{label}: is a symbolic link; the grader follows no links. "
                                  "Put the file itself there.") from None
        raise SubmissionError(f"{label}: could not be opened ({exc.strerror}).") from None
    info = os.fstat(fd)
    problem = ("is not a regular file (a pipe or a device)" if not stat_mod.S_ISREG(info.st_mode)
               else f"has {info.st_nlink} hard links; the grader reads files with one"
               if info.st_nlink > 1 else "")
    if problem:
        os.close(fd)
        raise SubmissionError(f"{label}: {problem}. Put a copy of the file itself there.")
    return fd


def read_plain(path, limit: int, label: str = "") -> bytes:
    """The bytes of the regular file at `path` (see open_plain), at most `limit` of them."""
    label = label or names.student_id(os.fsdecode(path))
    with os.fdopen(open_plain(path, label=label), "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise SubmissionError(f"{label}: is more than the {_mb(limit)} allowed; submit the "
                              "work without data or outputs.")
    return data


def _copy_plain(fd: int, target: Path, budget: list[int], label: str) -> None:
    with os.fdopen(fd, "rb") as source, open(target, "wb") as out:
        while chunk := source.read(1 << 20):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise SubmissionError(f"{label}: holds more than the {_mb(MAX_FOLDER_BYTES)} "
                                      "allowed for a submission's folder.")
            out.write(chunk)


def copy_folder(path: Path, dest: Path) -> None:
    """Copy the folder `path` into `dest` through directory descriptors (os.fwalk), opening
    nothing through a link: a folder or file swapped for a link after the scan is refused."""
    label = names.student_id(path.name)
    budget, count = [MAX_FOLDER_BYTES], 0
    try:
        top = os.lstat(path)
        if not stat_mod.S_ISDIR(top.st_mode):
            raise SubmissionError(f"{label}: is no longer a folder; the grader follows no links.")
        for root, folders, files, root_fd in os.fwalk(path, follow_symlinks=False):
            relative = Path(root).relative_to(path)
            (dest / relative).mkdir(parents=True, exist_ok=True)
            count += len(folders) + len(files)
            if count > MAX_MEMBERS:
                raise SubmissionError(f"{label}: holds more than the {MAX_MEMBERS} files and "
                                      "folders allowed; submit the work alone.")
            for name in files:  # links land here (follow_symlinks=False): open_plain refuses them
                where = f"{label}/{names.student_id(str(relative / name))}"
                _copy_plain(open_plain(name, dir_fd=root_fd, label=where), dest / relative / name,
                            budget, label)
    except OSError as exc:
        raise SubmissionError(f"{label}: could not be read ({exc.strerror or type(exc).__name__}).") from None


def materialize(path: Path, dest: Path, exercise: exercise_mod.Exercise | None = None
                ) -> tuple[Path, Path]:
    """(module file to grade, the submission's folder) for any kind of submission,
    written under `dest`; nothing outside `dest` is touched, and no link is followed (a
    student checking their own file has it resolved first: engine.collect_submission)."""
    path = Path(path)
    if not os.path.lexists(path):
        raise SubmissionError(f"{path}: no such file or folder; expected {_the(exercise).module_name}.py, "
                              "a notebook, a zip or a folder.")
    unpacked = dest / "files"
    unpacked.mkdir(parents=True, exist_ok=True)
    if stat_mod.S_ISDIR(path.lstat().st_mode):
        copy_folder(path, unpacked)
        source = _find_module(unpacked, path.name, exercise)
    elif path.suffix == ".zip":
        _safe_unzip(path, unpacked)
        source = _find_module(unpacked, path.name, exercise)
    else:
        source = unpacked / path.name
        limit = _LIMITS.get(path.suffix, MAX_MODULE_BYTES)
        source.write_bytes(read_plain(path, limit))
    return prepare(source, dest / "module", exercise), source.parent


def pack(path: Path) -> tuple[str, bytes]:
    """(file name, bytes) of a submission, to send to another machine: a file as it is, a
    folder as a zip; read as `materialize` reads them (no link followed)."""
    import io
    import tempfile
    import zipfile

    path = Path(path)
    if not stat_mod.S_ISDIR(path.lstat().st_mode):
        return path.name, read_plain(path, _LIMITS.get(path.suffix, MAX_MODULE_BYTES))
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="grader-pack-") as tmp:
        copy_folder(path, Path(tmp))
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(Path(tmp).rglob("*")):
                if file.is_file():
                    archive.write(file, str(file.relative_to(tmp)))
    return path.name + ".zip", buffer.getvalue()


def graded_code(path: Path, exercise: exercise_mod.Exercise | None = None) -> str:
    """The code of a submission as the grader keeps it, without running anything: a .py
    file's text, a notebook's kept statements as written (`notebook_to_source(plain=True)`),
    the module inside a zip or a folder. Raises SubmissionError when it cannot be read."""
    import tempfile

    path = Path(path)
    if path.is_file() and path.suffix == ".zip":
        with tempfile.TemporaryDirectory(prefix="grader-code-") as tmp:
            _safe_unzip(path, Path(tmp))
            return graded_code(_find_module(Path(tmp), path.name, exercise), exercise)
    if path.is_dir():
        return graded_code(_find_module(path, path.name, exercise), exercise)
    if path.suffix == ".ipynb":
        return notebook_to_source(path, plain=True, exercise=exercise)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SubmissionError(f"{path.name}: expected UTF-8 Python source, found other bytes.") from None
    except OSError as exc:
        raise SubmissionError(f"{path.name}: could not be read ({exc.strerror}).") from None
