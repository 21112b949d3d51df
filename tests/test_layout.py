"""The house rules docs/development.md states: no module over MAX_MODULE_LINES lines, no
function over MAX_FUNCTION_LINES but those its "Long functions" list names, and no verb
importing another verb or an exercise's module; and the tests' folders mirror the package."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "grader"
MAX_MODULE_LINES = 550
MAX_FUNCTION_LINES = 60


def _modules():
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def _listed_long_functions() -> set[str]:
    text = (ROOT / "docs" / "development.md").read_text(encoding="utf-8")
    section = text.split("## Long functions", 1)[1].split("\n## ", 1)[0]
    return {name.rsplit(".", 1)[-1] for name in re.findall(r"`([\w.]+)`", section)}


def test_no_module_is_too_long():
    long = [f"{p.relative_to(ROOT)}: {n}" for p in _modules()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES]
    assert not long, long


def test_long_functions_are_the_ones_the_docs_explain():
    listed = _listed_long_functions()
    found = set()
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) \
                    and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                found.add(node.name)
    assert found <= listed, f"explain these in docs/development.md or split them: {found - listed}"
    assert not listed - found - {"py"}, f"listed but no longer long: {listed - found}"


def _imports(path: Path) -> set[str]:
    """Every grader module `path` imports, as a dotted name below grader."""
    package = ".".join(path.relative_to(PACKAGE).parent.parts)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".") if package else []
                base = parts[:len(parts) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("grader"):
                stem = node.module.removeprefix("grader").lstrip(".")
            else:
                continue
            found.add(stem)
            found.update(f"{stem}.{alias.name}".lstrip(".") for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("grader.") for a in node.names if a.name.startswith("grader."))
    return found


def test_no_verb_imports_another_verb_or_an_exercise():
    verbs = {p.stem for p in (PACKAGE / "verbs").glob("*.py") if p.stem != "__init__"}
    wrong = []
    for path in (PACKAGE / "verbs").glob("*.py"):
        for name in _imports(path):
            if name.startswith("exercises.") or (name.startswith("verbs.") and
                                                  name.split(".")[1] in verbs - {path.stem}):
                wrong.append(f"{path.name} imports {name}")
    assert not wrong, wrong


def test_the_import_reader_sees_what_it_should(tmp_path):
    verbs = tmp_path / "grader" / "verbs"
    verbs.mkdir(parents=True)
    probe = verbs / "probe.py"
    probe.write_text("from . import batch\nfrom ..exercises.x import y\nimport grader.copying\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "grader"
    try:
        assert {"verbs.batch", "exercises.x.y", "copying"} <= _imports(probe)
    finally:
        PACKAGE = saved


DATA_FOLDERS = {"corpus", "attacks", "exercises"}
"""tests/ folders that hold what the tests grade or load, not tests"""


def test_the_tests_mirror_the_package():
    """A folder of tests is named after a package of grader/ (or the kit's exercise), and a
    top-level test file after a module of grader/ or a concern the docs name."""
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    exercises = {p.name for p in (PACKAGE / "exercises").iterdir() if (p / "__init__.py").is_file()}
    tests = ROOT / "tests"
    folders = {p.name for p in tests.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders - DATA_FOLDERS <= packages | exercises, folders - DATA_FOLDERS - packages - exercises
    for folder in folders - DATA_FOLDERS:
        assert any((tests / folder).glob("test_*.py")), folder
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    concerns = {"docs", "layout"}  # the house itself
    top = {p.stem.removeprefix("test_") for p in tests.glob("test_*.py")}
    # test_NAME_ASPECT.py: one aspect of NAME's, in a file of its own (test_corpus_variants.py)
    unmatched = {t for t in top if not any(t == m or t.startswith(f"{m}_") for m in modules | concerns)}
    assert not unmatched, unmatched
