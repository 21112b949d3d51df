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
import functools
import io
import json
import re
import symtable
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SubmissionError
from . import exercise as exercise_mod, names

from .plainfile import MAX_MODULE_BYTES, MAX_NOTEBOOK_BYTES, mb, read_plain


MAX_STATEMENTS = 120_000           # top-level statements of a notebook's untagged cells


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
                              f"{mb(code)} of code, more than the {mb(MAX_MODULE_BYTES)} allowed; "
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

