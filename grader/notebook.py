"""Checks from inside the notebook: `check("preprocess")` after a task, `check_all()` at the end.

    from grader.notebook import check, check_all
    check("build_model")      # the items of one task (or item ids: check("frozen"))
    check_all()               # every visible item, as `grader check` runs them

A check grades the notebook as saved on disk, in a separate sandboxed worker, with the
same engine, rubric and verdicts as `grader check` and the final grading: nothing of the
student's code runs in this kernel's grader state. When a function the kernel ran last
differs from the saved notebook, the check says so (save first, then check). Items graded
after the due date are named, not run.
"""
from __future__ import annotations

import ast
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .verbs import check as check_mod
from . import engine, exercise as exercise_mod, rubric as rubric_mod
from .errors import KitError
from .modules import check_tensorflow
from .paths import default_rubric

_inputs_cache: dict = {}


def _user_namespace() -> dict:
    try:
        from IPython import get_ipython
    except ImportError:
        return {}
    shell = get_ipython()
    return shell.user_ns if shell is not None else {}


def find_notebook(notebook: str | os.PathLike | None = None,
                  exercise: exercise_mod.Exercise | None = None) -> Path:
    """The notebook to grade: the one given, else the one this kernel belongs to (as
    Jupyter and VS Code tell it), else the only notebook in the current folder, else the
    one named after the exercise's module there."""
    named = f"{(exercise or exercise_mod.load()).module_name}.ipynb"
    if notebook is not None:
        path = Path(notebook)
        if not path.is_file():
            raise KitError(f"expected a saved notebook at {path}, found no file there.")
        return path
    namespace = _user_namespace()
    for told in (namespace.get("__session__"), namespace.get("__vsc_ipynb_file__"),
                 os.environ.get("JPY_SESSION_NAME")):
        if told and str(told).endswith(".ipynb") and Path(told).is_file():
            return Path(told)
    here = sorted(Path.cwd().glob("*.ipynb"))
    if len(here) == 1:
        return here[0]
    if (Path.cwd() / named).is_file():
        return Path.cwd() / named
    raise KitError(f"expected to find this notebook's file, found {len(here)} notebooks in "
                   f"{Path.cwd()}; name it: check('preprocess', notebook='my_notebook.ipynb').")


def unsaved_functions(saved: Path, history: list[str] | None = None,
                      exercise: exercise_mod.Exercise | None = None) -> list[str]:
    """The exercise functions whose last definition run in this kernel is not in the
    saved notebook (compared by their code, ignoring blank lines and trailing spaces)."""
    contract = (exercise or exercise_mod.load()).contract
    if history is None:
        history = list(_user_namespace().get("In", []))
    latest: dict[str, str] = {}
    for source in history:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name in contract:
                latest[node.name] = ast.get_source_segment(source, node) or ""
    if not latest:
        return []
    import nbformat

    try:
        cells = nbformat.read(str(saved), as_version=4).cells
    except Exception:  # noqa: BLE001 - reported when the grading reads it
        return []
    saved_code = _normal("\n".join(c.source for c in cells if c.cell_type == "code"))
    return sorted(name for name, code in latest.items() if _normal(code) not in saved_code)


def _normal(code: str) -> str:
    return "\n".join(line.rstrip() for line in code.splitlines() if line.strip())


def select(rubric: rubric_mod.Rubric, names: tuple[str, ...]) -> tuple[list, list]:
    """(visible items to run, items graded later) for task names or item ids."""
    tasks, task_of = rubric.exercise.contract, rubric.exercise.checks.task_of
    ids = {item.id for item in rubric.items}
    unknown = [n for n in names if n not in tasks and n not in ids]
    if unknown:
        raise KitError(f"expected a task ({', '.join(tasks)}) or an item id "
                       f"({', '.join(sorted(ids))}), found {', '.join(map(repr, unknown))}.")
    chosen = [item for item in rubric.items if not names or item.id in names
              or task_of[item.check] in names]
    return ([i for i in chosen if i.visibility == "visible"],
            [i for i in chosen if i.visibility != "visible"])


def _inputs(pool: ThreadPoolExecutor, rubric: rubric_mod.Rubric, weights, data, no_verify):
    """The grading inputs (a Future), made once per kernel for the same setting: the first
    check's worker imports TensorFlow while they are made. The key holds all they are made
    from (the rubric as parsed, its data and weights, the options and $GRADER_WEIGHTS), so an
    edited rubric or a new weights file takes effect at the next check."""
    key = repr((rubric, str(weights), data, no_verify, os.environ.get("GRADER_WEIGHTS")))
    cached = _inputs_cache.get(key)
    if cached is None or (cached.done() and cached.exception() is not None):
        _inputs_cache.clear()
        _inputs_cache[key] = cached = check_mod.prepare_inputs(pool, rubric, weights, data,
                                                               no_verify)
    return cached


def run(names: tuple[str, ...], notebook=None, rubric=None, weights=None, stream=None,
        data=None, no_verify=False):
    """Grade `names` (all visible items when empty) and print the table; returns the
    report, or None when nothing could be graded (the reason is printed)."""
    stream = stream or sys.stdout
    try:
        loaded = rubric_mod.load(rubric or default_rubric())
        run_items, later = select(loaded, names)
        if notice := check_tensorflow():
            print(notice, file=stream)
        path = find_notebook(notebook, loaded.exercise)
        stale = unsaved_functions(path, exercise=loaded.exercise)
        if stale:
            print(f"note: {', '.join(stale)} differ(s) from the saved {path.name}; the check "
                  "grades the saved file: save the notebook first (Ctrl-S) to check your "
                  "latest code.", file=stream)
        report = None
        if run_items:
            with ThreadPoolExecutor(1) as pool, check_mod.Ticker(stream, live=True) as ticker:
                report = engine.grade_submission(path, loaded,
                                                 _inputs(pool, loaded, weights, data, no_verify),
                                                 include_hidden=False,
                                                 only=[i.id for i in run_items], name=path.name,
                                                 own_folder=True, progress=ticker)
            print(check_mod.format_table(report), file=stream)
        for item in later:
            print(f"{item.id}: graded after the due date (not run here)", file=stream)
        return report
    except KitError as exc:
        print(f"check: {exc}", file=stream)
        return None


def check(*names: str, notebook=None, rubric=None, weights=None, data=None,
          no_verify=False) -> None:
    """Grade one task's items (or the items named) on the saved notebook, now, and print
    the table (nothing is returned, so the cell shows the table alone). `data` overrides
    the rubric's, as `grader check --data` does: "synthetic", "cifar10" (the cache) or
    ("cifar10", PATH)."""
    if not names:
        print("check: name a task, e.g. check('preprocess'), or run check_all().")
        return
    run(names, notebook, rubric, weights, data=_data_option(data), no_verify=no_verify)


def check_all(notebook=None, rubric=None, weights=None, data=None, no_verify=False) -> None:
    """Every visible item, as `grader check NOTEBOOK` runs them."""
    run((), notebook, rubric, weights, data=_data_option(data), no_verify=no_verify)


def _data_option(data) -> list[str] | None:
    """The notebook's `data=` as the command line's `--data` values."""
    if data is None:
        return None
    return [data] if isinstance(data, str) else [str(part) for part in data]
