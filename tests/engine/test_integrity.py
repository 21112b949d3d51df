"""Attacks on the grading protocol, each by a submission that implements nothing and
tries to earn points by writing results itself. Every one must end quickly, earn 0 on
what it forged, be marked `integrity` and be flagged for review. (Escapes from the
sandbox: test_sandbox.py.)"""
from __future__ import annotations

import json
import textwrap
import time

import numpy as np
import pytest

from grader.exercises.transfer_learning import inputs as tl_inputs
from grader.exercise import load as load_exercise

EXERCISE = load_exercise()
from grader import channel, engine, rubric
from grader.exercises.transfer_learning import vgg_weights
from kit import SOLUTION

RUBRIC = rubric.parse({"schema_version": 1, "time_limit": 20, "items": [
    {"id": "interface", "title": "Interface", "points": 5, "check": "interface"},
    {"id": "frozen", "title": "Frozen", "points": 15, "check": "frozen"},
    {"id": "weights", "title": "Weights", "points": 10, "check": "weights"},
]}, "integrity rubric")

# Frames as an attacker writes them: the old unsigned format, and a signed one with a
# key it guessed or found.
FORGE = '''
import hmac, json, os, stat, struct, sys
FORGED = [{"type": "ready"}, {"type": "start", "item": "interface"},
          {"type": "result", "item": "interface", "observation": {"missing": [], "signatures": {}}},
          {"type": "start", "item": "frozen"},
          {"type": "result", "item": "frozen", "observation": {"trainable": ["fc/kernel:0", "fc/bias:0"],
           "before": {"conv1_1": "x"}, "after": {"conv1_1": "x"}}},
          {"type": "done"}]

def unsigned(message):
    header = json.dumps(message).encode()
    return struct.pack(">IQ", len(header), 0) + header

def signed(message, key, seq):
    header = json.dumps(message).encode()
    prefix = struct.pack(">IQ", len(header), 0)
    tag = hmac.new(key, struct.pack(">Q", seq) + prefix + header, "sha256").digest()
    return prefix + tag + header

def writable_pipes():
    fds = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            info = os.fstat(fd)
        except OSError:
            continue
        if fd > 2 and stat.S_ISFIFO(info.st_mode):
            fds.append(fd)
    return fds

def spray(frames, fds):
    for fd in fds:
        for frame in frames:
            try:
                os.write(fd, frame)
            except OSError:
                break
'''

ATTACKS = {
    # The attack that used to hang `grader check`: the descriptor taken from argv.
    "argv": FORGE + '''
fd = int(sys.argv[-1])
for message in FORGED:
    os.write(fd, unsigned(message))
''',
    "proc_self_fd": FORGE + '''
spray([unsigned(m) for m in FORGED], writable_pipes())
''',
    "kit_channel_send": FORGE + '''
from grader import channel
for fd in writable_pipes():
    writer = channel.Writer(fd, channel.mac_from(bytearray(os.urandom(channel.KEY_BYTES))))
    for message in FORGED:
        try:
            writer.send(message)
        except OSError:
            break
''',
    "work_folder": FORGE + '''
found = []
for root, _, files in os.walk(os.path.dirname(os.getcwd())):
    for name in files:
        with open(os.path.join(root, name), "rb") as handle:
            data = handle.read(1 << 20)
        found += [data[i:i + 32] for i in range(0, min(len(data), 4096), 32)]
fds = writable_pipes()
for key in found[:64]:
    spray([signed(m, key, i) for i, m in enumerate(FORGED)], fds)
''',
    "gc_key_search": FORGE + '''
import gc
keys = []
for obj in gc.get_objects():
    for value in (obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else ()):
        if isinstance(value, (bytes, bytearray)) and len(value) == 32:
            keys.append(bytes(value))
        elif isinstance(value, str) and len(value) == 64:
            try:
                keys.append(bytes.fromhex(value))
            except ValueError:
                pass
fds = writable_pipes()
for key in keys[:200]:
    spray([signed(m, key, i) for i, m in enumerate(FORGED)], fds)
''',
}


@pytest.fixture(scope="module")
def inputs():
    return tl_inputs.build(RUBRIC, vgg_weights.stand_in())


def _grade(tmp_path, source: str, inputs, name="attack.py", rubric_=RUBRIC) -> engine.Report:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    start = time.monotonic()
    report = engine.grade_submission(path, rubric_, inputs, name=name, startup_limit=60)
    bound = 60 + sum(i.time_limit for i in rubric_.items) + engine.BUDGET_MARGIN
    assert time.monotonic() - start < bound
    return report


@pytest.mark.slow
@pytest.mark.parametrize("attack, flag", [
    ("argv", "decoy"),
    ("proc_self_fd", "proc_fd"),
    ("kit_channel_send", "internal_import"),
    ("work_folder", "proc_fd"),
    ("gc_key_search", "introspection"),
])
def test_forged_frames_earn_nothing_and_are_flagged(tmp_path, inputs, attack, flag):
    report = _grade(tmp_path, ATTACKS[attack], inputs)
    assert report.score == 0
    assert all(r.status == "integrity" for r in report.items), [(r.id, r.status, r.message) for r in report.items]
    kinds = {f.kind for f in report.flags}
    assert flag in kinds, report.flags
    # and what gave it away on the channel itself
    assert kinds & {"decoy", "tampering"}, report.flags


@pytest.mark.slow
def test_no_file_of_the_job_is_in_the_workers_view_nor_a_probe_at_import(tmp_path, inputs):
    """The key, the job and the grading inputs reach the worker on its stdin: around its
    working folder it finds its own module and its scratch folder, nothing else. The
    worker's context, reached through frames at import, holds no probe or held-out image
    yet: each item's come when it starts."""
    source = '''
    import json, os, sys
    top = os.path.dirname(os.getcwd())
    SEEN = sorted(path for root, _, files in os.walk(top) for name in files
                  if not (path := os.path.relpath(os.path.join(root, name), top)).startswith("scratch/"))
    frame = sys._getframe()
    while frame is not None and "ctx" not in frame.f_locals:
        frame = frame.f_back
    CTX = frame.f_locals["ctx"]
    AT_IMPORT = [len(CTX.probe), len(CTX.heldout_images)]

    def preprocess(images):
        raise RuntimeError("SEEN " + json.dumps([SEEN, AT_IMPORT, len(CTX.probe)]))
    '''
    only = rubric.parse({"schema_version": 1, "time_limit": 20, "items": [
        {"id": "preprocess", "title": "Preprocessing", "points": 10, "check": "preprocess"}]}, "view")
    (item,) = _grade(tmp_path, source, inputs, rubric_=only).items
    seen, at_import, when_asked = json.loads(item.message.split("SEEN ", 1)[1].rsplit(", at line", 1)[0])
    assert len(seen) == 1 and seen[0].startswith("module/"), seen  # scratch/ is left out
    assert at_import == [0, 0] and when_asked == len(inputs.probe_for("preprocess"))


@pytest.mark.slow
def test_a_forger_holding_the_workers_own_signer_is_still_caught_before_ready(tmp_path, inputs):
    """Even with the real signing object (found by walking the garbage collector), frames
    sent while the submission imports break the protocol: only the worker says ready."""
    source = '''
    import gc
    from grader import channel as fresh  # a fresh copy: its Writer class is not the worker's
    writers = [o for o in gc.get_objects() if type(o).__name__ == "Writer" and hasattr(o, "send")]
    for writer in writers:
        writer.send({"type": "ready"})
        writer.send({"type": "start", "item": "interface"})
    '''
    report = _grade(tmp_path, source, inputs)
    assert report.score == 0 and {r.status for r in report.items} == {"integrity"}
    assert {"protocol", "introspection"} <= {f.kind for f in report.flags}, report.flags


@pytest.mark.slow
@pytest.mark.parametrize("frame, expected", [
    ('{"type": "result", "item": "weights", "observation": {}}', "'result' for 'weights'"),
    ('{"type": "done"}', "'done'"),
    ('{"type": "surprise"}', "'surprise'"),
    ('{"type": "flag", "kind": "surprise", "detail": "x"}', "a flag of unknown kind 'surprise'"),
])
def test_signed_frames_out_of_order_break_the_protocol(tmp_path, inputs, frame, expected):
    """A result for an item that was not started, done with items left, an unknown frame:
    each stops the grading of what is left, flagged; the item already graded keeps its
    outcome. (The frames are sent with the worker's own signer, during interface.)"""
    source = SOLUTION.read_text() + f'''
import gc as _gc
_original = build_model
def build_model(*args, **kwargs):
    for writer in [o for o in _gc.get_objects() if type(o).__name__ == "Writer"]:
        writer.send({frame})
    return _original(*args, **kwargs)
'''
    report = _grade(tmp_path, source, inputs, rubric_=rubric.parse({
        "schema_version": 1, "time_limit": 30, "items": [
            {"id": "interface", "title": "Interface", "points": 5, "check": "interface"},
            {"id": "layer_shapes", "title": "Shapes", "points": 10, "check": "layer_shapes"},
            {"id": "weights", "title": "Weights", "points": 10, "check": "weights"}]}, "r"))
    by_id = {r.id: r for r in report.items}
    assert by_id["interface"].status == "passed"
    assert by_id["layer_shapes"].status == by_id["weights"].status == "integrity"
    assert expected in by_id["weights"].message
    assert "protocol" in {f.kind for f in report.flags}


def _after_first_result(action: str) -> str:
    """The reference, with `action` run by the worker's own os.write right after it
    sends the first result: between two items."""
    return SOLUTION.read_text() + f'''
import os as _os
_write = _os.write
def _hook(fd, data):
    written = _write(fd, data)
    if b'"type": "result"' in bytes(data):
        {action}
    return written
_os.write = _hook
'''


@pytest.mark.slow
def test_exit_between_items_is_a_violation_not_a_restart_loop(tmp_path, inputs):
    """The worker ends right after an item's result: the rest is not retried."""
    report = _grade(tmp_path, _after_first_result("_os._exit(0)"), inputs)
    statuses = [r.status for r in report.items]
    assert statuses == ["passed", "integrity", "integrity"], [(r.id, r.status, r.message) for r in report.items]
    assert any(f.kind == "protocol" and "between items" in f.detail for f in report.flags)


@pytest.mark.slow
def test_stall_between_items_ends_within_the_gap_limit(tmp_path, inputs, monkeypatch):
    monkeypatch.setattr(engine.protocol, "GAP_LIMIT", 3.0)
    start = time.monotonic()
    report = _grade(tmp_path, _after_first_result("__import__('time').sleep(3600)"), inputs)
    assert time.monotonic() - start < 45
    assert [r.status for r in report.items] == ["passed", "integrity", "integrity"]
    assert any("stalled" in f.detail for f in report.flags)


@pytest.mark.slow
def test_whole_grading_is_bounded_by_the_sum_of_limits(tmp_path, inputs, monkeypatch):
    """Each item hangs: every one times out after its own limit, restarts happen once per
    item, and the total stays within startup + limits + margin."""
    monkeypatch.setattr(engine, "BUDGET_MARGIN", 5.0)
    short = rubric.parse({"schema_version": 1, "time_limit": 4, "items": [
        {"id": "interface", "title": "Interface", "points": 5, "check": "interface"},
        {"id": "preprocess", "title": "Pre", "points": 5, "check": "preprocess"},
        {"id": "weights", "title": "Weights", "points": 10, "check": "weights"}]}, "short")
    source = '''
    import time
    def preprocess(images):
        time.sleep(3600)
    def build_model(*args, **kwargs):
        time.sleep(3600)
    '''
    start = time.monotonic()
    report = _grade(tmp_path, source, inputs, rubric_=short)
    elapsed = time.monotonic() - start
    statuses = {r.id: r.status for r in report.items}
    assert statuses["preprocess"] == "timeout" and statuses["weights"] == "timeout"
    assert elapsed < 60 + 3 * 4 + 5


@pytest.mark.slow
def test_honest_reference_raises_no_flag(tmp_path, inputs):
    report = _grade(tmp_path, SOLUTION.read_text(), inputs, name="transfer_learning.py")
    assert report.score == report.max_score and report.flags == [], report.flags


def test_channel_rejects_replayed_and_foreign_frames():
    import os
    key = channel.new_key()
    read_fd, write_fd = os.pipe()
    writer = channel.Writer(write_fd, channel.mac_from(bytearray(key)))
    writer.send({"type": "ready"})
    frame_bytes = os.read(read_fd, 4096)
    os.write(write_fd, frame_bytes)
    os.write(write_fd, frame_bytes)  # the same frame again: its sequence number is spent
    reader = channel.Reader(read_fd, key)
    assert reader.receive() == {"type": "ready"}
    with pytest.raises(channel.ChannelError) as err:
        reader.receive()
    assert err.value.kind == "tampered"
    os.close(write_fd)
    os.close(read_fd)


def test_the_key_is_erased_from_its_buffer():
    buffer = bytearray(channel.new_key())
    mac = channel.mac_from(buffer)
    assert buffer == bytearray(channel.KEY_BYTES) and mac.copy().digest()


# Found by an attacker briefed only with the kit (see docs/security.md).

FRAME_WALK = '''
import sys
def _find_main():
    frame = sys._getframe()
    while frame is not None:
        if "collectors" in frame.f_locals and "code_objects" in frame.f_locals:
            return frame.f_locals
        frame = frame.f_back
found = _find_main()
fake = lambda module, ctx, params: {}
for name in list(found["collectors"]):
    found["collectors"][name] = fake
    found["code_objects"][name] = fake.__code__
'''

FAKE_MODEL = '''
import os
import numpy as np
import tensorflow as tf

class _FC:
    name = "fc"
    def __init__(self):
        self.weights = [tf.Variable(np.zeros((4096, 10), np.float32)), tf.Variable(np.zeros(10, np.float32))]

class _Model:
    """No convolutions at all: a lookup table with an fc-shaped pair of variables."""
    layers = []
    def __init__(self):
        self.fc, self.table = _FC(), {}
    @property
    def trainable_variables(self):
        return list(self.fc.weights)
    def get_layer(self, name):
        if name == "fc":
            return self.fc
        raise ValueError(name)
    def __call__(self, images, training=False):
        out = np.zeros((len(images), 10), np.float32)
        for i, image in enumerate(np.asarray(images)):
            if image.tobytes() in self.table:
                out[i, self.table[image.tobytes()]] = 10.0
        return out

def build_model(weights, num_classes=10):
    return _Model()

def train(model, dataset, steps, learning_rate=1e-3, log_dir=None, checkpoint_dir=None,
          checkpoint_every=50, max_to_keep=3):
    batches = iter(dataset)
    for _ in range(steps):
        images, labels = next(batches)
        for image, label in zip(np.asarray(images), np.asarray(labels)):
            model.table[image.tobytes()] = int(label)
        model.fc.weights[1].assign_add(np.full(10, 0.01, np.float32))
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
        EVENT_FILE(os.path.join(log_dir, "events.out.tfevents.0"))
    return {"final_step": steps}
'''


@pytest.mark.slow
def test_frame_walk_to_the_workers_collectors_cannot_replace_them(tmp_path, inputs):
    """The worker's collectors sit in read-only mappings; walking frames is flagged."""
    report = _grade(tmp_path, FRAME_WALK, inputs)
    assert report.score == 0
    assert "introspection" in {f.kind for f in report.flags}, report.flags


@pytest.mark.slow
def test_a_model_without_convolutions_is_not_frozen(tmp_path, inputs):
    source = FAKE_MODEL.replace("EVENT_FILE(", "(lambda path: None)(")
    report = _grade(tmp_path, source, inputs, rubric_=rubric.parse({
        "schema_version": 1, "time_limit": 30, "items": [
            {"id": "frozen", "title": "Frozen", "points": 15, "check": "frozen"}]}, "r"))
    assert report.items[0].score < 15 * 0.7 and "no kernel and bias found" in report.items[0].message


@pytest.mark.slow
@pytest.mark.parametrize("event_file, expected", [
    ("os.mkfifo", "no TensorBoard scalar"),  # a FIFO would block the reader forever
    ("lambda path: open(path, 'wb').write(b'\\xff' * 16)", "no TensorBoard scalar"),  # 2**64-byte record
    ("lambda path: os.symlink('/dev/zero', path)", "no TensorBoard scalar"),  # an endless file
    ("lambda path: os.mkdir(path)", "no TensorBoard scalar"),
])
def test_hostile_event_files_cannot_stop_or_crash_the_judge(tmp_path, inputs, event_file, expected):
    """The judge reads the event files the submission wrote: only regular files, with
    bounded records, and never a traceback."""
    source = FAKE_MODEL.replace("EVENT_FILE(", f"({event_file})(")
    report = _grade(tmp_path, source, inputs, rubric_=rubric.parse({
        "schema_version": 1, "time_limit": 30, "items": [
            {"id": "training", "title": "Training", "points": 10, "check": "training",
             "params": {"steps": 5}}]}, "r"))
    assert report.items[0].status in ("partial", "failed") and expected in report.items[0].message, \
        report.items[0]


def test_no_path_outside_scratch_is_read_for_the_judge(tmp_path, inputs):
    """An observation naming a host folder (a forged one could) is refused, not read; and
    tags the worker claims itself are replaced by what its files hold."""
    item = rubric.parse({"schema_version": 1, "items": [
        {"id": "training", "title": "Training", "points": 10, "check": "training"}]}, "r").items[0]
    logits = np.zeros((256, 10), np.float32)
    forged = {"training": engine.Observed({"before": logits, "after": logits, "log_dir": "/"}, 1.0)}
    engine._finish([item], forged, tmp_path, EXERCISE)
    [result] = engine.judge([item], forged, inputs, EXERCISE)
    assert result.score == 0 and "outside the scratch folder" in result.message
    (tmp_path / "logs").mkdir()
    claimed = {"training": engine.Observed({"before": logits, "after": logits, "log_dir": str(tmp_path / "logs"),
                                            "scalar_tags": ["loss", "accuracy"]}, 1.0)}
    engine._finish([item], claimed, tmp_path, EXERCISE)
    assert claimed["training"].observation["scalar_tags"] == []
