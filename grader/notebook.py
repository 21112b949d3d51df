"""Checks from inside the notebook: `check("preprocess")` after a task, `check_all()` at the end.

    from grader.notebook import check, check_all
    check("build_model")      # the items of one task (or item ids: check("frozen"))
    check_all()               # every visible item, as `grader check` runs them

A check grades the notebook this kernel runs, as saved on disk (which_notebook: as the
frontend names it, else the folder's notebook holding the cells this kernel ran), in a
separate sandboxed worker, with the same engine, rubric and verdicts as `grader check` and
the final grading: nothing of the student's code runs in this kernel's grader state. When
a function the kernel ran last differs from the saved notebook, the check says so (save
first, then check). Items graded after the due date are named, not run.

The first check of a session waits for its worker to import TensorFlow; each check then
leaves the next one's worker importing it (engine.Standby), so later checks do not.
"""
from __future__ import annotations

import ast
import atexit
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .verbs import check as check_mod
from . import engine, exercise as exercise_mod, rubric as rubric_mod, sandbox as sandbox_mod
from .errors import KitError
from .modules import check_tensorflow
from .options import DataOptions
from .paths import default_rubric

_inputs_cache: dict = {}
_standby: list = []
"""the worker waiting for the next check (engine.Standby), at most one"""
COLAB_COPY = ".colab_notebook.ipynb"
"""where a check in Colab writes the notebook Colab holds, in the kernel's folder"""


def _user_namespace() -> dict:
    try:
        from IPython import get_ipython
    except ImportError:
        return {}
    shell = get_ipython()
    return shell.user_ns if shell is not None else {}


def find_notebook(notebook: str | os.PathLike | None = None,
                  exercise: exercise_mod.Exercise | None = None) -> Path:
    """The notebook to grade (which_notebook, without its note)."""
    return which_notebook(notebook, exercise)[0]


def which_notebook(notebook: str | os.PathLike | None = None,
                   exercise: exercise_mod.Exercise | None = None,
                   history: list[str] | None = None) -> tuple[Path, str]:
    """(the notebook to grade, "" or a note saying how it was chosen). The one given; else
    the one this kernel belongs to as its frontend tells it (JupyterLab and Notebook:
    `__session__`, $JPY_SESSION_NAME; VS Code: `__vsc_ipynb_file__`; Colab: the notebook
    Colab holds, written to COLAB_COPY); else, among the current folder's notebooks, the
    one holding the cell running now and most of the cells this kernel ran (nbclient,
    `jupyter execute`, a frontend that does not say). When no notebook there holds what
    this kernel ran, the note says which file is graded and how to name another."""
    named = f"{(exercise or exercise_mod.load()).module_name}.ipynb"
    if notebook is not None:
        path = Path(notebook)
        if not path.is_file():
            raise KitError(f"expected a saved notebook at {path}, found no file there.")
        return path, ""
    namespace = _user_namespace()
    for told in (namespace.get("__session__"), namespace.get("__vsc_ipynb_file__"),
                 os.environ.get("JPY_SESSION_NAME")):
        if told and str(told).endswith(".ipynb"):
            # a session name may be relative to the server's folder, not the kernel's
            for path in (Path(told), Path.cwd() / Path(told).name):
                if path.is_file():
                    return path, ""
    if "google.colab" in sys.modules and (path := _colab_notebook()) is not None:
        return path, ""
    here = sorted(p for p in Path.cwd().glob("*.ipynb") if not p.name.startswith("."))
    if not here:
        raise KitError(f"expected to find this notebook's file, found 0 notebooks in "
                       f"{Path.cwd()}; name it: check('preprocess', notebook='my_notebook.ipynb').")
    if history is None:
        history = _history()
    ranked = rank_notebooks(here, history)
    best = ranked[0]
    if best[1]:  # it holds the cell running now
        ties = [path for path, running, count in ranked if (running, count) == best[1:]]
        if len(ties) == 1:
            return best[0], ""
        return best[0], (f"{len(ties)} notebooks here hold the cells this kernel ran "
                         f"({', '.join(p.name for p in ties)}); graded {best[0].name}, the last "
                         f"saved. To grade another: check(..., notebook='{ties[-1].name}').")
    if not history and len(here) == 1:  # not run by a kernel: nothing to compare with
        return here[0], ""
    chosen = Path.cwd() / named if (Path.cwd() / named).is_file() else None
    if chosen is None:
        if len(here) > 1:
            raise KitError(f"expected to find this notebook's file, found {len(here)} notebooks "
                           f"in {Path.cwd()}, none holding the cell being run; save it, or name "
                           "it: check('preprocess', notebook='my_notebook.ipynb').")
        chosen = here[0]
    return chosen, (f"graded {chosen.name}, which does not hold the cell being run (this "
                    "kernel's notebook may be unsaved, or elsewhere): save it, or name it: "
                    "check(..., notebook='my_notebook.ipynb').")


def rank_notebooks(paths: list[Path], history: list[str]) -> list[tuple[Path, bool, int]]:
    """(notebook, holds the cell running now (history's last), how many of the other cells
    run hold), best first: the most matches, then the last saved, then by name. Cells
    are compared by their code, ignoring blank lines and trailing spaces; a notebook
    that cannot be read matches nothing."""
    ran = [_normal(code) for code in history if code and code.strip()]
    running = ran[-1] if ran else None
    ranked = []
    for path in paths:
        cells = _code_cells(path)
        held = {code for code in set(ran) if code in cells}
        ranked.append((path, running is not None and running in held, len(held),
                       _mtime(path)))
    ranked.sort(key=lambda r: (r[1], r[2], r[3], r[0].name), reverse=True)
    return [r[:3] for r in ranked]


def _code_cells(path: Path) -> set[str]:
    try:
        cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
        return {_normal("".join(c["source"]) if isinstance(c["source"], list) else c["source"])
                for c in cells if c.get("cell_type") == "code"}
    except Exception:  # noqa: BLE001 - not this kernel's notebook, whatever it holds
        return set()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _history() -> list[str]:
    """The cells this kernel ran, as typed (IPython's raw input history; `In` otherwise)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return []
    shell = get_ipython()
    if shell is None:
        return []
    raw = getattr(getattr(shell, "history_manager", None), "input_hist_raw", None)
    return list(raw if raw is not None else shell.user_ns.get("In", []))


def _colab_notebook() -> Path | None:
    """The notebook Colab holds for this kernel, written to COLAB_COPY in the kernel's
    folder (beside the student's files); None when Colab does not answer."""
    try:
        from google.colab import _message  # type: ignore

        answer = _message.blocking_request("get_ipynb", request="", timeout_sec=10)
        nb = answer["ipynb"]
        path = Path.cwd() / COLAB_COPY
        path.write_text(json.dumps(nb), encoding="utf-8")
        return path
    except Exception:  # noqa: BLE001 - not Colab after all, or an older one
        return None


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


def _setting(rubric: rubric_mod.Rubric, options: DataOptions) -> str:
    """All the grading inputs are made from (the rubric as parsed, its data and weights,
    the options and $GRADER_WEIGHTS): the key of the cached inputs and of the standby."""
    return repr((rubric, options, os.environ.get("GRADER_WEIGHTS")))


def _inputs(pool: ThreadPoolExecutor, rubric: rubric_mod.Rubric, options: DataOptions):
    """The grading inputs (a Future), made once per kernel for the same setting: the first
    check's worker imports TensorFlow while they are made. The key holds all they are made
    from (_setting), so an edited rubric or a new weights file takes effect at the next
    check."""
    key = _setting(rubric, options)
    cached = _inputs_cache.get(key)
    if cached is None or (cached.done() and cached.exception() is not None):
        _inputs_cache.clear()
        _inputs_cache[key] = cached = check_mod.prepare_inputs(pool, rubric, options)
    return cached


def _take_standby(key: str) -> engine.Standby | None:
    """The worker left waiting by the last check if it was started for this setting (the
    engine checks the rest: sandbox, folders, environment); any other is discarded."""
    standby = _standby.pop() if _standby else None
    if standby is not None and standby.key != key:
        standby.discard()
        return None
    return standby


def _leave_standby(key: str, path: Path, exercise: exercise_mod.Exercise) -> None:
    """Start the next check's worker: it imports TensorFlow while the student works."""
    discard_standby()
    try:
        _standby.append(engine.Standby(sandbox_mod.default(), path.resolve().parent, exercise,
                                       key))
    except Exception:  # noqa: BLE001 - the next check starts its own worker, as the first did
        pass


@atexit.register
def discard_standby() -> None:
    """End the waiting worker, if any (also when the kernel exits)."""
    while _standby:
        _standby.pop().discard()


def run(names: tuple[str, ...], notebook=None, rubric=None, stream=None,
        options: DataOptions = DataOptions()):
    """Grade `names` (all visible items when empty) and print the table; returns the
    report, or None when nothing could be graded (the reason is printed)."""
    stream = stream or sys.stdout
    try:
        loaded = rubric_mod.load(rubric or default_rubric())
        run_items, later = select(loaded, names)
        if notice := check_tensorflow():
            print(notice, file=stream)
        path, how = which_notebook(notebook, loaded.exercise)
        if how:
            print(f"note: {how}", file=stream)
        stale = unsaved_functions(path, exercise=loaded.exercise)
        if stale:
            print(f"note: {', '.join(stale)} differ(s) from the saved {path.name}; the check "
                  "grades the saved file: save the notebook first (Ctrl-S) to check your "
                  "latest code.", file=stream)
        report = None
        if run_items:
            if loaded.exercise.check_options:
                loaded.exercise.check_options(options)
            key = _setting(loaded, options)
            with ThreadPoolExecutor(1) as pool, check_mod.Ticker(stream, live=True) as ticker:
                report = engine.grade_submission(path, loaded,
                                                 _inputs(pool, loaded, options),
                                                 include_hidden=False,
                                                 only=[i.id for i in run_items], name=path.name,
                                                 own_folder=True, progress=ticker,
                                                 standby=_take_standby(key))
            print(check_mod.format_table(report), file=stream)
            _leave_standby(key, path, loaded.exercise)
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
    _run_with(names, notebook, rubric, weights, data, no_verify)


def check_all(notebook=None, rubric=None, weights=None, data=None, no_verify=False) -> None:
    """Every visible item, as `grader check NOTEBOOK` runs them."""
    _run_with((), notebook, rubric, weights, data, no_verify)


def _run_with(names, notebook, rubric, weights, data, no_verify) -> None:
    """`run` with the notebook's `data=` ("synthetic", "cifar10" or ("cifar10", PATH)),
    `weights=` and `no_verify=` read as the command line's options are."""
    try:
        options = DataOptions.parse(data if data is None or isinstance(data, str)
                                    else [str(part) for part in data], weights, no_verify)
    except KitError as exc:
        print(f"check: {exc}")
        return
    run(names, notebook, rubric, options=options)
