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

TENSORFLOW_TESTED = ("2.20", "2.21")
"""the TensorFlow minor versions the checker is tested with (tests/verbs/test_student_package.py)"""
TENSORFLOW_DISTRIBUTIONS = ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tensorflow-intel",
                            "tf-nightly", "tf-nightly-cpu")
"""the names TensorFlow is installed under: any of them will do"""


def tensorflow_requirements(extra: str | None = None) -> list[str]:
    """Requirement lines for the tested TensorFlow (CPU-only where that build exists)."""
    low, high = TENSORFLOW_TESTED[0], TENSORFLOW_TESTED[-1]
    top = f"{high.split('.')[0]}.{int(high.split('.')[1]) + 1}"
    marker = f' and extra == "{extra}"' if extra else ""
    return [f"tensorflow-cpu>={low},<{top}; platform_machine == 'x86_64'{marker}",
            f"tensorflow>={low},<{top}; platform_machine != 'x86_64'{marker}"]


def check_tensorflow() -> str | None:
    """None when a TensorFlow with Keras 3 is installed (from any of its distributions) in
    a tested version; a notice when it is newer or older than those but has Keras 3. Raises
    KitError with what to do when there is none, or only one with Keras 2."""
    from importlib import metadata

    from .errors import KitError

    found = []
    for name in TENSORFLOW_DISTRIBUTIONS:
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            continue
    try:
        keras_version = metadata.version("keras")
    except metadata.PackageNotFoundError:
        keras_version = ""
    tested = " or ".join(TENSORFLOW_TESTED)
    if not found:
        raise KitError(f"expected TensorFlow {tested} (with Keras 3) in this environment, found "
                       "none installed. Install it with the checker: pip install "
                       "'vgg_transfer_check-...whl[tensorflow]', or pip install tensorflow.")
    name, version = found[0]
    minor = ".".join(version.split(".")[:2])
    if not keras_version.startswith("3."):
        raise KitError(f"expected Keras 3 (TensorFlow 2.16 or newer), found {name} {version} with "
                       f"keras {keras_version or 'missing'}. Upgrade TensorFlow: pip install "
                       f"'tensorflow=={TENSORFLOW_TESTED[-1]}.*'.")
    if minor not in TENSORFLOW_TESTED:
        return (f"notice: the checker is tested with TensorFlow {tested}; this is {name} "
                f"{version}. Grades come from the course's own environment.")
    return None


def load_module(path: str | os.PathLike, name: str | None = None) -> types.ModuleType:
    """Execute the Python file at `path` as a fresh module named `name` (default: the
    file's name)."""
    path = Path(path)
    name = name or path.stem
    if not path.is_file():
        raise SubmissionError(f"{path}: no such file; expected the exercise's module file.")
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
