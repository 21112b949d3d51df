"""Turning a submission (.py module or .ipynb notebook) into a module file to grade.

In a notebook only the code cells count. Cells tagged `graded` are kept whole, cells
tagged `experiment` are dropped, and from every other cell only the definitions are kept:
imports, functions, classes and the module-level names they use (plus UPPER_CASE
constants), so a student's demo runs and prints are not executed at grading time.
IPython magics and shell escapes are dropped.
"""
from __future__ import annotations

import ast
import io
import shutil
import tokenize
from pathlib import Path

from .errors import SubmissionError

TAG_GRADED = "graded"          # cells defining the graded functions
TAG_EXPERIMENT = "experiment"  # cells the grader never runs
TAG_HANDOUT = "handout"        # Markdown cells of the handout
TAG_CHECK = "check"            # the notebook's own check cells (grader.notebook)


def _names_loaded(node) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _assigned(node) -> list[str] | None:
    """The plain names an assignment binds, or None if it binds anything else."""
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    names = []
    for target in targets:
        elements = target.elts if isinstance(target, (ast.Tuple, ast.List)) else [target]
        if not all(isinstance(e, ast.Name) for e in elements):
            return None
        names += [e.id for e in elements]
    return names


def _imports_grader(node) -> bool:
    if isinstance(node, ast.Import):
        return any(a.name.split(".")[0] == "grader" for a in node.names)
    return isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "grader"


_DEFINITIONS = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def definitions_only(cells: list[tuple[str, bool]]) -> str:
    """The module made of notebook cells [(code, graded)]: graded cells whole, and from the
    others only imports, functions, classes, try-blocks of imports, and assignments to
    UPPER_CASE names or to names that kept code reads (anywhere in the notebook).
    Everything else (calls, loops, prints, demo runs) is dropped. A cell that does not
    parse is kept whole, so its error is reported where it is."""
    pieces = []  # (source text, ast node or None, kept)
    for code, graded in cells:
        try:
            tree = ast.parse(code)
        except SyntaxError:
            pieces.append((code, None, True))
            continue
        if graded:
            pieces.append((code, tree, True))
            continue
        lines = code.splitlines()
        for node in tree.body:
            if _imports_grader(node):
                continue  # a check cell copied or untagged: the grader is never graded
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            keep = isinstance(node, _DEFINITIONS) or (isinstance(node, ast.Try) and all(
                isinstance(n, (ast.Import, ast.ImportFrom, ast.Pass, ast.Assign)) for n in node.body))
            pieces.append(("\n".join(lines[start - 1:node.end_lineno]), node, keep))
    kept = [k for _, _, k in pieces]
    changed = True
    while changed:  # an assignment is kept when kept code reads one of its names
        used = set().union(*(_names_loaded(node) for (_, node, _), k in zip(pieces, kept)
                             if k and node is not None))
        changed = False
        for i, (_, node, _) in enumerate(pieces):
            if kept[i] or not isinstance(node, (ast.Assign, ast.AnnAssign)):
                continue
            names = _assigned(node)
            if names and any(n in used or n.isupper() for n in names):
                kept[i] = changed = True
    return "\n\n".join(text for (text, _, _), k in zip(pieces, kept) if k) + "\n"


def notebook_to_source(path: Path) -> str:
    import nbformat

    try:
        notebook = nbformat.read(str(path), as_version=4)
    except UnicodeDecodeError:
        raise SubmissionError(f"{path.name}: expected a UTF-8 notebook file, found other bytes. "
                              "Save the notebook again from Jupyter.") from None
    except Exception as exc:  # nbformat raises several JSON and schema errors
        raise SubmissionError(f"{path.name}: expected a Jupyter notebook (JSON, nbformat 4), could not "
                              f"read it ({type(exc).__name__}). Save it again from Jupyter.") from None
    cells = []
    for cell in notebook.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell.cell_type != "code" or tags & {TAG_EXPERIMENT, TAG_CHECK}:
            continue
        lines = []
        for line in cell.source.splitlines():
            stripped = line.lstrip()
            if stripped.startswith(("%", "!")):
                line = line[: len(line) - len(stripped)] + "pass  # IPython magic removed by the grader"
            lines.append(line)
        cells.append(("\n".join(lines) + "\n", TAG_GRADED in tags))
    return definitions_only(cells)


def prepare(path: str | Path, dest_dir: Path) -> Path:
    """Write the module to grade into `dest_dir` and return its path."""
    path = Path(path)
    if not path.exists():
        raise SubmissionError(f"{path}: no such file; expected transfer_learning.py or .ipynb.")
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / "transfer_learning.py"
    if path.suffix == ".ipynb":
        target.write_text(notebook_to_source(path), encoding="utf-8")
    elif path.suffix == ".py":
        raw = path.read_bytes()
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
KINDS = (".py", ".ipynb", ".zip")


def discover(folder: Path) -> list[tuple[str, Path]]:
    """[(student id, path)] for every submission in `folder`: .py, .ipynb, .zip files and
    per-student folders. The id is the name without its extension; when two entries share
    one, both keep their full file names as ids."""
    entries = [p for p in sorted(Path(folder).iterdir())
               if not p.name.startswith(".") and (p.is_dir() or p.suffix in KINDS)]
    stems = [p.stem if p.is_file() else p.name for p in entries]
    return [((stem if stems.count(stem) == 1 else p.name), p) for stem, p in zip(stems, entries)]


def content_hash(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        digest.update(str(file.relative_to(path.parent if path.is_file() else path)).encode())
        digest.update(b"\0")
        try:
            digest.update(file.read_bytes())
        except OSError:
            digest.update(b"<unreadable>")
    return digest.hexdigest()


def _safe_unzip(archive: Path, dest: Path) -> None:
    import stat
    import zipfile

    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            total = sum(m.file_size for m in members)
            if total > MAX_UNPACKED:
                raise SubmissionError(f"{archive.name}: unpacks to {total >> 20} MB, more than the "
                                      f"{MAX_UNPACKED >> 20} MB allowed.")
            for member in members:
                name = member.filename
                parts = Path(name).parts
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
    except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError) as exc:
        raise SubmissionError(f"{archive.name}: expected a zip archive, could not read it "
                              f"({type(exc).__name__}).") from None


def _find_module(folder: Path, label: str) -> Path:
    candidates = [p for p in sorted(folder.rglob("*"))
                  if p.is_file() and p.suffix in (".py", ".ipynb") and not p.is_symlink()
                  and "__MACOSX" not in p.parts and ".ipynb_checkpoints" not in p.parts]
    for name in ("transfer_learning.py", "transfer_learning.ipynb"):
        named = [p for p in candidates if p.name == name]
        if named:
            return named[0]
    if len(candidates) == 1:
        return candidates[0]
    raise SubmissionError(f"{label}: expected transfer_learning.py or transfer_learning.ipynb, "
                          f"found {len(candidates)} candidate files.")


def materialize(path: Path, dest: Path) -> tuple[Path, Path]:
    """(module file to grade, the submission's folder) for any kind of submission,
    written under `dest`; nothing outside `dest` is touched."""
    path = Path(path)
    if not path.exists():
        raise SubmissionError(f"{path}: no such file or folder; expected transfer_learning.py, "
                              "a notebook, a zip or a folder.")
    unpacked = dest / "files"
    unpacked.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        for file in path.rglob("*"):
            if file.is_symlink():
                raise SubmissionError(f"{path.name}: refusing the symbolic link {file.relative_to(path)}.")
        shutil.copytree(path, unpacked, dirs_exist_ok=True)
        source = _find_module(unpacked, path.name)
    elif path.suffix == ".zip":
        _safe_unzip(path, unpacked)
        source = _find_module(unpacked, path.name)
    else:
        source = unpacked / path.name
        shutil.copyfile(path, source)
    return prepare(source, dest / "module"), source.parent


def pack(path: Path) -> tuple[str, bytes]:
    """(file name, bytes) of a submission, to send to another machine: a file as it is, a
    folder as a zip (symbolic links refused, as `materialize` refuses them)."""
    import io
    import zipfile

    path = Path(path)
    if path.is_file():
        return path.name, path.read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(path.rglob("*")):
            if file.is_symlink():
                raise SubmissionError(f"{path.name}: refusing the symbolic link {file.relative_to(path)}.")
            if file.is_file():
                archive.write(file, str(file.relative_to(path)))
    return path.name + ".zip", buffer.getvalue()
