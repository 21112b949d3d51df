"""Turning a submission (.py module or .ipynb notebook) into a module file to grade.

In a notebook only the code cells count, minus those tagged `experiment` (training runs
and plots the grader must not execute); IPython magics and shell escapes are dropped.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .errors import SubmissionError

TAG_GRADED = "graded"          # cells defining the graded functions
TAG_EXPERIMENT = "experiment"  # cells the grader never runs
TAG_HANDOUT = "handout"        # Markdown cells of the handout


def notebook_to_source(path: Path) -> str:
    import nbformat
    from nbconvert import PythonExporter
    from nbconvert.preprocessors import TagRemovePreprocessor

    try:
        notebook = nbformat.read(str(path), as_version=4)
    except UnicodeDecodeError:
        raise SubmissionError(f"{path}: expected a UTF-8 notebook file, found other bytes. "
                              "Save the notebook again from Jupyter.") from None
    except Exception as exc:  # nbformat raises several JSON and schema errors
        raise SubmissionError(f"{path}: expected a Jupyter notebook (JSON, nbformat 4), could not "
                              f"read it ({type(exc).__name__}). Save it again from Jupyter.") from None
    remover = TagRemovePreprocessor(remove_cell_tags={TAG_EXPERIMENT}, enabled=True)
    exporter = PythonExporter(exclude_markdown=True, exclude_raw=True)
    exporter.register_preprocessor(remover, enabled=True)
    source, _ = exporter.from_notebook_node(notebook)
    lines = []
    for line in source.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("get_ipython()", "%", "!")):
            line = line[: len(line) - len(stripped)] + "pass  # IPython magic removed by the grader"
        lines.append(line)
    return "\n".join(lines) + "\n"


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
        shutil.copyfile(path, target)
    else:
        raise SubmissionError(f"{path}: expected a .py module or an .ipynb notebook, found "
                              f"'{path.suffix or 'no extension'}'.")
    return target
