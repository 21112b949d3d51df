"""The student checker as an installable wheel.

A wheel (PEP 427) is a zip of the package files plus three metadata files. It is written
here directly rather than through a build backend: building needs no network (pip's
build isolation would fetch setuptools) and no checkout (it works from any install of the
kit, editable or not), and fixed timestamps give the same bytes for the same sources.

The student wheel holds the modules that `grader check` and the notebook checks import,
the exercise's package and the modules its students run (Exercise.student_modules:
`grader train` for the kit's own) -- found by following the packages' own relative
imports, so a new module travels when something the student verbs use imports it -- and
the public rubric. It holds no instructor verb (generate, calibrate, batch, ...), no
solution and no hidden item. An exercise kept outside the kit travels inside the wheel's
grader/exercises.
"""
from __future__ import annotations

import ast
import base64
import hashlib
import io
import re
import zipfile
from importlib import metadata
from pathlib import Path

from .errors import KitError
from .modules import tensorflow_requirements
from .paths import PACKAGE, RUBRIC_NAME

KIT_DISTRIBUTION = "vgg-transfer-kit"
STUDENT_DISTRIBUTION = "vgg-transfer-check"
# The modules a student runs; everything they import comes along (and the exercise's).
STUDENT_ENTRY = ("__init__", "__main__", "cli", "verbs.check", "notebook", "worker", "sandbox", "exercises")
_DATE = (2020, 1, 1, 0, 0, 0)


def module_file(module: str, package: Path = PACKAGE) -> Path:
    """The file of a package module named with dots below the package ("checks",
    "exercises.NAME" for a subpackage's __init__, "engine.protocol")."""
    path = package.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def _on_the_way(candidates: list[list[str]], package: Path = PACKAGE) -> set[str]:
    """The package modules that imports of these dotted paths (as parts) name, and the
    __init__ of each subpackage on their way."""
    return {".".join(parts[:depth]) for parts in candidates for depth in range(1, len(parts) + 1)
            if module_file(".".join(parts[:depth]), package).is_file()}


def _imports_of(module: str, package: Path = PACKAGE) -> set[str]:
    """The package modules `module` imports with relative imports (any level, at any
    depth in the file), and the __init__ of each subpackage on their way."""
    file = module_file(module, package)
    tree = ast.parse(file.read_text(encoding="utf-8"))
    if module == "__init__":
        here = []
    else:
        here = module.split(".")[:-1] if file.name != "__init__.py" else module.split(".")
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.ImportFrom) or node.level == 0:
            continue
        if node.level - 1 > len(here):
            continue  # above the package: not ours
        base = here[:len(here) - (node.level - 1)]
        stem = base + (node.module.split(".") if node.module else [])
        candidates = [stem] if node.module else []
        candidates += [stem + [alias.name] for alias in node.names if alias.name != "*"]
        found |= _on_the_way(candidates, package)
    return found


def student_modules(package: Path = PACKAGE, entry: tuple[str, ...] = STUDENT_ENTRY) -> list[str]:
    """The closure of `entry` under the package's relative imports (dotted names)."""
    todo, seen = list(entry), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_imports_of(name, package) - seen)
    return sorted(seen)


def kit_requirements() -> list[str]:
    """The installed kit's requirements, extras left out (pip requirement lines)."""
    return _kit_metadata()[1]


def _kit_metadata() -> tuple[str, list[str]]:
    """The installed kit's version and its requirements without extras."""
    try:
        version = metadata.version(KIT_DISTRIBUTION)
        requires = metadata.requires(KIT_DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        raise KitError(f"expected the {KIT_DISTRIBUTION} distribution to be installed (its "
                       "requirements go into the wheel), found none; install the kit with "
                       "pip first.") from None
    return version, [r for r in requires if "extra ==" not in r]


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


def kit_imports(files: dict[str, bytes]) -> set[str]:
    """The kit's modules that package files (by their name in the wheel, grader/...)
    import: with relative imports reaching the package's top, or as grader.X."""
    found = set()
    for name, data in files.items():
        depth = len(Path(name).parts) - 2  # folders below grader/
        for node in ast.walk(ast.parse(data)):
            if isinstance(node, ast.Import):  # import grader.x
                found |= _on_the_way([a.name.split(".")[1:] for a in node.names
                                      if a.name.startswith("grader.")])
                continue
            if not isinstance(node, ast.ImportFrom):
                continue
            stem = node.module.split(".") if node.module else []
            if node.level == 0 and stem[:1] == ["grader"]:  # from grader.x import y
                stem = stem[1:]
            elif node.level != depth + 1:
                continue
            found |= _on_the_way(([stem] if stem else [])
                                 + [stem + [a.name] for a in node.names if a.name != "*"])
    return found


def exercise_files(exercise) -> dict[str, bytes]:
    """The files of an exercise's package a wheel carries, by their name in the wheel: the
    closure of its __init__ and of the modules its students run, under the kit's import
    rules. A kit's own exercise is found in the package; one from outside, in its folder."""
    own = PACKAGE / "exercises" / exercise.name
    for folder in exercise.search_path:
        if (Path(folder) / exercise.name / "__init__.py").is_file():
            own = Path(folder) / exercise.name
    entry = ("__init__", "definition", *exercise.public_modules, *exercise.student_modules)
    names = [n for n in student_modules(own, entry) if module_file(n, own).is_relative_to(own)]
    return {f"grader/exercises/{exercise.name}/{module_file(n, own).relative_to(own).as_posix()}":
            module_file(n, own).read_bytes() for n in names}


def write_wheel(dest_dir: Path, distribution: str, summary: str, modules: list[str],
                rubric_text: str | None = None, extras: dict[str, list[str]] | None = None,
                leave_out: set[str] = frozenset(), add: list[str] = (),
                more: dict[str, bytes] | None = None) -> Path:
    """Write `distribution`'s wheel into dest_dir: the given grader modules (and the
    files of `more`, by their name in the wheel), the rubric as package data (if any), the
    kit's requirements but those named in `leave_out` (and those in `add`), and the
    `grader` command."""
    version, requires = _kit_metadata()
    requires = [r for r in requires if _name_of(r) not in leave_out] + list(add)
    files: dict[str, bytes] = {
        f"grader/{module_file(name).relative_to(PACKAGE).as_posix()}": module_file(name).read_bytes()
        for name in modules}
    files.update(more or {})
    if rubric_text is not None:
        files[f"grader/rubrics/{RUBRIC_NAME}"] = rubric_text.encode("utf-8")
    stem = f"{re.sub(r'[-_.]+', '_', distribution)}-{version}"
    info = f"{stem}.dist-info"
    lines = ["Metadata-Version: 2.1", f"Name: {distribution}", f"Version: {version}",
             f"Summary: {summary}", "Requires-Python: >=3.10"]
    lines += [f"Requires-Dist: {r}" for r in requires]
    for extra, packages in (extras or {}).items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {p} and extra == "{extra}"' if ";" in p
                  else f'Requires-Dist: {p}; extra == "{extra}"' for p in packages]
    files[f"{info}/METADATA"] = ("\n".join(lines) + "\n").encode()
    files[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: grader.wheel\n"
                              b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    files[f"{info}/entry_points.txt"] = b"[console_scripts]\ngrader = grader.cli:main\n"
    files[f"{info}/top_level.txt"] = b"grader\n"
    record = [f"{name},{_record_hash(data)},{len(data)}" for name, data in files.items()]
    files[f"{info}/RECORD"] = ("\n".join(record + [f"{info}/RECORD,,"]) + "\n").encode()
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / f"{stem}-py3-none-any.whl"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            entry = zipfile.ZipInfo(name, date_time=_DATE)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, data)
    path.write_bytes(buffer.getvalue())
    return path


# TensorFlow and what it pins itself: a student's own TensorFlow stays as it is. TensorBoard
# is still required (tensorflow-cpu does not bring it, and tf.summary needs it), in any
# version, so that the one TensorFlow pins is kept.
TENSORFLOW_STACK = {"tensorflow", "tensorflow-cpu", "keras", "tensorboard"}
TENSORBOARD_ANY = "tensorboard>=2.16"


def _name_of(requirement: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def student_wheel(dest_dir: Path, public_rubric_text: str, exercise=None) -> Path:
    """The student checker: student modules, the rubric's exercise and the public rubric
    as its default. It installs beside whatever TensorFlow the student has: TensorFlow
    (any of its distributions, in the tested versions) is checked when the checker runs
    and installed only with the `tensorflow` extra, so pip never puts a second TensorFlow
    over the first. `exercise`: the rubric's, when it is kept outside the kit (the public
    rubric names no exercise_path)."""
    import yaml

    from .exercise import DEFAULT, load

    exercise = exercise or load(yaml.safe_load(public_rubric_text).get("exercise", DEFAULT))
    own = exercise_files(exercise)
    return write_wheel(dest_dir, STUDENT_DISTRIBUTION,
                       f"Local checker for the exercise: {exercise.title}",
                       student_modules(entry=STUDENT_ENTRY + tuple(kit_imports(own))),
                       public_rubric_text, more=own,
                       extras={"tensorflow": tensorflow_requirements(), "notebook": ["jupyterlab>=4"]},
                       leave_out=TENSORFLOW_STACK, add=[TENSORBOARD_ANY])
