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


def test_paths_are_judged_by_where_they_lead(tmp_path, monkeypatch):
    """Descriptor tables reached through /dev/fd or a thread's task folder, the job folder
    reached through /proc/self/cwd, and a write through /proc/self/root are all flagged;
    the scratch folder reached any way is not."""
    import os
    import threading

    scratch, job = tmp_path / "scratch", tmp_path / "job"
    scratch.mkdir()
    job.mkdir()
    (job / "inputs.npz").write_bytes(b"")
    monkeypatch.chdir(scratch)
    sent = []
    watch = worker.Watch(sent.append, str(tmp_path / "m.py"), scratch, job)
    watch("os.listdir", ("/dev/fd",))
    watch("os.listdir", (f"/proc/self/task/{threading.get_native_id()}/fd",))
    watch("open", ("/proc/self/cwd/../job/inputs.npz", "r", os.O_RDONLY))
    watch("open", (f"/proc/self/root{tmp_path}/elsewhere.txt", "w", os.O_WRONLY))
    watch("open", ("/proc/self/cwd/notes.txt", "w", os.O_WRONLY))  # scratch: allowed
    watch("open", (str(scratch / "more.txt"), "w", os.O_WRONLY))
    kinds = [f["kind"] for f in sent]
    assert kinds == ["proc_fd", "proc_fd", "job_folder", "write_outside_scratch"], sent
