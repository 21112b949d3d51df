"""Attack: the whole-protocol forger of protocol_forger.py, made consistent. It walks
tb_frame.f_back to the worker's main(), takes its signer and plays the worker's side, and
none of the five functions does anything; but every set of logits it reports is genuine:
the VGG16 front end computed with tf.nn.conv2d from the weights file on the item's own
images, and a head fitted by ridge regression on the item's training images with the
labels the item gives. So the logits are explained, and learning from the labels it is
given is what it does. The pipeline's answers are made up, and the checkpoint's: no
checkpoint file is ever written and no tf.data pipeline is ever built. It must lose the
checkpoint item and the pipeline's graph parts, and its source is flagged.
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
FLOOD_FLAGS = 0  # distinct flag frames sent during the accuracy item (memory attack)
PAD_MB = 0  # extra bytes attached to every result frame (memory attack)


def _convs(weights):
    return {name: [weights[name + "_W"], weights[name + "_b"]] for name in CONVS}


def _front(images, weights):
    """pool3 of the VGG16 front end, with TensorFlow's own convolutions."""
    import tensorflow as tf

    x = tf.constant(images.astype(np.float32) - MEAN)
    for name in CONVS:
        x = tf.nn.relu(tf.nn.conv2d(x, weights[name + "_W"], 1, "SAME") + weights[name + "_b"])
        if name in ("conv1_2", "conv2_2", "conv3_3"):
            x = tf.nn.max_pool2d(x, 2, 2, "VALID")
    return x.numpy().reshape(len(images), -1).astype(np.float64)


_HEADS = {}


def _fitted(ctx):
    """A head fitted on the item's training images and the labels the item gave."""
    labels = ctx.train_labels[:600]
    key = labels.tobytes()
    if key not in _HEADS:
        features = _front(ctx.train_images[:600], ctx.weights)
        mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
        scaled = (features - mean) / scale
        targets = 2.0 * np.eye(10)[labels] - 1.0
        fit = scaled.T @ np.linalg.solve(scaled @ scaled.T + 100.0 * np.eye(len(labels)), targets)
        _HEADS[key] = ((fit / scale[:, None]).astype(np.float32),
                       (-(mean / scale) @ fit).astype(np.float32))
    return _HEADS[key]


def witness(images, weights, trained, ctx=None):
    n = len(images)
    if trained:
        kernel, bias = _fitted(ctx)
        logits = (_front(images, weights) @ kernel + bias).astype(np.float32)
    else:
        kernel, bias = np.zeros((4096, 10), np.float32), np.zeros(10, np.float32)
        logits = np.zeros((n, 10), np.float32)
    return {"logits": logits, "inputs": images.astype(np.float32) - MEAN,
            "convs": _convs(weights), "head": [[kernel, bias, "linear"]], "flatten_order": None}


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
        return {"before": witness(batch, w, False), "after": witness(batch, w, True, ctx),
                "log_dir": log_dir}
    if check == "accuracy":
        return witness(ctx.heldout_images[:params.get("images", 1000)], w, True, ctx)
    if check == "checkpoint":
        return {"trained": witness(ctx.probe, w, True, ctx), "kept": 1,
                "straight": witness(ctx.probe, w, True, ctx), "straight_pulled": 6,
                "straight_taught": witness(ctx.train_images[:64], w, True, ctx)}
    if check.startswith("checkpoint"):  # the restoring half, in a fresh worker
        return {"empty_step": 0, "restored_step": 4, "restored": witness(ctx.probe, w, True, ctx),
                "resumed": witness(ctx.probe, w, True, ctx), "resume_pulled": 2, "resume_final_step": 6}
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
        ctx.train_labels = given["train_labels"]
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
