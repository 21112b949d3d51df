"""The worker's audit hook and import notes (grader/worker.py)."""
from __future__ import annotations

import types
from pathlib import Path

import pytest

from grader import worker
from grader.exercise import load
from grader.cells import SKIPPED


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


def _built_notebook(tmp_path, cells, labels=None):
    """A module built from notebook cells, written where the worker would import it."""
    from grader.cells import definitions_only

    path = tmp_path / "transfer_learning.py"
    path.write_text(definitions_only(cells, labels=labels))
    return str(path)


def _raised(module_file: str, call: str):
    """The exception the module's code raises when `call` runs in its namespace."""
    namespace = {}
    exec(compile(Path(module_file).read_text(), module_file, "exec"), namespace)
    try:
        exec(call, namespace)
    except Exception as exc:  # noqa: BLE001 - the error is what is tested
        return exc
    raise AssertionError(f"{call} raised nothing")


def test_an_error_in_plain_python_is_reported_at_the_students_cell_and_line(tmp_path):
    """Does a notebook's error name its type, full message, "code cell N (In [n]), line M"
    as the student counts them, and the failing line's text (not the built module's line)?"""
    module_file = _built_notebook(tmp_path, [
        ("import numpy as np\nprint('a demo')\nMEANS = [1.0, 2.0, 3.0]\n", False),
        ("\n# my preprocessing\ndef preprocess(images):\n    scale = 255.0\n"
         "    return images * scale - MEANS[3]\n", False),
        ("def train(model, train_ds, val_ds=None, *, steps, checkpoint_dir=None):\n"
         "    x = 1\n    return x + undefined_rate\n", True)],
        labels=["code cell 1 (In [3])", "code cell 2 (In [12])", "code cell 3"])
    message = worker.describe(_raised(module_file, "preprocess(1.0)"), module_file)
    assert message == ("IndexError: list index out of range, at code cell 2 (In [12]), line 5: "
                       "`return images * scale - MEANS[3]`")
    message = worker.describe(_raised(module_file, "train(None, None, steps=1)"), module_file)
    assert message == ("NameError: name 'undefined_rate' is not defined, at code cell 3, line 3: "
                       "`return x + undefined_rate`")


def test_an_autograph_error_is_unwrapped_and_placed_at_the_line_inside_the_tf_function(tmp_path):
    """TensorFlow raises an error in a tf.function's code as "in user code:", frames, then
    the error; a graph execution error lists where its op was defined. Is each reported as
    the underlying error, at the innermost line of the submission its message names?"""
    module_file = _built_notebook(tmp_path, [
        ("import numpy as np\n", False),
        ("def train(model, train_ds, val_ds=None, *, steps, checkpoint_dir=None):\n"
         "    @tf.function\n    def train_step(images):\n        return images * learning_rat\n"
         "    return train_step(1.0)\n", True)], labels=["code cell 1 (In [1])", "code cell 2 (In [7])"])
    # the module line of `return images * learning_rat`, and of the call
    lines = Path(module_file).read_text().splitlines()
    inner = lines.index("        return images * learning_rat") + 1
    wrapped = NameError(
        f'in user code:\n\n    File "{module_file}", line {inner}, in train_step  *\n'
        "        return images * learning_rat\n\n"
        "    NameError: name 'learning_rat' is not defined\n")
    assert worker.describe(wrapped, module_file) == (
        "NameError: name 'learning_rat' is not defined, at code cell 2 (In [7]), line 4: "
        "`return images * learning_rat`")
    graph = RuntimeError(
        "Graph execution error:\n\nDetected at node GatherV2 defined at (most recent call last):\n"
        f'  File "/somewhere/run.py", line 6, in <module>\n\n  File "{module_file}", line {inner + 1},'
        f' in train\n\n  File "{module_file}", line {inner}, in train_step\n\n'
        "indices = 10 is not in [0, 2)\n\t [[{{node GatherV2}}]] [Op:__inference_train_step_25]")
    assert worker.describe(graph, module_file) == (
        "RuntimeError: indices = 10 is not in [0, 2) [[{{node GatherV2}}]] "
        "[Op:__inference_train_step_25], at code cell 2 (In [7]), line 4: `return images * learning_rat`")
    # a message that names no frame is kept whole, on one line
    plain = _raised(module_file, "raise ValueError('in user code:\\nfirst\\nsecond')")
    assert worker.describe(plain, module_file) == "ValueError: in user code: first second"


def test_a_module_error_is_placed_at_its_own_line_and_bounded(tmp_path):
    """A .py submission's error names the module's own line; a syntax error its line, not
    the text Python adds; a long message and line are cut to one bounded line."""
    module = tmp_path / "transfer_learning.py"
    module.write_text("import math\n\ndef preprocess(images):\n"
                      f"    raise ValueError('x' * 1000)  # {'y' * 200}\n")
    message = worker.describe(_raised(str(module), "preprocess(1)"), str(module))
    assert message.startswith("ValueError: xxx") and "\n" not in message and len(message) < 500
    assert ", at line 4: `raise ValueError('x' * 1000)  # yyy" in message and message.endswith("...`")
    module.write_text("def preprocess(images:\n    return images\n")
    try:
        compile(module.read_text(), str(module), "exec")
    except SyntaxError as exc:
        message = worker.describe(exc, str(module))
    assert message.startswith("SyntaxError: ") and "transfer_learning.py" not in message
    assert message.endswith(", at line 1: `def preprocess(images:`"), message
    assert worker.describe(NameError("name 'x' is not defined")) == "NameError: name 'x' is not defined"


@pytest.mark.slow
def test_check_of_a_notebook_reports_errors_in_the_students_terms(tmp_path, capsys):
    """One grading of the reference notebook, executed (its cells have In [n]), with an
    undefined name inside train's tf.function step and a plain Python error in preprocess:
    `grader check` shows each item's error with its name, its cell and line, and the line."""
    import json

    import nbformat
    import yaml

    from grader import cli
    from kit import DEFAULT_RUBRIC, ROOT

    nb = nbformat.read(str(ROOT / "solutions" / "transfer_learning.ipynb"), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for count, cell in enumerate(code, 1):
        cell.execution_count = count + 10
    [prep] = [n for n, c in enumerate(code, 1) if c.source.startswith("def preprocess(")]
    [train] = [n for n, c in enumerate(code, 1) if c.source.startswith("def train(")]
    # preprocess fails on the check's six probe images only: build_model calls it too
    bad = {prep: ("    images = tf.image.convert_image_dtype(",
                  "    if images.shape[0] == 6:\n        blue = IMAGENET_MEAN_RGB[3]\n"),
           train: ("        gradients = tape.gradient(", "        rate = learning_rat\n")}
    rows = {}
    for number, (line, inserted) in bad.items():
        cell = code[number - 1]
        assert line in cell.source
        cell.source = cell.source.replace(line, inserted + line, 1)
        rows[number] = cell.source[:cell.source.index(inserted)].count("\n") + inserted.count("\n")
    path = tmp_path / "transfer_learning.ipynb"
    nbformat.write(nb, str(path))
    rubric = yaml.safe_load(DEFAULT_RUBRIC.read_text())
    rubric["items"] = [i for i in rubric["items"] if i["id"] in ("preprocess", "frozen")]
    (tmp_path / "rubric.yaml").write_text(yaml.safe_dump(rubric))

    assert cli.main(["check", str(path), "--rubric", str(tmp_path / "rubric.yaml"),
                     "--json", str(tmp_path / "r.json")]) == 0
    printed = capsys.readouterr().out
    messages = {i["id"]: i["message"] for i in json.loads((tmp_path / "r.json").read_text())["items"]}
    assert messages["preprocess"].endswith(
        f"IndexError: list index out of range, at code cell {prep} (In [{prep + 10}]), "
        f"line {rows[prep]}: `blue = IMAGENET_MEAN_RGB[3]`"), messages
    assert messages["frozen"].endswith(
        f"NameError: name 'learning_rat' is not defined, at code cell {train} (In [{train + 10}]), "
        f"line {rows[train]}: `rate = learning_rat`"), messages
    assert "in user code" not in str(messages) and "'learning_rat' is not defined" in printed


def test_an_error_keras_wrapped_in_a_layers_call_is_the_errors_own():
    """Keras re-raises an error in a layer's call with the layer and its arguments around
    the error's message: is the message the error's own, with the layer named after it?"""
    wrapped = IndexError("Exception encountered when calling Lambda.call().\n\n"
                         "\x1b[1mlist index out of range\x1b[0m\n\nArguments received by "
                         "Lambda.call():\n  • inputs=tf.Tensor(shape=(32, 32, 32, 3), dtype=uint8)")
    assert worker.describe(wrapped) == "IndexError: list index out of range (in Lambda.call())"
