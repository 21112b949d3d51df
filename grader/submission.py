"""Hand-ins as files, treated as data: a class folder read into entries (one per student,
with what refused each), bounded archives unpacked safely, plain files read without
following links, content hashes, and the module to grade materialised from any of them
(notebooks through grader/cells.py).
"""
from __future__ import annotations

import functools
import json
import os
import shutil
import stat as stat_mod
from dataclasses import dataclass
from pathlib import Path

from .errors import SubmissionError
from .plainfile import MAX_MODULE_BYTES, MAX_NOTEBOOK_BYTES, mb, open_plain, read_plain
from . import exercise as exercise_mod, names

from .cells import (
    _cell_source, _cell_tags, _dropped, _the, notebook_to_source, prepare, read_notebook_cells
)


# ---------------------------------------------------------------- batch submissions

MAX_UNPACKED = 50 << 20  # a zip may unpack to at most this many bytes
MAX_MEMBERS = 10_000     # and hold at most this many files and folders
MAX_ZIP_BYTES = MAX_UNPACKED       # a zip file itself
MAX_FOLDER_BYTES = MAX_UNPACKED    # a student's folder, all its files together
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
            return (f"{label}: is {mb(info.st_size)}, more than the {mb(limit)} allowed for a "
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
            return (f"{label}: holds more than the {mb(MAX_FOLDER_BYTES)} allowed for a "
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
    does not regrade it: file names (as bytes) and contents, read in chunks as `read`
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
    safe_unzip(archive, dest, MAX_CLASS_MEMBERS, MAX_CLASS_UNPACKED,
                "download the class again, or unpack it and pass the folder")


def safe_unzip(archive: Path, dest: Path, max_members: int = MAX_MEMBERS,
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


def find_module(folder: Path, label: str, exercise: exercise_mod.Exercise | None = None) -> Path:
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


def _copy_plain(fd: int, target: Path, budget: list[int], label: str) -> None:
    with os.fdopen(fd, "rb") as source, open(target, "wb") as out:
        while chunk := source.read(1 << 20):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise SubmissionError(f"{label}: holds more than the {mb(MAX_FOLDER_BYTES)} "
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


@dataclass
class Submission:
    """One submission read once: what was handed in copied into a private folder (a file
    as it is, a zip unpacked, a folder copied through descriptors), with the hash, the
    module, the kept code and the answers taken from that copy. Grading, the written
    answers and similarity all read the copy, so what is graded is what was hashed, even
    if the student's files change meanwhile. `discard()` removes the copy."""
    source: Path
    """the submission as handed in"""
    work: Path
    """the private folder everything below is in (a grading's work folder)"""
    kept: Path
    """the copy of what was handed in: the file, the zip, or the folder"""
    folder: Path
    """its files as the module sees them (a zip unpacked)"""
    module: Path
    """the module file in `folder` (.py or .ipynb)"""
    beside: Path | None = None
    """a single .py file's NAME.answers.md, copied (None when there is none)"""
    beside_problem: str = ""
    """why that file could not be copied"""

    @functools.cached_property
    def hash(self) -> str:
        """content_hash of what was handed in, computed on the copy (the same value)."""
        return content_hash(self.kept)

    def code(self, exercise: exercise_mod.Exercise | None = None) -> str:
        """The code as the grader keeps it (see graded_code)."""
        return graded_code(self.module, exercise)

    def pack(self) -> tuple[str, bytes]:
        """(file name, bytes) to send to another machine, named as handed in."""
        return pack(self.kept, self.source.name, copied=True)

    def discard(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


def read(path: Path, work: Path, exercise: exercise_mod.Exercise | None = None) -> Submission:
    """Read any kind of submission once into `work/in` (nothing outside `work` is touched,
    no link is followed: a student checking their own file has it resolved first, see
    engine.collect_submission). Raises SubmissionError, saying why, when it cannot be read."""
    path = Path(path)
    if not os.path.lexists(path):
        raise SubmissionError(f"{path}: no such file or folder; expected {_the(exercise).module_name}.py, "
                              "a notebook, a zip or a folder.")
    into = Path(work) / "in"
    files = into / "files"
    files.mkdir(parents=True, exist_ok=True)
    beside, problem = None, ""
    if stat_mod.S_ISDIR(path.lstat().st_mode):
        copy_folder(path, files)
        kept = files
    elif path.suffix == ".zip":
        kept = into / path.name
        kept.write_bytes(read_plain(path, MAX_ZIP_BYTES))
        safe_unzip(kept, files)
    else:
        kept = files / path.name
        kept.write_bytes(read_plain(path, _LIMITS.get(path.suffix, MAX_MODULE_BYTES)))
        if path.suffix == ".py":
            beside, problem = _copy_beside(path, files)
    module = kept if kept.is_file() and kept.suffix != ".zip" else find_module(files, path.name, exercise)
    return Submission(path, Path(work), kept, files, module, beside, problem)


def _copy_beside(path: Path, files: Path) -> tuple[Path | None, str]:
    """A single .py file's NAME.answers.md copied into `files`: (the copy or None, why it
    could not be copied). Never raises: the answers are not the module."""
    from .answers import MAX_FILE_BYTES

    answers = path.with_name(f"{path.stem}.answers.md")
    try:
        if not answers.is_file() or answers.is_symlink():  # a link beside it is not read
            return None, ""
        copy = files / answers.name
        copy.write_bytes(read_plain(answers, MAX_FILE_BYTES))
        return copy, ""
    except SubmissionError as exc:
        return None, str(exc)
    except (OSError, ValueError) as exc:  # a name too long for NAME.answers.md, and the like
        return None, f"{names.student_id(answers.name)}: could not be read ({type(exc).__name__})"


def materialize(path: Path, dest: Path, exercise: exercise_mod.Exercise | None = None
                ) -> tuple[Path, Path]:
    """(module file to grade, the submission's folder) for any kind of submission,
    read once (see `read`) into `dest`."""
    handed = read(path, dest, exercise)
    return prepare(handed.module, Path(dest) / "in" / "module", exercise), handed.folder


def pack(path: Path, name: str | None = None, copied: bool = False) -> tuple[str, bytes]:
    """(file name, bytes) of a submission, to send to another machine: a file as it is, a
    folder as a zip; read as `read` reads them (no link followed). `name`: the name it was
    handed in under (default: its own); `copied`: the folder is already a private copy made
    by `read`, zipped as it is rather than copied once more."""
    import io
    import tempfile
    import zipfile

    path = Path(path)
    name = name or path.name
    if not stat_mod.S_ISDIR(path.lstat().st_mode):
        return name, read_plain(path, _LIMITS.get(path.suffix, MAX_MODULE_BYTES))
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="grader-pack-") as tmp:
        folder = path if copied else Path(tmp)
        if not copied:
            copy_folder(path, folder)
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted(folder.rglob("*")):
                if file.is_file():
                    archive.write(file, str(file.relative_to(folder)))
    return name + ".zip", buffer.getvalue()


def graded_code(path: Path, exercise: exercise_mod.Exercise | None = None) -> str:
    """The code of a submission as the grader keeps it, without running anything: a .py
    file's text, a notebook's kept statements as written (`notebook_to_source(plain=True)`),
    the module inside a zip or a folder. Raises SubmissionError when it cannot be read."""
    import tempfile

    path = Path(path)
    if path.is_file() and path.suffix == ".zip":
        with tempfile.TemporaryDirectory(prefix="grader-code-") as tmp:
            return read(path, Path(tmp), exercise).code(exercise)
    if path.is_dir():
        return graded_code(find_module(path, path.name, exercise), exercise)
    if path.suffix == ".ipynb":
        return notebook_to_source(path, plain=True, exercise=exercise)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SubmissionError(f"{path.name}: expected UTF-8 Python source, found other bytes.") from None
    except OSError as exc:
        raise SubmissionError(f"{path.name}: could not be read ({exc.strerror}).") from None
