"""`grader train`: the reference end to end from the command line, resume, bad input."""
from __future__ import annotations

import numpy as np
import pytest

from grader import cli


def _run(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
def test_train_then_resume(tmp_path, capsys):
    """Does a second run of the same command resume from the checkpoint and go on?"""
    args = ["train", "--steps", "4", "--checkpoint-every", "2",
            "--checkpoint-dir", str(tmp_path / "ck"), "--log-dir", str(tmp_path / "logs")]
    code, out, _ = _run(capsys, *args)
    assert code == 0, out
    assert "stand-in weights" in out and "step 4: test accuracy" in out
    assert "validation loss" in out
    code, out, _ = _run(capsys, *args[:2], "6", *args[3:])
    assert code == 0
    assert "resuming from the checkpoint at step 4" in out and "step 6: test accuracy" in out


@pytest.mark.parametrize("make_args, expected", [
    (lambda p: ["--data", "cifar10", str(p / "broken.tar.gz")], "expected a gzip-compressed tar"),
    (lambda p: ["--data", "cifar10", str(p / "missing.tar.gz")], "no such file or folder"),
    (lambda p: ["--weights", str(p / "bad.npz")], "missing keys conv1_1_W"),
    (lambda p: ["--checkpoint-dir", str(p / "afile" / "ck")], "expected a writable folder"),
    (lambda p: ["--data", "mnist"], "expected 'synthetic' or 'cifar10 [PATH]'"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, capsys, make_args, expected):
    (tmp_path / "broken.tar.gz").write_bytes(b"\x1f\x8b\x08 not really gzip")
    np.savez(tmp_path / "bad.npz", something=np.zeros(3))
    (tmp_path / "afile").write_text("")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, out, err = _run(capsys, "train", "--steps", "1", "--no-verify",
                          "--log-dir", str(tmp_path / "logs"), *make_args(tmp_path))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and expected in err, err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before, "something was left behind"


@pytest.mark.slow
def test_no_tensorflow_start_up_noise_on_the_screen(tmp_path):
    """TensorFlow's native start-up lines (absl, oneDNN, CPU features) stay off stderr."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "grader", "train", "--steps", "1",
                           "--checkpoint-dir", str(tmp_path / "ck"), "--log-dir", str(tmp_path / "l")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for noise in ("absl::InitializeLog", "oneDNN custom operations", "rebuild TensorFlow"):
        assert noise not in done.stderr + done.stdout
