"""Which TensorFlow the checker accepts (grader/modules.py)."""
from __future__ import annotations

from importlib import metadata

import pytest

from grader import modules
from grader.errors import KitError


def _installed(monkeypatch, versions: dict[str, str]) -> None:
    def version(name):
        if name not in versions:
            raise metadata.PackageNotFoundError(name)
        return versions[name]
    monkeypatch.setattr(metadata, "version", version)


def test_a_tested_tensorflow_from_any_distribution_is_accepted(monkeypatch):
    for name in ("tensorflow", "tensorflow-cpu", "tensorflow-macos"):
        _installed(monkeypatch, {name: f"{modules.TENSORFLOW_TESTED[0]}.1", "keras": "3.11.0"})
        assert modules.check_tensorflow() is None


def test_another_tensorflow_with_keras_3_runs_with_a_notice(monkeypatch):
    _installed(monkeypatch, {"tensorflow": "2.17.0", "keras": "3.5.0"})
    notice = modules.check_tensorflow()
    assert notice.startswith("notice: the checker is tested with TensorFlow") and "2.17.0" in notice


def test_keras_2_or_no_tensorflow_is_one_line_saying_what_to_install(monkeypatch):
    _installed(monkeypatch, {"tensorflow": "2.15.1", "keras": "2.15.0"})
    with pytest.raises(KitError, match=r"expected Keras 3 .* found tensorflow 2.15.1 with keras 2.15.0"):
        modules.check_tensorflow()
    _installed(monkeypatch, {})
    with pytest.raises(KitError, match=r"found none installed. Install it with the checker"):
        modules.check_tensorflow()


def test_the_tensorflow_extra_covers_the_tested_versions():
    low, high = modules.TENSORFLOW_TESTED[0], modules.TENSORFLOW_TESTED[-1]
    for line in modules.tensorflow_requirements("tensorflow"):
        assert f">={low}," in line and 'extra == "tensorflow"' in line
        assert line.split(",")[1].startswith("<") and high not in line.split(";")[0].split(",")[1]
