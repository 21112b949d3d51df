"""Turning notebooks into the module the grader imports."""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess

import nbformat
import pytest
import numpy as np
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from grader.errors import SubmissionError
from grader.cells import definitions_only, notebook_to_source


def _module(source: str) -> dict:
    namespace = {}
    exec(compile(source, "nb", "exec"), namespace)
    return namespace


def _notebook(tmp_path, *sources, tags=None) -> str:
    nb = new_notebook(cells=[new_markdown_cell("# My solution")] + [
        new_code_cell(s, metadata={"tags": (tags or {}).get(i, [])}) for i, s in enumerate(sources)])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, str(path))
    return notebook_to_source(path)


def test_demo_code_is_dropped_and_what_functions_use_is_kept(tmp_path):
    """An untagged student notebook: the contract's functions and the globals they read are
    kept; prints, demo runs and magics are dropped."""
    source = _notebook(
        tmp_path,
        "%matplotlib inline\nimport numpy as np\nMEAN = [1.0, 2.0, 3.0]\nscale = 255.0",
        "def preprocess(images):\n    return images * scale - np.array(MEAN)",
        "print(preprocess(np.zeros(3)))\nhistory = train_for_hours()",
        "class Helper:\n    pass\nfor i in range(10**9):\n    pass",
        "unused = np.load('weights-that-do-not-exist.npz')")
    namespace = _module(source)
    assert namespace["preprocess"](np.zeros(3)).tolist() == [-1.0, -2.0, -3.0]
    assert namespace["__grader_skipped__"] == []
    assert "history" not in namespace and "unused" not in namespace and "Helper" not in namespace
    assert "train_for_hours" not in source and "print(" not in source and "matplotlib" not in source


def test_parameters_sharing_a_demo_lines_name_do_not_keep_it(tmp_path):
    """The exercise's own opening (`weights = np.load(...)` and a printout), then functions
    whose parameters are called `weights` and `model`, and demo lines binding those names:
    only what the functions read as globals is kept."""
    source = _notebook(
        tmp_path,
        "import numpy as np\nweights = np.load('vgg16-conv-weights.npz')\n"
        "for k in weights.keys():\n    print(k, weights[k].shape)",
        "LAYERS = []\nfor name in ['conv1_1', 'conv1_2']:\n    LAYERS.append(name)\n"
        "def build_model(weights, num_classes=10):\n    return [weights[n] for n in LAYERS]",
        "model = build_model(weights)",
        "def train(model, train_ds, val_ds=None, *, steps, checkpoint_dir=None):\n"
        "    return [model(x) for x in train_ds][:steps]",
        "history = train(model, [1, 2], steps=1)")
    assert "np.load" not in source and "build_model(weights)" not in source
    assert "history" not in source
    namespace = _module(source)
    assert namespace["LAYERS"] == ["conv1_1", "conv1_2"]  # a global built by a loop is kept
    assert namespace["build_model"]({"conv1_1": 1, "conv1_2": 2}) == [1, 2]
    assert namespace["train"](lambda x: x * 2, [1, 2, 3], steps=2) == [2, 4]


def test_a_kept_statement_that_raises_is_skipped_and_named(tmp_path):
    """Outside graded cells a statement the functions need but which fails at import is
    skipped and recorded with its cell, line and error; the rest still imports."""
    source = _notebook(
        tmp_path,
        "import numpy as np",
        "x = 1\nTABLE = np.load('table.npz')\nimport not_a_module_anywhere",
        "def preprocess(images):\n    return TABLE[images] + not_a_module_anywhere.f()",
        "def make_dataset(images, labels):\n    return images",
        "DOC = \'\'\'line one\n  line two\'\'\'\ndef restore_checkpoint(model, checkpoint_dir):\n    return DOC")
    namespace = _module(source)
    skipped = namespace["__grader_skipped__"]
    assert [(where, what) for where, what, _ in skipped] == [
        ("code cell 2, line 2", "TABLE = np.load('table.npz')"),
        ("code cell 2, line 3", "import not_a_module_anywhere")]
    assert isinstance(skipped[0][2], FileNotFoundError) and isinstance(skipped[1][2], ImportError)
    assert namespace["make_dataset"]([3], None) == [3]
    # a multi-line string keeps its text when its statement is wrapped
    assert namespace["restore_checkpoint"](None, None) == "line one\n  line two"


def test_graded_cells_are_kept_whole_and_strict(tmp_path):
    cells = [("from __future__ import annotations\nx = compute()\ndef f():\n    return x\n", True),
             ("y = 1\nprint(y)\n", False), ("from __future__ import annotations\n", False)]
    source = definitions_only(cells)
    assert "x = compute()" in source and "y = 1" not in source
    assert source.startswith("from __future__ import annotations\n")
    compile(source, "nb", "exec")  # the future import moved to the top, once
    try:
        _module(source)
    except NameError as exc:  # graded cells are not wrapped: their errors stop the import
        assert "compute" in str(exc)
    else:
        raise AssertionError("a graded cell's error must stop the import")


def test_magics_shell_escapes_and_other_cell_languages(tmp_path):
    source = _notebook(
        tmp_path,
        "%%time\nimport math\ndef preprocess(images):\n    return math.floor(images)",
        "%%bash\nls -l | wc -l",
        "files = !ls\n%load_ext tensorboard\nprint?\n%time x = 1",
        "async def fetch():\n    return 1\nvalue = await fetch()")
    namespace = _module(source)
    assert namespace["preprocess"](2.5) == 2 and namespace["__grader_skipped__"] == []
    assert "ls -l" not in source and "files" not in source and "get_ipython" not in source


def test_an_untagged_cell_that_does_not_parse_is_skipped_and_named(tmp_path):
    source = _notebook(tmp_path, "def broken(:\n", "def preprocess(images):\n    return images")
    namespace = _module(source)
    [(where, what, error)] = namespace["__grader_skipped__"]
    assert where == "code cell 1, line 1" and what == "" and isinstance(error, SyntaxError)
    assert namespace["preprocess"](3) == 3


def test_a_graded_cell_that_does_not_parse_is_kept_so_its_error_is_reported():
    source = definitions_only([("def broken(:\n", True)])
    assert "def broken(:" in source


def test_public_data_modules_stay_when_used_and_the_grader_machinery_never(tmp_path):
    source = _notebook(
        tmp_path,
        "from grader.notebook import check, check_all\nimport grader.engine\n"
        "from grader import synthetic, vgg_weights\ncheck('train')",
        "def build_model(weights, num_classes=10):\n    return synthetic.generate(4, 0)[1].shape")
    assert "grader.notebook" not in source and "grader.engine" not in source and "check(" not in source
    assert _module(source)["build_model"](None) == (4,)


def test_contract_functions_however_they_are_bound(tmp_path):
    """Assigned, wrapped, aliased, or defined inside if/with/try blocks: kept."""
    namespace = _module(_notebook(
        tmp_path,
        "import functools\nUSE_V2 = True",
        "def _scaled(images, scale):\n    return images * scale",
        "preprocess = functools.partial(_scaled, scale=2)",
        "if USE_V2:\n    def build_model(weights, num_classes=10):\n        return 2\n"
        "else:\n    def build_model(weights, num_classes=10):\n        return 3",
        "def my_train(model, train_ds, val_ds=None, *, steps, **kw):\n    return steps\ntrain = my_train",
        "def make_dataset(images, labels):\n    return images\n"
        "make_dataset = functools.lru_cache(None)(make_dataset)",
        "from math import *\ndef restore_checkpoint(model, checkpoint_dir):\n    return floor(2.5)"))
    assert namespace["preprocess"](3) == 6 and namespace["build_model"](None) == 2
    assert namespace["train"](None, None, steps=4) == 4
    assert hasattr(namespace["make_dataset"], "cache_info")  # the wrapper applied after the def
    assert namespace["restore_checkpoint"](None, None) == 2  # a star import is kept


def test_globals_set_by_a_called_function_and_configuration_calls(tmp_path):
    source = _notebook(
        tmp_path,
        "import numpy as np\nimport keras",
        "def init():\n    global MEAN\n    MEAN = np.ones(3)\ninit()",
        "keras.backend.set_floatx('float64')\nkeras.utils.plot_model(model)",
        "def preprocess(images):\n    return images - MEAN\n"
        "def build_model(weights, num_classes=10):\n    return keras.backend.floatx()")
    assert "plot_model" not in source
    namespace = _module(source)
    try:
        assert namespace["preprocess"](np.ones(3)).tolist() == [0.0, 0.0, 0.0]
        assert namespace["build_model"](None) == "float64"
    finally:
        import keras
        keras.backend.set_floatx("float32")


def test_demo_loops_are_not_kept_for_a_global_they_touch(tmp_path):
    """A metric at top level that train() uses, updated by a demo training loop; an LR sweep
    that sets a config dict and calls train(): neither loop runs at import. A global set only
    by a statement that calls a graded function is named in a note."""
    source = _notebook(
        tmp_path,
        "import numpy as np\nimport keras\nloss_metric = keras.metrics.Mean()",
        "def train(model, train_ds, val_ds=None, *, steps, **kw):\n"
        "    loss_metric.reset_state()\n    return steps",
        "for epoch in range(10**9):\n    loss_metric.update_state(float(epoch))")
    assert "10**9" not in source and "loss_metric = keras.metrics.Mean()" in source
    source = _notebook(
        tmp_path,
        "import numpy as np\nCONFIG = {'lr': 1e-4}",
        "def train(model, train_ds, val_ds=None, *, steps, **kw):\n    return CONFIG['lr'] * steps + TEMPLATE",
        "for lr in [1e-3, 1e-4]:\n    CONFIG['lr'] = lr\n    h = train(None, None, steps=10**9)",
        "TEMPLATE = train(None, None, steps=1)")
    assert "10**9" not in source
    [(where, what, why)] = _module(source)["__grader_skipped__"]
    assert where == "code cell 4, line 1" and what == "TEMPLATE = train(None, None, steps=1)"
    assert "calls one of the graded functions" in why


def test_statements_on_one_line_each_get_their_own_text(tmp_path):
    namespace = _module(_notebook(
        tmp_path,
        "LAYERS = ['a']",
        "LAYERS += ['b']; N = len(LAYERS)",
        "A = [1.0,\n     2.0]; B = [3.0,\n     4.0]",
        "print('loading'); unused = 1",
        "%time SCALE = 2",
        "def preprocess(images):\n    return images * N * len(A + B) * SCALE"))
    assert namespace["N"] == 2 and namespace["preprocess"](1) == 16


def test_a_zip_of_too_many_files_is_refused_in_one_line(tmp_path):
    import zipfile

    import pytest

    from grader import submission
    from grader.errors import SubmissionError

    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i in range(submission.MAX_MEMBERS + 1):
            zf.writestr(f"f{i}", "")
    with pytest.raises(SubmissionError, match=r"many.zip: holds 10001 files and folders, more than the 10000"):
        submission.materialize(archive, tmp_path / "dest")


# ---------------------------------------------------------------- a class folder's names, links and sizes

def test_ids_come_from_the_names_bytes_unique_stable_and_printable(tmp_path):
    from grader.submission import entries

    for name in [b"lee.py", b"lee.ipynb", b"lee.py.zip", b"caf\xe9.py", b"caf\\xe9.py",
                 b"a\xe2\x80\xaeb.py", b"x\x1b[2K.py", b"a\nb.py", b"a\\nb.py", b"solo.py", b"notes.txt"]:
        (tmp_path / os.fsdecode(name)).write_bytes(b"")
    ids = [e.student for e in entries(tmp_path)]
    assert ids == [e.student for e in entries(tmp_path)]  # stable
    assert len(ids) == len(set(ids)) == 10  # notes.txt is no submission
    assert set(ids) == {"lee.py", "lee.ipynb", "lee.py.zip", "solo", "a\\u202eb", "x\\x1b[2K",
                        "caf\\xe9", "caf\\\\xe9", "a\\nb", "a\\\\nb"}
    assert all(s.isprintable() for s in ids)


def test_an_entry_added_later_does_not_rename_a_student_already_graded(tmp_path):
    from grader.submission import entries

    (tmp_path / "lee.py").write_text("")
    assert [e.student for e in entries(tmp_path)] == ["lee"]
    (tmp_path / "lee.ipynb").write_text("")
    assert [e.student for e in entries(tmp_path)] == ["lee.ipynb", "lee.py"]  # without the gradebook
    kept = [e.student for e in entries(tmp_path, previous={"lee.py": "lee"})]
    assert kept == ["lee.ipynb", "lee"]


def test_files_swapped_for_links_or_hard_linked_are_never_read(tmp_path):
    """Between the scan and the grading a file can become a link: materialize opens every
    file without following links, and refuses one with several hard links."""
    from grader.submission import materialize, pack

    secret = tmp_path / "secret.txt"
    secret.write_text("root:*:20228")
    (tmp_path / "late.py").symlink_to(secret)
    with pytest.raises(SubmissionError, match="symbolic link"):
        materialize(tmp_path / "late.py", tmp_path / "work1")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "transfer_learning.py").write_text("x = 1\n")
    os.link(secret, folder / "notes.txt")
    for attempt in (lambda: materialize(folder, tmp_path / "work2"), lambda: pack(folder)):
        with pytest.raises(SubmissionError, match="hard links"):
            attempt()
    (folder / "notes.txt").unlink()
    (folder / "notes.txt").symlink_to(secret)
    with pytest.raises(SubmissionError, match="symbolic link"):
        materialize(folder, tmp_path / "work3")
    assert not any("root:*" in p.read_text() for p in tmp_path.rglob("work*/**/*") if p.is_file())


def test_links_pipes_and_sizes_are_refused_from_metadata_alone(tmp_path):
    from grader.submission import MAX_MODULE_BYTES, entries

    (tmp_path / "link.py").symlink_to("/etc/shadow")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "transfer_learning.py").symlink_to("/etc/passwd")
    (tmp_path / "pipe").mkdir()
    os.mkfifo(tmp_path / "pipe" / "p")
    (tmp_path / "big").mkdir()
    with open(tmp_path / "big" / "data", "wb") as handle:
        handle.truncate(3 << 30)
    with open(tmp_path / "long.py", "wb") as handle:
        handle.truncate(MAX_MODULE_BYTES + 1)
    (tmp_path / "fine.py").write_text("x = 1\n")
    problems = {e.student: e.problem for e in entries(tmp_path)}
    assert problems["fine"] == ""
    assert "symbolic link" in problems["link"] and "symbolic link" in problems["dir"]
    assert "not a regular file" in problems["pipe"]
    assert "MB allowed" in problems["big"] and "MB allowed" in problems["long"]


def test_a_long_chain_of_assignments_is_kept_whole(tmp_path):
    """The closure over names is a work list: 20,000 assignments, each reading the next,
    are all kept (the old fixed point took one pass per line here)."""
    from grader.cells import definitions_only

    n = 20_000
    code = "\n".join(f"x{i} = x{i + 1} + 1" for i in range(n)) + f"\nx{n} = 0\n"
    code += "def preprocess(images):\n    return images * x0\n"
    module = definitions_only([(code, False)], plain=True)
    kept = [line for line in module.splitlines() if line.strip()]
    assert len(kept) == n + 3 and kept[-3] == f"x{n} = 0", kept[-4:]


def test_a_cell_too_deep_to_parse_is_skipped_and_the_rest_kept(tmp_path):
    from grader.cells import SKIPPED, definitions_only

    deep = "y = a" + ".a" * 200_000
    module = definitions_only([(deep, False), ("def preprocess(images):\n    return images\n", True)])
    assert "def preprocess" in module and ".a.a.a" not in module
    assert "could not be parsed (RecursionError)" in module or "too many" in module, module[:500]
    namespace = {}
    exec(compile(module, "<m>", "exec"), namespace)
    assert namespace[SKIPPED] and namespace[SKIPPED][0][0] == "code cell 1"


def test_notebooks_are_bounded_before_they_are_parsed(tmp_path):
    """Millions of values, or a notebook whose code is over the module's bound, end in one
    line; an attachment of many empty lists is read without nbformat's validator."""
    from grader.submission import MAX_MODULE_BYTES
    from grader.cells import notebook_to_source

    values = tmp_path / "values.ipynb"
    values.write_text('{"cells": [], "nbformat": 4, "x": [' + "0," * 2_100_000 + "0]}")
    with pytest.raises(SubmissionError, match="JSON values"):
        notebook_to_source(values)
    code = tmp_path / "code.ipynb"
    code.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "metadata": {}, "source": "#" * (MAX_MODULE_BYTES + 1), "outputs": []}]}))
    with pytest.raises(SubmissionError, match="of code"):
        notebook_to_source(code)
    lists = tmp_path / "lists.ipynb"
    lists.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "markdown", "metadata": {}, "source": "", "attachments": {"a.png": {"image/png": [[]] * 600_000}}},
        {"cell_type": "code", "metadata": {"tags": ["graded"]}, "source": "def preprocess(x):\n    return x\n",
         "outputs": [], "execution_count": None}]}))
    assert "def preprocess" in notebook_to_source(lists)


def test_a_folder_added_later_takes_a_name_of_its_own(tmp_path):
    from grader.submission import entries

    (tmp_path / "lee.py").write_text("")
    (tmp_path / "lee").mkdir()
    assert {e.path.name: e.student for e in entries(tmp_path)} == {"lee.py": "lee.py", "lee": "lee/"}
    kept = {e.path.name: e.student for e in entries(tmp_path, previous={"lee.py": "lee"})}
    assert kept == {"lee.py": "lee", "lee": "lee/"}


def test_deep_folders_and_zips_of_implied_folders_are_one_students_problem(tmp_path):
    import zipfile

    from grader.submission import MAX_DEPTH, MAX_MEMBERS, entries, materialize

    deep = tmp_path / "class" / "deep"
    deep.mkdir(parents=True)
    fd = os.open(deep, os.O_RDONLY)
    for _ in range(1100):  # deeper than os.walk's recursion goes (and than PATH_MAX allows)
        os.mkdir("a", dir_fd=fd)
        inner = os.open("a", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(fd)
    (tmp_path / "class" / "fine.py").write_text("")
    try:
        problems = {e.student: e.problem for e in entries(tmp_path / "class")}
    finally:  # shutil.rmtree (pytest's clean-up) recurses once a level on Python 3.11
        subprocess.run(["rm", "-rf", "--", str(deep)], check=True)
    assert f"more than {MAX_DEPTH} deep" in problems["deep"] and problems["fine"] == ""
    with zipfile.ZipFile(tmp_path / "folders.zip", "w") as archive:
        archive.writestr("transfer_learning.py", "x = 1\n")
        for i in range(MAX_MEMBERS // 20):
            archive.writestr("/".join([f"d{i}"] + ["x"] * 25) + "/", b"")
    with pytest.raises(SubmissionError, match="imply folders"):
        materialize(tmp_path / "folders.zip", tmp_path / "work")
    with zipfile.ZipFile(tmp_path / "nested.zip", "w") as archive:
        archive.writestr("/".join(["x"] * (MAX_DEPTH + 2)) + "/transfer_learning.py", "x = 1\n")
    with pytest.raises(SubmissionError, match="nested more than"):
        materialize(tmp_path / "nested.zip", tmp_path / "work2")


def test_a_module_found_in_a_folder_is_held_to_the_modules_bound(tmp_path):
    from grader.submission import MAX_MODULE_BYTES, materialize

    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "transfer_learning.py").write_text("#" * (MAX_MODULE_BYTES + 1))
    with pytest.raises(SubmissionError, match="MB allowed"):
        materialize(tmp_path / "big", tmp_path / "work")


def test_answers_are_never_read_through_a_folder_swapped_for_a_link(tmp_path):
    from grader import answers

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "transfer_learning.py").write_text("x = 1\n")
    (outside / "answers.md").write_text("## compare_scratch\nSECRET OUTSIDE\n")
    (tmp_path / "bob").symlink_to(outside)
    found = answers.extract(tmp_path / "bob", ["compare_scratch"])
    assert found.problem and "SECRET" not in found.items["compare_scratch"].text


def test_the_module_maps_each_kept_line_back_to_its_cell_and_line(tmp_path):
    """Does every line copied from a cell map back to "code cell N (In [n])" and the line in
    that cell, counted as the student sees it (leading blank lines and a %%time line
    included), while the lines the grader adds map to nothing and `plain` carries no map?"""
    from grader.cells import LINE_MAP, cell_line

    nb = new_notebook(cells=[
        new_markdown_cell("# Mine"),
        new_code_cell("import numpy as np\nprint('demo')\nMEANS = [1.0, 2.0]", execution_count=3),
        new_code_cell("print('dropped')", metadata={"tags": ["experiment"]}, execution_count=4),
        new_code_cell("\n\n%%time\nx = 1\ndef preprocess(images):\n    a = 1; b = MEANS\n"
                      "    return np.asarray(images)[0]", execution_count=12),
        new_code_cell("def train(model, train_ds, val_ds=None, *, steps, checkpoint_dir=None):\n"
                      "    return steps\n", metadata={"tags": ["graded"]})])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, str(path))
    source = notebook_to_source(path)
    lines = source.splitlines()
    assert lines[-1].startswith(LINE_MAP)
    found = {lines[n - 1].strip(): cell_line(source, n) for n in range(1, len(lines) + 1)
             if cell_line(source, n)}
    assert found == {
        "import numpy as np": ("code cell 1 (In [3])", 1),
        "MEANS = [1.0, 2.0]": ("code cell 1 (In [3])", 3),
        "def preprocess(images):": ("code cell 3 (In [12])", 5),
        "a = 1; b = MEANS": ("code cell 3 (In [12])", 6),
        "return np.asarray(images)[0]": ("code cell 3 (In [12])", 7),
        "def train(model, train_ds, val_ds=None, *, steps, checkpoint_dir=None):": ("code cell 4", 1),
        "return steps": ("code cell 4", 2),
        "": ("code cell 4", 3)}
    assert cell_line(source, 1) is None and cell_line("x = 1\n", 1) is None
    assert cell_line(source[:-10] + "\n", 4) is None  # a damaged map maps nothing
    assert LINE_MAP not in notebook_to_source(path, plain=True)
    assert _module(source)["preprocess"]([7]) == 7


def test_the_content_hash_counts_code_not_answers(tmp_path):
    """What grading reads decides a regrade: a notebook's code cells (source, tags, counts),
    a module; not Markdown cells, outputs, or answers.md files."""
    import nbformat

    from grader.submission import content_hash

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("My answer."),
                                         nbformat.v4.new_code_cell("def f():\n    return 1\n")])
    path = tmp_path / "ada.ipynb"
    nbformat.write(nb, str(path))
    before = content_hash(path)
    nb.cells[0].source = "My answer, rewritten."
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="1\n")]
    nbformat.write(nb, str(path))
    assert content_hash(path) == before
    for change in (lambda c: setattr(c, "source", "def f():\n    return 2\n"),
                   lambda c: c.metadata.setdefault("tags", []).append("graded"),
                   lambda c: setattr(c, "execution_count", 7)):
        change(nb.cells[1])
        nbformat.write(nb, str(path))
        assert content_hash(path) != before
        before = content_hash(path)
    folder = tmp_path / "cy"
    folder.mkdir()
    (folder / "transfer_learning.py").write_text("x = 1\n")
    (folder / "answers.md").write_text("## compare_scratch\n\nFirst.\n")
    before = content_hash(folder)
    (folder / "answers.md").write_text("## compare_scratch\n\nSecond.\n")
    assert content_hash(folder) == before
    (folder / "transfer_learning.py").write_text("x = 2\n")
    assert content_hash(folder) != before
    lone = tmp_path / "eve.py"
    lone.write_text("x = 1\n")
    before = content_hash(lone)
    (tmp_path / "eve.answers.md").write_text("## compare_scratch\n\nMine.\n")
    assert content_hash(lone) == before
    for k, text in enumerate(("{not json", "{not json either")):  # unreadable: its bytes count
        (tmp_path / f"b{k}").mkdir()
        (tmp_path / f"b{k}" / "broken.ipynb").write_text(text)
    assert content_hash(tmp_path / "b0" / "broken.ipynb") != content_hash(tmp_path / "b1" / "broken.ipynb")
    # an experiment cell (the grader drops it; the answer's plots come from it) counts by place
    from grader.cells import TAG_EXPERIMENT

    nb.cells.append(nbformat.v4.new_code_cell("plot(1)", metadata={"tags": [TAG_EXPERIMENT]}))
    nbformat.write(nb, str(path))
    before = content_hash(path)
    nb.cells[-1].source, nb.cells[-1].execution_count = "plot(2)", 9
    nbformat.write(nb, str(path))
    assert content_hash(path) == before
    # a file's content cannot pass for another file's name and content
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir(), two.mkdir()
    (one / "data.bin").write_bytes(b"A")
    (one / "helpers.py").write_text("SCALE = 2\n")
    (two / "data.bin").write_bytes(b"A./helpers.py\0SCALE = 2\n")
    assert content_hash(one) != content_hash(two)


@pytest.mark.parametrize("kind", ["py", "notebook", "zip", "folder"])
def test_a_submission_is_read_once_and_changes_after_that_are_not_seen(tmp_path, kind):
    """submission.read copies what was handed in once: its hash, module, code, answers and
    the bytes sent to a cluster all come from that copy, so what is graded is what was
    hashed even when the student's files change meanwhile."""
    import zipfile

    import nbformat

    from grader import answers
    from grader.submission import content_hash, read

    code = "def preprocess(images):\n    return images\n"
    reply = "## explain\n\nFrozen layers keep what they learned.\n"
    handed = tmp_path / "class" / {"py": "ada.py", "notebook": "ada.ipynb", "zip": "ada.zip",
                                   "folder": "ada"}[kind]
    handed.parent.mkdir()

    def write(text: str) -> None:
        if kind == "py":
            handed.write_text(text)
            handed.with_name("ada.answers.md").write_text(reply)
        elif kind == "notebook":
            nbformat.write(nbformat.v4.new_notebook(cells=[
                nbformat.v4.new_markdown_cell("Frozen layers keep what they learned.",
                                              metadata={"tags": [answers.TAG_PREFIX + "explain"]}),
                nbformat.v4.new_code_cell(text)]), str(handed))
        elif kind == "zip":
            with zipfile.ZipFile(handed, "w") as archive:
                archive.writestr("work/transfer_learning.py", text)
                archive.writestr("work/answers.md", reply)
        else:
            handed.mkdir(exist_ok=True)
            (handed / "transfer_learning.py").write_text(text)
            (handed / "answers.md").write_text(reply)

    write(code)
    before = content_hash(handed)
    got = read(handed, tmp_path / "work")
    write("def preprocess(images):\n    return -images\n")  # changed after it was read
    assert content_hash(handed) != before
    assert got.hash == before
    assert "return images" in got.code() and "-images" not in got.code()
    assert got.kept.is_relative_to(tmp_path / "work") and got.module.is_relative_to(got.folder)
    found = answers.of_submission(got, ["explain"])
    assert "Frozen layers" in found.items["explain"].text, found
    name, payload = got.pack()  # to a cluster: as handed in, not as now
    assert name == handed.name + (".zip" if kind == "folder" else "")
    with zipfile.ZipFile(io.BytesIO(payload)) if kind in ("zip", "folder") else contextlib.nullcontext() as z:
        text = z.read([n for n in z.namelist() if n.endswith(".py")][0]).decode() if z else payload.decode()
    assert "-images" not in text
    got.discard()
    assert not (tmp_path / "work").exists() and handed.exists()


def test_a_py_whose_answers_file_name_would_be_too_long_is_still_read(tmp_path):
    """NAME.answers.md is 11 bytes longer than NAME.py: for a name near the file system's
    limit it cannot exist, and the module is read all the same."""
    from grader.submission import read

    handed = tmp_path / ("é" * 123 + "x.py")  # 250 bytes: NAME.answers.md would be 258
    handed.write_text("x = 1\n")
    got = read(handed, tmp_path / "work")
    assert got.code() == "x = 1\n" and got.beside is None
