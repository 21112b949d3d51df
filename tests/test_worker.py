"""The worker's audit hook and import notes (grader/worker.py)."""
from __future__ import annotations

import types
from pathlib import Path

from grader import worker
from grader.submission import PUBLIC_MODULES, SKIPPED


def test_public_data_modules_import_unflagged_and_the_machinery_flagged(tmp_path):
    sent = []
    watch = worker.Watch(sent.append, str(tmp_path / "m.py"), tmp_path / "scratch", tmp_path / "job")
    for name in sorted(PUBLIC_MODULES):  # what `from grader import synthetic, cifar10, vgg_weights` imports
        watch("import", (name, None, [], [], []))
    assert sent == []
    watch("import", ("grader.engine", None, [], [], []))
    assert [f["kind"] for f in sent] == ["internal_import"] and "grader.engine" in sent[0]["detail"]


def test_skipped_notes_name_cell_statement_and_error():
    module = types.ModuleType("m")
    setattr(module, SKIPPED, [("code cell 2, line 1", "weights = np.load('w.npz')",
                               FileNotFoundError(2, "No such file or directory")),
                              ("code cell 5, line 3", "", SyntaxError("invalid syntax")),
                              "not a triple"])
    assert worker.skipped_notes(module) == [
        "code cell 2, line 1: skipped `weights = np.load('w.npz')`: FileNotFoundError: "
        "[Errno 2] No such file or directory",
        "code cell 5, line 3: skipped the cell, which does not parse: SyntaxError: invalid syntax"]
    assert worker.skipped_notes(types.ModuleType("plain")) == []
