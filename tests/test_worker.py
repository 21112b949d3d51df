"""The worker's audit hook and import notes (grader/worker.py)."""
from __future__ import annotations

import types
from pathlib import Path

from grader import worker
from grader.exercise import load
from grader.submission import SKIPPED


def test_public_data_modules_import_unflagged_and_the_machinery_flagged(tmp_path):
    sent = []
    public = load().public_names()
    watch = worker.Watch(sent.append, str(tmp_path / "m.py"), tmp_path / "scratch", public)
    for name in sorted(public):  # what `from grader import synthetic, cifar10, vgg_weights` imports
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
    """Descriptor tables reached through /dev/fd or a thread's task folder, and a write
    through /proc/self/root, are flagged; the scratch folder reached any way is not."""
    import os
    import threading

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.chdir(scratch)
    sent = []
    watch = worker.Watch(sent.append, str(tmp_path / "m.py"), scratch)
    watch("os.listdir", ("/dev/fd",))
    watch("os.listdir", (f"/proc/self/task/{threading.get_native_id()}/fd",))
    watch("open", (f"/proc/self/root{tmp_path}/elsewhere.txt", "w", os.O_WRONLY))
    watch("open", ("/proc/self/cwd/notes.txt", "w", os.O_WRONLY))  # scratch: allowed
    watch("open", (str(scratch / "more.txt"), "w", os.O_WRONLY))
    kinds = [f["kind"] for f in sent]
    assert kinds == ["proc_fd", "proc_fd", "write_outside_scratch"], sent


def test_code_relabelled_as_a_library_is_still_the_submissions(tmp_path):
    """The caller of an introspection or a process start is judged by its namespace as
    well as its file name: code compiled under json's file name, run anywhere but in
    json's own module, is the submission's."""
    import json

    sent = []
    watch = worker.Watch(sent.append, str(tmp_path / "m.py"), tmp_path / "scratch")
    watch("gc.get_objects", ())  # from this test module: a library for the hook
    assert sent == []
    relabelled = compile("watch('gc.get_objects', ())\n"
                         "watch('subprocess.Popen', (None, ['sh', '-c', 'true'], None, None))",
                         json.__file__, "exec")
    exec(relabelled, {"watch": watch})
    assert [(f["kind"], f["detail"]) for f in sent] == [
        ("introspection", "called gc.get_objects"), ("subprocess", "subprocess.Popen sh -c true")]
    sent.clear()
    json.watch = watch  # run in json's own namespace: indistinguishable from json
    try:
        exec(relabelled, vars(json))
    finally:
        del json.watch
    assert sent == []


def test_process_starts_from_the_submission_are_flagged_once_and_never_from_a_child(tmp_path):
    import os

    module_file = tmp_path / "m.py"
    sent = []
    watch = worker.Watch(sent.append, str(module_file), tmp_path / "scratch")
    code = compile("watch('os.system', ('curl example.org',))\nwatch('os.system', ('curl example.org',))\n"
                   "watch('os.fork', ())", str(module_file), "exec")
    exec(code, {"watch": watch})
    assert [f["detail"] for f in sent] == ["os.system curl example.org", "os.fork (a fork)"]
    sent.clear()
    watch.pid = os.getpid() + 1  # as in a forked child: it holds the signer, not the count
    exec(code, {"watch": watch})
    assert sent == []
