"""Importing an exercise module (the reference or a submission) from a file path."""
from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

from .errors import SubmissionError

CONTRACT = ("preprocess", "build_model", "make_dataset", "train", "restore_checkpoint")


def load_module(path: str | os.PathLike, name: str = "transfer_learning") -> types.ModuleType:
    """Execute the Python file at `path` as a fresh module named `name`."""
    path = Path(path)
    if not path.is_file():
        raise SubmissionError(f"{path}: no such file; expected the exercise module "
                              "transfer_learning.py.")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
