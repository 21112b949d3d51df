"""Importing an exercise module (the reference or a submission) from a file path."""
from __future__ import annotations

import importlib.util
import os
import re
import sys
import tempfile
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


# What TensorFlow's native code prints on stderr when it starts, on every machine: absl's
# note that it logs before being set up, oneDNN's notice and the CPU-feature advice.
_START_UP_NOISE = re.compile(r"absl::InitializeLog|oneDNN custom operations|cpu_feature_guard|"
                             r"rebuild TensorFlow with the appropriate compiler flags|"
                             r"This TensorFlow binary is optimized")


def import_tensorflow_quietly() -> None:
    """Import TensorFlow and Keras with their start-up lines kept off the screen. Native
    code writes them to descriptor 2 directly, so that descriptor is captured for the
    import; any other line it wrote is passed on."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode("utf-8", "replace").splitlines(keepends=True):
                if not _START_UP_NOISE.search(line):
                    sys.stderr.write(line)
