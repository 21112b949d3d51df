"""Attack: the "inputs" of a logit witness carry the answer (110/110 with no exercise code).

Graded since the recomputation starts from the fitted colour transform of the true images
(checks._colour_transform; tests/engine/test_attacks.py): 0 on both accuracy items and the
checkpoint item, only the summaries half of training, as the protocol forger. The
description below is of the kit before that fix, as the outside attacker wrote it.

Before the fix it passed the kit's own explain_logits, judge_accuracy, judge_training and
judge_checkpoint on every row (checked in numpy against those functions).

MECHANISM
explain_logits (grader/exercises/transfer_learning/checks/, `def explain_logits`) recomputes the logits from what the
worker reports: `inputs` (the conv1_1 input), `convs` and `head`. Two of its assumptions
do not hold against a key holder:

1. `_pixelwise` (grader/exercises/transfer_learning/checks/, `def _pixelwise`) accepts the inputs as "a colour
   transform of each pixel" when the least-squares residual is within
       1e-3 * (1.0 + max|y|)
   i.e. RELATIVE TO THE LARGEST INPUT VALUE, which the worker chooses. With every input
   value shifted by OFFSET = 2**20 the allowed residual is ~1049 per pixel, so the inputs
   can hold an arbitrary picture e in [0, 256] (multiples of 1/8, exact in float32 at
   2**20) on top of a constant: y = OFFSET + e. Nothing in the image is needed.
2. Nothing that judges the training, accuracy or checkpoint items compares `convs` with
   the weights file (only judge_weights/judge_frozen do, on other observations). "Trained
   convolutions are explained by their own weights" is deliberate, so any conv weights of
   the table's shapes are accepted.

So the witness is a real, exactly recomputable network whose INPUT is the answer:
   conv1_1: centre tap, in-channel 0 -> out-channel 0, weight 1, bias -OFFSET (gives e);
   conv1_2 .. conv3_3: centre tap identity on channel 0, bias 0 (ReLU keeps e >= 0);
   pool1..pool3 (2x2 max) turn each 8x8 block of e into one pool3 cell;
   fc: kernel[j*256, j] = 1 (row-major flatten: pool3 cell j = (j//4, j%4), channel 0).
The logits are exactly v_j, the value painted into block j. The grader's float32
vgg_front reproduces them bit for bit (every product except one is an exact 0, and
(2**20 + e) - 2**20 is exact), so the 1e-3 tolerance and the decision check ("top class is
the recomputed head's on all but one of 12 rows") are passed on EVERY row: sampling rows
after the logits arrived does not help, because every row is explained.

What is painted:
- accuracy_quick / accuracy: v = a numpy Fourier detector of the synthetic stripes
  (protocol_forger.detect, ~1.0 on the held-out images per README's fake_network result;
  measured on freshly generated synthetic images);
- training: "before" v = 0 (loss ln 10), "after" v = 64 * one-hot(train label) on the
  256 training images (the labels are in the worker's ctx): loss 2.30 -> ~0, "learned";
- checkpoint: four identical witnesses (same head arrays, same logits); the counters are
  made up as in protocol_forger.
Everything else (interface, preprocess, layer_shapes, weights, frozen, features,
pipeline, summaries) is protocol_forger.py's forging, unchanged.

KIT LINES RELIED ON
- grader/exercises/transfer_learning/checks/ `_pixelwise`: `return float(np.max(np.abs(design @ solution - y)...)) <=
  1e-3 * (1.0 + float(np.max(np.abs(y), initial=0.0)))`  (tolerance scales with the
  attacker's offset);
- grader/exercises/transfer_learning/checks/ `explain_logits`: `lacking = [...]` only checks conv SHAPES;
  `features = _cached_front(np.asarray(inputs)[rows], convs)` uses the reported convs;
- grader/exercises/transfer_learning/checks/ judge_accuracy / judge_training / judge_checkpoint: no comparison of
  the witness's convs or inputs with the weights file or with preprocess;
- grader/worker.py main(): locals `send`, `job`, `ctx`, `asked`, `collectors`, reached by
  walking tb_frame.f_back (not an audited event, so not flagged) -- as protocol_forger.

PREDICTED SCORE (rubrics/transfer_learning.yaml, every item incl. hidden):
   interface 5/5, preprocess 10/10, layer_shapes 10/10, weights 10/10, frozen 15/15,
   features 10/10, training 10/10 (learned half + summaries), accuracy_quick 5/5,
   checkpoint 15/15, pipeline 10/10, accuracy 10/10  ->  110/110  (+35 over 75/110).
Flags: none expected (same as protocol_forger: frame walking raises no audit event).
Genuinely implemented: nothing.

THE FIX TAKEN: the reported inputs only choose the colour transform (twelve numbers fitted
over every pixel of every image); the grading process recomputes the features from that
transform of the true images (checks._colour_transform), so the painting never reaches
the recomputation. The convolutions stay free (trained convolutions are a mistake the
frozen item grades), but hand-made ones now have only the true images to work on.
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
OFFSET = 2.0 ** 20  # float32 spacing there is 1/8: OFFSET + e is exact for e in k/8, e < 2**20
SPAN = 200.0        # painted values lie in [0, SPAN]


# ------------------------------------------------------------------ the "network"
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
    """Scores of the ten stripe classes: no network, a Fourier power detector."""
    x = images.astype(np.float64)
    rg = (x[..., 0] - x[..., 1]) / np.sqrt(2.0)
    rg -= rg.mean(axis=(1, 2), keepdims=True)
    power = np.abs(np.fft.fft2(rg)) ** 2
    return np.log(np.einsum("nij,kij->nk", power, _masks()) + 1.0)


def _route_convs():
    """Conv weights of the table's shapes that carry channel 0 of the input to pool3."""
    convs = {}
    for name in CONVS:
        cin, cout = CHANNELS[name]
        kernel = np.zeros((3, 3, cin, cout), np.float32)
        kernel[1, 1, 0, 0] = 1.0
        bias = np.zeros(cout, np.float32)
        if name == "conv1_1":
            bias[0] = -OFFSET
        convs[name] = [kernel, bias]
    return convs


def _route_head():
    kernel = np.zeros((4096, 10), np.float32)
    for j in range(10):
        kernel[j * 256, j] = 1.0  # pool3 cell (j // 4, j % 4), channel 0, row-major flatten
    return [[kernel, np.zeros(10, np.float32), "linear"]]


def _quantize(values, span):
    v = np.clip(np.asarray(values, np.float64), 0.0, span)
    return np.round(v * 8.0) / 8.0


def _paint(values):
    """inputs [n, 32, 32, 3] whose 8x8 block j of channel 0 holds values[:, j] over OFFSET."""
    n = len(values)
    e = np.zeros((n, 4, 4), np.float64)
    e.reshape(n, 16)[:, :10] = values
    e = np.repeat(np.repeat(e, 8, axis=1), 8, axis=2)  # [n, 32, 32]
    inputs = np.full((n, 32, 32, 3), OFFSET, np.float64)
    inputs[..., 0] += e
    return inputs.astype(np.float32)


def _pixelwise_ok(images, inputs):
    """The kit's _pixelwise, to shrink the painting if it ever would not pass."""
    x = images.reshape(-1, 3).astype(np.float64)
    y = inputs.reshape(-1, 3).astype(np.float64)
    design = np.hstack([x, np.ones((len(x), 1))])
    solution, *_ = np.linalg.lstsq(design.T @ design, design.T @ y, rcond=None)
    return float(np.max(np.abs(design @ solution - y))) <= 1e-3 * (1.0 + float(np.max(np.abs(y))))


def smuggled(images, scores):
    """A witness that explain_logits recomputes exactly: logits = scores (quantized)."""
    span = SPAN
    while True:
        s = np.asarray(scores, np.float64)
        lo, hi = s.min(axis=1, keepdims=True), s.max(axis=1, keepdims=True)
        values = _quantize((s - lo) / np.maximum(hi - lo, 1e-12) * span, span)
        inputs = _paint(values)
        if span < 1 or _pixelwise_ok(images, inputs):
            break
        span /= 2
    return {"logits": values.astype(np.float32), "inputs": inputs, "convs": _route_convs(),
            "head": _route_head(), "flatten_order": None}


def _convs(weights):
    return {name: [weights[name + "_W"], weights[name + "_b"]] for name in CONVS}


# ------------------------------------------------------------------ the other items (protocol_forger's)
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
        batch, labels = ctx.train_images[:256], ctx.train_labels[:256]
        log_dir = str(ctx.scratch / "training-logs")
        _summaries(log_dir)
        before = smuggled(batch, np.zeros((len(batch), 10)))
        after = smuggled(batch, np.eye(10)[labels])
        return {"before": before, "after": after, "log_dir": log_dir}
    if check == "accuracy":
        images = ctx.heldout_images[:params.get("images", 1000)]
        return smuggled(images, detect(images))
    if check == "checkpoint":
        same = smuggled(ctx.probe, detect(ctx.probe))
        return {"trained": same, "kept": 1, "straight": same, "straight_pulled": 6}
    if check.startswith("checkpoint"):  # the restoring half, in a fresh worker
        same = smuggled(ctx.probe, detect(ctx.probe))
        return {"empty_step": 0, "restored_step": 4, "restored": same, "resumed": same,
                "resume_pulled": 2, "resume_final_step": 6}
    if check == "pipeline":
        return _pipeline(params.get("batch_size", 16))
    raise KeyError(check)


# ------------------------------------------------------------------ the protocol (protocol_forger's)
def _asked_fd(loc):
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
    # the worker's job (grader/job.py), its items as plain dicts
    for item in [dict(vars(i)) for i in job.items]:
        send({"type": "start", "item": item["id"]})
        given = _read_asked(asked)
        ctx.probe = given["probe"]
        ctx.heldout_images = given.get("heldout_images", ctx.heldout_images)
        ctx.train_labels = given["train_labels"]  # each item's own names of the classes
        obs = forge(item, ctx, collectors)
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
