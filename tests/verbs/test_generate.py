"""Assignment generation: markers, skeleton, notebooks, bundle, and drift."""
from __future__ import annotations

import json
import zipfile

import nbformat
import pytest

from grader import answers, rubric as rubric_mod
from grader.verbs import generate
from grader.errors import MarkerError
from grader.modules import load_module
from kit import ROOT, SOLUTION
from grader.cells import TAG_CHECK, TAG_EXPERIMENT, TAG_GRADED


def test_block_becomes_prompt_and_raise_keeping_indentation():
    source = ("def f(x):\n    \"\"\"Doc.\"\"\"\n    y = 1\n    ### BEGIN SOLUTION\n"
              "    # PROMPT: double it\n    return 2 * x\n    ### END SOLUTION\n")
    out = generate.strip_solutions(source, "s.py")
    assert out == ("def f(x):\n    \"\"\"Doc.\"\"\"\n    y = 1\n    # double it\n"
                   "    # YOUR CODE HERE\n    raise NotImplementedError(\"f: your code here\")\n")


def test_single_line_marker_keeps_the_target():
    out = generate.strip_solutions("def f():\n    rate = 0.5 * 2  # SOLUTION\n    return rate\n")
    assert "    rate = ...  # YOUR CODE HERE\n" in out and "0.5" not in out


def test_several_blocks_in_one_function_are_numbered():
    source = ("def f():\n    ### BEGIN SOLUTION\n    a = 1\n    ### END SOLUTION\n"
              "    ### BEGIN SOLUTION\n    b = 2\n    ### END SOLUTION\n")
    out = generate.strip_solutions(source)
    assert "f, part 1 of 2" in out and "f, part 2 of 2" in out


@pytest.mark.parametrize("source, message", [
    ("x = 1\n### END SOLUTION\n", r"s.py:2: END SOLUTION without a BEGIN"),
    ("### BEGIN SOLUTION\nx = 1\n### BEGIN SOLUTION\n### END SOLUTION\n", r"s.py:3: .*cannot nest"),
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", r"s.py:2: BEGIN SOLUTION is never closed"),
    ('x = """\n### BEGIN SOLUTION\n"""\n', r"s.py:2: .*inside a string"),
    ("print(1)  # SOLUTION\n", r"s.py:1: '# SOLUTION' marks a line of the form"),
    ("def f(:\n", r"s.py:1: the solution itself does not parse"),
])
def test_bad_markers_stop_with_file_and_line(source, message):
    with pytest.raises(MarkerError, match=message):
        generate.strip_solutions(source, "s.py")


def test_bad_markers_write_nothing(tmp_path):
    bad = tmp_path / "solution.py"
    bad.write_text("def f():\n    ### BEGIN SOLUTION\n    return 1\n")
    (tmp_path / "skeletons").mkdir()
    with pytest.raises(MarkerError):
        generate.main(root=tmp_path, solution=bad)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["skeletons", "solution.py"]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen") / "out"
    generate.build(out, ROOT)
    return out


def test_skeleton_imports_and_each_task_raises(generated, weights):
    skeleton = load_module(generated / "skeletons" / "transfer_learning.py", "skeleton_under_test")
    import numpy as np
    calls = {
        "preprocess": lambda: skeleton.preprocess(np.zeros((1, 32, 32, 3), np.uint8)),
        "build_model": lambda: skeleton.build_model(weights),
        "make_dataset": lambda: skeleton.make_dataset(np.zeros((2, 32, 32, 3), np.uint8), np.zeros(2)),
        "train": lambda: skeleton.train(None, None, steps=1),
        "restore_checkpoint": lambda: skeleton.restore_checkpoint(None, "x"),
    }
    for task, call in calls.items():
        with pytest.raises(NotImplementedError, match=task):
            call()
    assert (generated / "skeletons" / "transfer_learning.py").read_text().startswith(
        generate.SKELETON_HEADER)


def test_notebooks_are_valid_tagged_and_without_outputs(generated):
    for path in (generated / "skeletons" / "transfer_learning.ipynb",
                 generated / "solutions" / "transfer_learning.ipynb"):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata.kernelspec.name == "python3"
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code)
        graded = "\n".join(c.source for c in code if TAG_GRADED in c.metadata.get("tags", []))
        for name in ("preprocess", "build_model", "make_dataset", "train", "restore_checkpoint"):
            assert f"def {name}(" in graded
        experiments = [c for c in code if TAG_EXPERIMENT in c.metadata.get("tags", [])]
        assert experiments and any("plt." in c.source for c in experiments)
        assert all({TAG_GRADED, TAG_EXPERIMENT, TAG_CHECK} & set(c.metadata.get("tags", []))
                   for c in code)
    handout = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    for topic in ("224", "trainable", "checkpoint", "prefetch", "repeat", "shuffle", "ImageNet"):
        assert topic in handout


@pytest.mark.slow
def test_solution_notebook_executes_top_to_bottom(generated, tmp_path, monkeypatch):
    """Does the instructor notebook run on the embedded default without an error?"""
    from nbclient import NotebookClient

    monkeypatch.setenv("EXERCISE_STEPS", "6")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # inline: the plots are saved with it
    nb = nbformat.read(generated / "solutions" / "transfer_learning.ipynb", as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "restored step: 6" in printed and "test accuracy:" in printed
    assert "after 6 steps, test accuracy: transfer" in printed  # the from-scratch experiment ran
    # the comparison plot, saved with the notebook, is what the review page shows beside the answer
    found = answers.from_notebook(_saved(nb, tmp_path), ["compare_scratch"])
    assert found.items["compare_scratch"].images and not found.items["compare_scratch"].text


def _saved(nb, folder):
    path = folder / "executed.ipynb"
    nbformat.write(nb, str(path))
    return path


def test_notebook_asks_each_manual_item_after_the_scratch_experiment(generated):
    """Every visible manual item gets its question and a tagged answer cell, after the
    experiment that trains the same network from scratch; a .py student gets answers.md."""
    rubric = rubric_mod.load(ROOT / "rubrics" / "transfer_learning.yaml")
    nb = nbformat.read(generated / "skeletons" / "transfer_learning.ipynb", as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    scratch = next(i for i, c in enumerate(nb.cells) if "from_scratch(" in c.source)
    for item in rubric.manual:
        answer = tags.index([answers.tag(item.id)])
        assert answer > scratch and nb.cells[answer].source == answers.PLACEHOLDER
        assert item.prompt.strip()[:40] in nb.cells[answer - 1].source
    plot = next(c for c in nb.cells[scratch:] if "scratch_history" in c.source and "plt." in c.source)
    assert set(plot.metadata["tags"]) == {TAG_EXPERIMENT, answers.tag("compare_scratch")}
    # untouched, the skeleton answers nothing
    assert answers.from_notebook(generated / "skeletons" / "transfer_learning.ipynb",
                                 ["compare_scratch"]).items["compare_scratch"].empty
    text = (generated / "dist" / "student-bundle" / "answers.md").read_text()
    assert "## compare_scratch" in text
    assert answers.from_markdown(text, ["compare_scratch"]).items["compare_scratch"].empty


def solution_lines() -> set[str]:
    """Every distinctive line inside a marked block, and every single-line marked expression
    (20 characters or more: `return 0` or `if repeat:` say nothing of the solution)."""
    lines, inside = set(), False
    for line in SOLUTION.read_text().splitlines():
        stripped = line.strip()
        if stripped == generate.BEGIN:
            inside = True
        elif stripped == generate.END:
            inside = False
        elif inside and not stripped.startswith(generate.PROMPT) and len(stripped) >= 20:
            lines.add(stripped)
        elif stripped.endswith("# SOLUTION"):
            lines.add(stripped.split("=", 1)[1].rsplit("#", 1)[0].strip())
    return lines


def test_bundle_contents_and_no_solution_leaks(generated):
    bundle = generated / "dist" / "student-bundle"
    wheel = "vgg_transfer_check-0.1.0-py3-none-any.whl"
    assert sorted(p.name for p in bundle.iterdir()) == [
        "README.md", "answers.md", "rubric.yaml", "transfer_learning.ipynb", "transfer_learning.py", wheel]
    with zipfile.ZipFile(generated / "dist" / "student-bundle.zip") as archive:
        names = archive.namelist()
        texts = {n: archive.read(n).decode() for n in names if not n.endswith(".whl")}
    with zipfile.ZipFile(bundle / wheel) as archive:  # the checker's files, one by one
        texts.update({f"{wheel}/{n}": archive.read(n).decode() for n in archive.namelist()})
    assert sorted(names) == sorted(f"student-bundle/{p.name}" for p in bundle.iterdir())
    assert wheel in texts["student-bundle/README.md"]
    secret = solution_lines()
    assert len(secret) > 20
    for name, text in texts.items():
        content = text
        if name.endswith(".ipynb"):
            content = "\n".join(c["source"] if isinstance(c["source"], str) else "".join(c["source"])
                                for c in json.loads(text)["cells"])
        present = {line.strip() for line in content.splitlines()}
        leaked = secret & present
        assert not leaked, f"{name} leaks {sorted(leaked)[:3]}"
    rubric_text = texts["student-bundle/rubric.yaml"]
    assert "after_due_date" not in rubric_text and "heldout_seed" not in rubric_text


INSTRUCTOR_WORDS = ("solutions/", "do not edit", "handout's 1e-6", "previous exercise")
"""what no file in a student's hands says: the instructor's paths, "do not edit" on the
file they edit, and what refers to a handout or an exercise they were not given"""


def _student_texts(generated) -> dict[str, str]:
    """{name: text} of every file a student gets: the skeletons, the bundle and its zip,
    and each file of the checker's wheel."""
    bundle = generated / "dist" / "student-bundle"
    texts = {str(p.relative_to(generated)): p.read_text() for p in
             [*(generated / "skeletons").iterdir(), *bundle.iterdir()] if p.suffix != ".whl"}
    with zipfile.ZipFile(generated / "dist" / "student-bundle.zip") as archive:
        texts.update({f"zip/{n}": archive.read(n).decode() for n in archive.namelist()
                      if not n.endswith(".whl")})
    for wheel in bundle.glob("*.whl"):
        with zipfile.ZipFile(wheel) as archive:
            texts.update({f"{wheel.name}/{n}": archive.read(n).decode(errors="replace")
                          for n in archive.namelist()})
    return texts


@pytest.mark.parametrize("words", INSTRUCTOR_WORDS)
def test_the_student_bundle_names_no_instructor_path_nor_an_unseen_handout(generated, words):
    """Does anything a student is given name the instructor's solution file, tell them not
    to edit the file they complete, or refer to a handout or exercise they never saw?"""
    texts = _student_texts(generated)
    assert len(texts) > 20 and any(name.endswith(".ipynb") for name in texts)
    found = [name for name, text in texts.items() if words.lower() in text.lower()]
    assert not found, f"{words!r} in {found}"
    # the instructor's own notebook may say where it comes from
    assert "solutions/transfer_learning.py" in (generated / "solutions" / "transfer_learning.ipynb").read_text()


def test_committed_files_match_a_fresh_generation():
    stale = generate.drift(ROOT)
    assert not stale, f"out of date: {stale}; run `grader generate` and commit"


def test_section_6_quotes_the_figures_the_readme_measured():
    """The handout's section 6 and the instructors' guide's table are one measurement: the range the
    handout gives at its step count is the table's, and the notebook runs that many steps
    on the default."""
    import re

    from grader.exercises.transfer_learning import handout

    figures = handout.SCRATCH_FIGURES
    assert handout.DEFAULT_STEPS["synthetic"] == figures["steps"]
    readme = (ROOT / "docs" / "instructors.md").read_text(encoding="utf-8")
    table = readme[readme.index("| seed | 20 steps |"):]
    header = table.splitlines()[0].split("|")[1:-1]
    column = [h.strip() for h in header].index(f"{figures['steps']} steps")
    rows = [line.split("|")[1:-1] for line in table.splitlines()[2:] if line.startswith("  | ")
            or line.startswith("| ")][:5]
    pairs = [tuple(float(v) for v in row[column].split("/")) for row in rows]
    assert len(pairs) == 5
    transfer, scratch = zip(*pairs)

    def spread(values):
        return f"{min(values):.2f} to {max(values):.2f}"

    assert figures["transfer"] == spread(transfer) and figures["scratch"] == spread(scratch)
    assert min(transfer) > max(scratch)  # ahead on every seed, which the text claims
    level = [h.strip() for h in header].index(f"{figures['level']} steps")
    assert all(float(v) > 0.98 for row in rows for v in row[level].split("/"))
    assert re.search(rf"after\s+{figures['steps']} steps", handout.SCRATCH_MD)
