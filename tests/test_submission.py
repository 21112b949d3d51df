"""Turning notebooks into the module the grader imports."""
from __future__ import annotations

import nbformat
import numpy as np
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from grader.submission import definitions_only, notebook_to_source


def test_demo_code_is_dropped_and_what_functions_use_is_kept(tmp_path):
    """An untagged student notebook: are imports, functions, classes and the constants they
    read kept, and prints, demo runs and magics dropped?"""
    nb = new_notebook(cells=[
        new_markdown_cell("# My solution"),
        new_code_cell("%matplotlib inline\nimport numpy as np\nMEAN = [1.0, 2.0, 3.0]\nscale = 255.0"),
        new_code_cell("def preprocess(images):\n    return images * scale - np.array(MEAN)"),
        new_code_cell("print(preprocess(np.zeros(3)))\nhistory = train_for_hours()"),
        new_code_cell("class Helper:\n    pass\nfor i in range(10**9):\n    pass"),
        new_code_cell("unused = np.load('weights-that-do-not-exist.npz')"),
    ])
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, str(path))
    source = notebook_to_source(path)
    namespace = {}
    exec(compile(source, "nb", "exec"), namespace)
    assert namespace["preprocess"](np.zeros(3)).tolist() == [-1.0, -2.0, -3.0]
    assert "Helper" in namespace and "history" not in namespace and "unused" not in namespace
    assert "train_for_hours" not in source and "print(" not in source and "%matplotlib" not in source


def test_graded_cells_are_kept_whole_and_experiment_cells_dropped():
    cells = [("x = compute()\ndef f():\n    return x\n", True), ("y = 1\nprint(y)\n", False)]
    source = definitions_only(cells)
    assert "x = compute()" in source and "y = 1" not in source


def test_a_cell_that_does_not_parse_is_kept_so_its_error_is_reported():
    source = definitions_only([("def broken(:\n", False)])
    assert "def broken(:" in source
