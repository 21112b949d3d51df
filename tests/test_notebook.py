"""grader.notebook: the check cells of the generated notebook, executed with nbclient."""
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
import pytest

from grader import corpus
from grader import notebook, rubric as rubric_mod
from grader.errors import KitError
from grader.options import DataOptions
from grader.cells import TAG_CHECK, TAG_EXPERIMENT, notebook_to_source
from kit import DEFAULT_RUBRIC, ROOT

TOTAL = re.compile(r"total: ([\d.]+) / ([\d.]+) points")


def _check_cells(nb) -> list:
    return [c for c in nb.cells if TAG_CHECK in c.metadata.get("tags", []) and "check" in c.source
            and "import" not in c.source]


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.output_type == "stream")


def _execute(path: Path, monkeypatch):
    from nbclient import NotebookClient

    # The kernel is this interpreter's (it has the kit and TensorFlow).
    monkeypatch.setenv("PATH", os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    nb = nbformat.read(str(path), as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def _without_experiments(tmp_path: Path, edits=(), check_all: bool = True) -> Path:
    """The instructor notebook minus its long experiment cells (and its final check_all()
    unless `check_all`), with `edits` applied to its code, saved where the kernel will run."""
    nb = nbformat.read(str(ROOT / "solutions" / "transfer_learning.ipynb"), as_version=4)
    nb.cells = [c for c in nb.cells if TAG_EXPERIMENT not in c.metadata.get("tags", [])
                and (check_all or c.source != "check_all()")]
    for old, new in edits:
        hits = [c for c in nb.cells if old in c.source]
        assert len(hits) == 1, old
        hits[0].source = hits[0].source.replace(old, new, 1)
    path = tmp_path / "transfer_learning.ipynb"
    nbformat.write(nb, str(path))
    return path


def _totals(nb) -> dict[str, tuple[float, float]]:
    """{check cell source: (score, max)} from the executed check cells."""
    found = {}
    for cell in _check_cells(nb):
        text = _text(cell)
        match = TOTAL.search(text)
        assert match, f"{cell.source}: no table in its output:\n{text}"
        found[cell.source] = (float(match[1]), float(match[2]))
    return found


def test_generated_notebooks_have_a_check_after_each_task_and_check_all_last():
    for folder in ("skeletons", "solutions"):
        nb = nbformat.read(str(ROOT / folder / "transfer_learning.ipynb"), as_version=4)
        sources = [c.source for c in _check_cells(nb)]
        assert sources == ["check('preprocess')", "check('build_model')", "check('make_dataset')",
                           "check('train')", "check('restore_checkpoint')", "check_all()"]
        assert nb.cells[-1].source == "check_all()"


def test_check_cells_never_reach_the_graded_module(tmp_path):
    source = notebook_to_source(ROOT / "solutions" / "transfer_learning.ipynb")
    assert "import grader" not in source and "from grader" not in source
    assert "check(" not in source and "check_all" not in source
    # a check cell that lost its tag (or was copied) keeps nothing either
    untagged = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from grader.notebook import check, check_all\nimport grader\ncheck('train')\n"
        "def preprocess(images):\n    return images\n")])
    path = tmp_path / "untagged.ipynb"
    nbformat.write(untagged, str(path))
    source = notebook_to_source(path)
    assert "grader" not in source.replace("__grader_", "") and "check(" not in source
    namespace = {}
    exec(compile(source, "nb", "exec"), namespace)
    assert namespace["preprocess"](3) == 3


@pytest.mark.slow
def test_solved_notebook_checks_every_task_at_full_marks(tmp_path, monkeypatch):
    nb = _execute(_without_experiments(tmp_path), monkeypatch)
    totals = _totals(nb)
    assert all(score == maximum > 0 for score, maximum in totals.values()), totals
    shipped = rubric_mod.load(DEFAULT_RUBRIC)
    visible = sum(i.points for i in shipped.items if i.visibility == "visible")
    assert totals["check_all()"] == (visible, visible)
    text = _text(_check_cells(nb)[-1])
    for item in shipped.items:
        if item.visibility != "visible":
            assert f"{item.id}: graded after the due date (not run here)" in text
    assert "grading: " in "".join(_text(c) for c in _check_cells(nb))  # progress was shown


@pytest.mark.slow
def test_a_broken_task_costs_only_its_own_check(tmp_path, monkeypatch):
    variant = next(v for v in corpus.load_variants() if v.name == "no_shuffle")
    assert variant.base == corpus.REFERENCE and variant.loses == {"pipeline"}
    # Each task's check cell runs; check_all() would only repeat them (the solved notebook
    # above runs it).
    nb = _execute(_without_experiments(tmp_path, variant.edits, check_all=False), monkeypatch)
    totals = _totals(nb)
    assert len(totals) == 5 and "check_all()" not in totals
    lost = {source for source, (score, maximum) in totals.items() if score < maximum}
    assert lost == {"check('make_dataset')"}, totals
    pipeline = next(i for i in rubric_mod.load(DEFAULT_RUBRIC).items if i.id == "pipeline")
    for source in lost:
        score, maximum = totals[source]
        assert maximum - score < pipeline.points + 1e-9


def test_unknown_names_and_missing_notebooks_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    notebook.check("preprocces")
    out = capsys.readouterr().out.strip()
    assert out.count("\n") == 0 and "expected a task" in out and "'preprocces'" in out
    notebook.check("preprocess")
    out = capsys.readouterr().out.strip()
    assert out.startswith("check: expected to find this notebook's file, found 0 notebooks")


def test_a_wrong_data_file_is_one_line_and_an_edited_rubric_is_read_again(tmp_path, monkeypatch, capsys):
    """The notebook's check() takes the course's data setting as `grader check` does, and
    its cached inputs follow the rubric: edit the rubric's data and the next check uses it."""
    monkeypatch.chdir(tmp_path)
    path = _without_experiments(tmp_path)
    notebook.check("interface", notebook=path, data=("cifar10", str(tmp_path / "missing.tar.gz")))
    out = capsys.readouterr().out.strip()
    assert out.count("\n") == 0 and "missing.tar.gz: no such file or folder" in out
    rubric_file = tmp_path / "rubric.yaml"
    rubric_file.write_text("schema_version: 1\nitems:\n- {id: interface, title: I, points: 1, check: interface}\n")
    with notebook.ThreadPoolExecutor(1) as pool:
        first = notebook._inputs(pool, rubric_mod.load(rubric_file), DataOptions())
        assert notebook._inputs(pool, rubric_mod.load(rubric_file), DataOptions()) is first
        rubric_file.write_text(rubric_file.read_text() + "data: {kind: cifar10, path: missing.tar.gz}\n")
        second = notebook._inputs(pool, rubric_mod.load(rubric_file), DataOptions())
        assert second is not first
        with pytest.raises(KitError, match="missing.tar.gz: no such file or folder"):
            second.result()


def test_unsaved_edits_are_named(tmp_path):
    path = _without_experiments(tmp_path)
    saved = [c.source for c in nbformat.read(str(path), as_version=4).cells if c.cell_type == "code"]
    preprocess = next(s for s in saved if s.lstrip().startswith("def preprocess") or "\ndef preprocess" in s)
    assert notebook.unsaved_functions(path, history=saved) == []
    edited = preprocess.replace("def preprocess(images):", "def preprocess(images):\n    pass")
    assert notebook.unsaved_functions(path, history=saved + [edited]) == ["preprocess"]


def test_select_names_tasks_and_items():
    shipped = rubric_mod.load(DEFAULT_RUBRIC)
    run, later = notebook.select(shipped, ("train",))
    assert [i.id for i in run] == ["training", "accuracy_quick"]
    assert [i.id for i in later] == ["accuracy"]
    run, _ = notebook.select(shipped, ("frozen",))
    assert [i.id for i in run] == ["frozen"]
    with pytest.raises(KitError):
        notebook.select(shipped, ("nope",))


def _student_folder(tmp_path: Path, name: str) -> Path:
    """A folder as a student's: their notebook, the weights file the exercise names (the
    stand-in, in its format) and a small CIFAR-10 python folder of synthetic images."""
    import numpy as np

    from conftest import cifar_batch_pickle
    from grader.exercises.transfer_learning import synthetic, vgg_weights

    folder = tmp_path / name
    batches = folder / "cifar-10-batches-py"
    batches.mkdir(parents=True)
    vgg_weights.save(vgg_weights.stand_in(), folder / "vgg16-conv-weights.npz")
    for i, member in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        images, labels = synthetic.generate(256, seed=100 + i)
        (batches / member).write_bytes(cifar_batch_pickle(images, labels))
    (batches / "batches.meta").write_bytes(__import__("pickle").dumps(
        {b"label_names": [b"c%d" % k for k in range(10)], b"num_vis": 3072}))
    nb = nbformat.read(str(corpus.student_notebooks()[name]), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(f"from grader.notebook import check, check_all\n{STUDENT_CHECKS[name]}"))
    nbformat.write(nb, str(folder / f"{name}.ipynb"))
    assert np.load(folder / "vgg16-conv-weights.npz").files  # the exercise's own np.load works
    return folder / f"{name}.ipynb"


# The check each students' notebook ends with: every visible item for the notebook written
# from the exercise's snippets; one task for the others, whose every item test_corpus grades.
STUDENT_CHECKS = {name: "check_all()" if name == "untagged_exercise_snippets" else "check('preprocess')"
                  for name in corpus.student_notebooks()}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(corpus.student_notebooks()))
def test_students_notebook_runs_and_checks_itself_at_full_marks(name, tmp_path, monkeypatch):
    """A notebook as a student writes it (untagged, demo runs between the functions, the
    exercise's np.load at the top), executed top to bottom: its demos run, and its check
    from inside it gives full marks, with no note and no flag."""
    nb = _execute(_student_folder(tmp_path, name), monkeypatch)
    text = _text(nb.cells[-1])
    shipped = rubric_mod.load(DEFAULT_RUBRIC)
    items = [i for i in shipped.items if i.visibility == "visible"
             and (STUDENT_CHECKS[name] == "check_all()" or i.check == "preprocess")]
    points = sum(i.points for i in items)
    assert f"total: {points:g} / {points:g} points" in text, text
    assert "note:" not in text and "flagged" not in text, text


def _code_of(path: Path, upto: str | None = None) -> list[str]:
    """The code cells of a notebook as a kernel ran them, top to bottom (up to and
    including the first cell whose source is `upto`)."""
    cells = [c.source for c in nbformat.read(str(path), as_version=4).cells if c.cell_type == "code"]
    return cells[:cells.index(upto) + 1] if upto else cells


def _renamed_beside_untouched(tmp_path: Path) -> tuple[Path, Path]:
    """A student's renamed, solved notebook beside the untouched generated one."""
    untouched = tmp_path / "transfer_learning.ipynb"
    untouched.write_bytes((ROOT / "skeletons" / "transfer_learning.ipynb").read_bytes())
    mine = tmp_path / "my_work.ipynb"
    mine.write_bytes((ROOT / "solutions" / "transfer_learning.ipynb").read_bytes())
    return mine, untouched


@pytest.fixture
def no_frontend(monkeypatch):
    """No frontend names the notebook (as under nbclient or `jupyter execute`)."""
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    monkeypatch.setattr(notebook, "_user_namespace", lambda: {})
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)


def test_the_notebook_holding_the_cells_run_is_graded_not_the_one_named_after_the_module(
        tmp_path, monkeypatch, no_frontend):
    """Beside an untouched transfer_learning.ipynb, is the renamed notebook whose cells
    this kernel ran the one graded, silently, and the untouched one when that one ran?"""
    monkeypatch.chdir(tmp_path)
    mine, untouched = _renamed_beside_untouched(tmp_path)
    ran = _code_of(mine, "check('preprocess')")
    assert notebook.which_notebook(history=ran) == (mine, "")
    # blank lines and trailing spaces as a frontend may send them change nothing
    assert notebook.which_notebook(history=[c + "  \n\n" for c in ran]) == (mine, "")
    assert notebook.which_notebook(history=_code_of(untouched, "check('build_model')")) \
        == (untouched, "")
    # a notebook named by the student or the frontend wins over the comparison
    assert notebook.which_notebook(untouched, history=ran) == (untouched, "")
    monkeypatch.setenv("JPY_SESSION_NAME", "course/week3/" + untouched.name)  # server-relative
    assert notebook.which_notebook(history=ran)[0] == untouched


def test_a_notebook_graded_without_knowing_it_is_this_kernels_is_said(tmp_path, monkeypatch,
                                                                     no_frontend):
    """When no notebook here holds the cell being run (unsaved, or elsewhere), or two hold
    it equally, does the check say which file it grades and how to name another?"""
    monkeypatch.chdir(tmp_path)
    mine, untouched = _renamed_beside_untouched(tmp_path)
    path, note = notebook.which_notebook(history=["print('a cell never saved')"])
    assert path == untouched and "does not hold the cell being run" in note \
        and "notebook='my_notebook.ipynb'" in note
    twin = tmp_path / "copy_of_my_work.ipynb"
    twin.write_bytes(mine.read_bytes())
    os.utime(mine, (1, 1))  # the copy was saved last
    path, note = notebook.which_notebook(history=_code_of(mine, "check('preprocess')"))
    assert path == twin and "2 notebooks here hold the cells" in note \
        and "notebook='my_work.ipynb'" in note
    untouched.unlink()
    twin.unlink()
    (tmp_path / "other.ipynb").write_bytes(mine.read_bytes())
    with pytest.raises(KitError, match="none holding the cell being run"):
        notebook.which_notebook(history=["print('a cell never saved')"])


def test_rank_notebooks_reads_only_code_cells_and_survives_a_broken_file(tmp_path):
    good = tmp_path / "good.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("x = 1"), nbformat.v4.new_code_cell("y = 2\n\n"),
        nbformat.v4.new_code_cell("check('preprocess')")]), str(good))
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json")
    ranked = notebook.rank_notebooks([broken, good], ["x = 1", "y = 2", "check('preprocess')"])
    assert ranked == [(good, True, 2), (broken, False, 0)]


def test_in_colab_the_notebook_colab_holds_is_graded(tmp_path, monkeypatch, no_frontend):
    """Colab keeps the notebook in its own storage: is the one it holds for this kernel
    written beside the student's files, graded, and never taken for a notebook there?"""
    import types

    monkeypatch.chdir(tmp_path)
    mine, _ = _renamed_beside_untouched(tmp_path)
    held = nbformat.read(str(mine), as_version=4)
    message = types.SimpleNamespace(blocking_request=lambda kind, request, timeout_sec:
                                    {"ipynb": held} if kind == "get_ipynb" else None)
    colab = types.ModuleType("google.colab")
    colab._message = message
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab._message", message)
    path, note = notebook.which_notebook(history=[])
    assert path == tmp_path / notebook.COLAB_COPY and note == ""
    assert _code_of(path) == _code_of(mine)
    monkeypatch.delitem(sys.modules, "google.colab")
    assert notebook.which_notebook(history=_code_of(mine))[0] == mine  # the copy is no candidate


@pytest.mark.slow
def test_a_renamed_notebook_executed_beside_the_untouched_one_checks_itself(tmp_path, monkeypatch):
    """`jupyter execute my_work.ipynb` beside the untouched transfer_learning.ipynb: do its
    checks grade my_work.ipynb (full marks, no note), and does the second check take the
    worker the first one left waiting?"""
    mine, untouched = _renamed_beside_untouched(tmp_path)
    nb = nbformat.read(str(mine), as_version=4)
    end = next(k for k, c in enumerate(nb.cells) if c.source == "check('preprocess')")
    probe = ("from grader import notebook as _n\n_taken = []\n_take = _n.engine.Standby.take\n"
             "_n.engine.Standby.take = lambda self: _taken.append(self) or _take(self)")
    nb.cells = nb.cells[:end + 1] + [nbformat.v4.new_code_cell(source, metadata={"tags": [TAG_CHECK]})
                                     for source in (probe, "check('preprocess')",
                                                    "print('standbys taken:', len(_taken))")]
    nbformat.write(nb, str(mine))
    # The kernel's work folders, in a folder of their own that the sandbox's user can
    # reach (tmp_path's parents are private to this user).
    work = Path(tempfile.mkdtemp(prefix="kernel-tmp-"))
    try:
        os.chmod(work, 0o711)
        monkeypatch.setenv("TMPDIR", str(work))
        nb = _execute(mine, monkeypatch)
        checks = [_text(c) for c in nb.cells if c.source == "check('preprocess')"]
        assert len(checks) == 2
        for text in checks:
            assert "total: 10 / 10 points" in text and "note:" not in text, text
        assert "standbys taken: 1" in _text(nb.cells[-1])
        assert list(work.glob("grader-*")) == []  # the last standby ended with the kernel
    finally:
        shutil.rmtree(work, ignore_errors=True)
