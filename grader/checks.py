"""The exercise's checks. Each check is two halves:

- `collect_<check>(module, ctx, params)` runs in the worker process, calls the student's
  code and returns plain observations (numbers, strings, numpy arrays);
- `judge_<check>(obs, ctx, params)` runs in the grading process, never touches student
  code or TensorFlow, and turns observations into (fraction of points, message).

Labels of held-out images exist only on the judging side.
"""
from __future__ import annotations

import hashlib
import inspect
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .vgg_weights import conv_layers

IMAGENET_MEAN_RGB = np.array([123.68, 116.779, 103.939], np.float32)
# The exercise keeps VGG16's convolutions of blocks 1 to 3 (conv1_1 .. conv3_3).
CONV_LAYERS = [name for name, _, _ in conv_layers() if name[4] in "123"]
LAYER_ORDER = ["preprocess", "conv1_1", "conv1_2", "pool1", "conv2_1", "conv2_2", "pool2",
               "conv3_1", "conv3_2", "conv3_3", "pool3", "flatten", "fc"]
LAYER_SHAPES = {
    "preprocess": (32, 32, 3), "conv1_1": (32, 32, 64), "conv1_2": (32, 32, 64),
    "pool1": (16, 16, 64), "conv2_1": (16, 16, 128), "conv2_2": (16, 16, 128),
    "pool2": (8, 8, 128), "conv3_1": (8, 8, 256), "conv3_2": (8, 8, 256),
    "conv3_3": (8, 8, 256), "pool3": (4, 4, 256), "flatten": (4096,), "fc": (10,),
}
FC_PARAMS = 4096 * 10 + 10
SIGNATURES = {
    "preprocess": ["images"],
    "build_model": ["weights", "num_classes"],
    "make_dataset": ["images", "labels", "batch_size", "shuffle", "repeat", "seed"],
    "train": ["model", "train_ds", "val_ds", "steps", "checkpoint_dir", "checkpoint_every",
              "max_to_keep", "log_dir"],
    "restore_checkpoint": ["model", "checkpoint_dir"],
}


@dataclass
class WorkerContext:
    """What the student-facing half may see: no held-out labels."""
    weights: dict
    train_images: np.ndarray
    train_labels: np.ndarray
    probe: np.ndarray
    heldout_images: np.ndarray
    scratch: Path
    submission_dir: Path


@dataclass
class JudgeContext:
    weights: dict
    train_labels: np.ndarray
    probe: np.ndarray
    heldout_labels: np.ndarray
    scratch: Path


def digest(array) -> str:
    return hashlib.sha256(np.ascontiguousarray(np.asarray(array)).tobytes()).hexdigest()


# ---------------------------------------------------------------- worker-side helpers

def _build(module, ctx: WorkerContext):
    return module.build_model(ctx.weights, num_classes=10)


def _fixed_batches(ctx: WorkerContext, start: int = 0, batch: int = 32, counter=None):
    """The grader's own endless dataset of fixed batches (batch i is always the same),
    counting how many batches the student's code pulls."""
    import tensorflow as tf

    n = len(ctx.train_labels) // batch

    def gen():
        i = start
        while True:
            if counter is not None:
                counter[0] += 1
            k = i % n
            yield ctx.train_images[k * batch:(k + 1) * batch], ctx.train_labels[k * batch:(k + 1) * batch]
            i += 1

    spec = (tf.TensorSpec([batch, 32, 32, 3], tf.uint8), tf.TensorSpec([batch], tf.int64))
    return tf.data.Dataset.from_generator(gen, output_signature=spec)


def _outputs(model, images) -> np.ndarray:
    return np.asarray(model(images, training=False), dtype=np.float32)


def _conv_weights(model) -> dict:
    return {name: model.get_layer(name).get_weights() for name in CONV_LAYERS}


def _fraction_and_messages(parts: list[tuple[float, bool, str]]) -> tuple[float, str]:
    """Sum the weights of the passed parts; the message lists what failed."""
    score = sum(weight for weight, ok, _ in parts if ok)
    failed = [message for _, ok, message in parts if not ok]
    return score, "; ".join(failed) if failed else "all good"


def _max_rel_diff(found: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(found - expected)) / max(1.0, float(np.max(np.abs(expected)))))


# ---------------------------------------------------------------- 1 interface

def _raises_not_implemented(function) -> bool:
    """Does the function still hold the skeleton's `raise NotImplementedError`?"""
    import ast
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            target = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(target, ast.Name) and target.id == "NotImplementedError":
                return True
    return False


def collect_interface(module, ctx, params):
    found, unfinished = {}, []
    for name in SIGNATURES:
        value = getattr(module, name, None)
        if value is None or not callable(value):
            found[name] = None
            continue
        try:
            found[name] = [("**" if p.kind is p.VAR_KEYWORD else "") + p.name
                           for p in inspect.signature(value).parameters.values()]
        except (TypeError, ValueError):
            found[name] = ["*"]
        if _raises_not_implemented(value):
            unfinished.append(name)
    return {"functions": found, "unfinished": unfinished}


def judge_interface(obs, ctx, params):
    problems = []
    for name, wanted in SIGNATURES.items():
        got = obs["functions"].get(name)
        if got is None:
            problems.append(f"{name} is missing or not a function")
        elif "*" not in got and not any(p.startswith("**") for p in got):
            lacking = [p for p in wanted if p not in got]
            if lacking:
                problems.append(f"{name} lacks parameter(s) {', '.join(lacking)}")
            elif name in obs.get("unfinished", []):
                problems.append(f"{name} still raises NotImplementedError")
    if not problems:
        return 1.0, "all five functions are defined with the expected parameters"
    return (len(SIGNATURES) - len(problems)) / len(SIGNATURES), \
        "; ".join(problems) + ". Hint: implement every function, keeping the skeleton's signatures."


# ---------------------------------------------------------------- 2 preprocess

def collect_preprocess(module, ctx, params):
    import tensorflow as tf

    out = module.preprocess(tf.constant(ctx.probe))
    dtype = getattr(out, "dtype", None)
    return {"dtype": getattr(dtype, "name", str(dtype if dtype is not None else type(out))),
            "output": np.asarray(out, dtype=np.float64)}


_PREPROCESS_MISTAKES = [
    ("the pixels were not multiplied by 255 after convert_image_dtype",
     lambda x: x / 255.0 - IMAGENET_MEAN_RGB),
    ("the mean is subtracted in BGR order; our images are RGB",
     lambda x: x - IMAGENET_MEAN_RGB[::-1]),
    ("the pixels were scaled twice (x255 on values already 0..255)",
     lambda x: x * 255.0 - IMAGENET_MEAN_RGB),
    ("the colour channels are reversed", lambda x: x[..., ::-1] - IMAGENET_MEAN_RGB),
    ("the ImageNet mean was not subtracted", lambda x: x),
    ("the mean was added instead of subtracted", lambda x: x + IMAGENET_MEAN_RGB),
]


def judge_preprocess(obs, ctx, params):
    x = ctx.probe.astype(np.float64)
    expected = x - IMAGENET_MEAN_RGB
    out = obs["output"]
    if out.shape != expected.shape:
        return 0.0, (f"expected output shape {list(expected.shape)}, found {list(out.shape)}. "
                     "Hint: preprocessing works pixel by pixel and keeps the shape.")
    if np.allclose(out, expected, atol=params["tolerance"]):
        if obs["dtype"] != "float32":
            return 0.5, f"values are right but the dtype is {obs['dtype']}, expected float32"
        return 1.0, "matches x*255 - ImageNet mean (RGB) on probe images"
    for message, mistake in _PREPROCESS_MISTAKES:
        if np.allclose(out, mistake(x), atol=max(params["tolerance"], 1e-2)):
            return 0.0, f"expected x*255 - [123.68, 116.779, 103.939]: {message}"
    return 0.0, (f"expected x*255 - [123.68, 116.779, 103.939] per pixel; largest difference "
                 f"{np.max(np.abs(out - expected)):.4g}. Hint: convert_image_dtype gives 0..1.")


# ---------------------------------------------------------------- 3 layer shapes

def collect_layer_shapes(module, ctx, params):
    model = _build(module, ctx)
    shapes, params_found = {}, {}
    for name in LAYER_ORDER:
        try:
            layer = model.get_layer(name)
        except ValueError:
            shapes[name] = None
            continue
        shapes[name] = list(layer.output.shape)[1:]
        if name in CONV_LAYERS or name == "fc":
            params_found[name] = [list(np.shape(w)) for w in layer.get_weights()]
    return {"shapes": shapes, "params": params_found}


def judge_layer_shapes(obs, ctx, params):
    expected_params = {name: [list(ctx.weights[f"{name}_W"].shape), list(ctx.weights[f"{name}_b"].shape)]
                       for name in CONV_LAYERS}
    expected_params["fc"] = [[4096, 10], [10]]
    problems = []
    for name in LAYER_ORDER:
        got = obs["shapes"].get(name)
        if got is None:
            problems.append(f"no layer named {name}")
        elif tuple(got) != LAYER_SHAPES[name]:
            problems.append(f"{name} outputs {got}, expected {list(LAYER_SHAPES[name])}")
        elif name in expected_params and obs["params"].get(name) != expected_params[name]:
            problems.append(f"{name} has kernel/bias shapes {obs['params'].get(name)}, "
                            f"expected {expected_params[name]}")
    if not problems:
        return 1.0, "all 13 layers have the expected shapes"
    score = 1.0 - len(problems) / len(LAYER_ORDER)
    return max(score, 0.0), "; ".join(problems[:4]) + (" ..." if len(problems) > 4 else "") + \
        ". Hint: 3x3 convs with padding 'same', 2x2 max pools with stride 2."


# ---------------------------------------------------------------- 4 weights

def collect_weights(module, ctx, params):
    model = _build(module, ctx)
    arrays = {}
    for name, values in _conv_weights(model).items():
        if len(values) == 2:
            arrays[f"{name}_W"], arrays[f"{name}_b"] = (np.asarray(v) for v in values)
    return {"arrays": arrays}


def judge_weights(obs, ctx, params):
    wrong = []
    for name in CONV_LAYERS:
        for suffix in ("W", "b"):
            key = f"{name}_{suffix}"
            got = obs["arrays"].get(key)
            want = ctx.weights[key]
            if got is None or got.shape != want.shape or not np.array_equal(got, want):
                wrong.append(key)
    if not wrong:
        return 1.0, "every conv kernel and bias equals the weights file"
    return (14 - len(wrong)) / 14, (f"{', '.join(wrong[:5])}{' ...' if len(wrong) > 5 else ''} "
                                    "differ from the weights file. Hint: set them from "
                                    "weights['convX_Y_W'] and ['convX_Y_b'] after building the layer.")


# ---------------------------------------------------------------- 5 frozen

def collect_frozen(module, ctx, params):
    model = _build(module, ctx)
    trainable = [[v.path, list(v.shape)] for v in model.trainable_variables]
    before = {name: [digest(w) for w in ws] for name, ws in _conv_weights(model).items()}
    fc_before = [digest(w) for w in model.get_layer("fc").get_weights()]
    module.train(model, _fixed_batches(ctx), steps=params["steps"])
    after = {name: [digest(w) for w in ws] for name, ws in _conv_weights(model).items()}
    fc_after = [digest(w) for w in model.get_layer("fc").get_weights()]
    return {"trainable": trainable, "before": before, "after": after,
            "fc_before": fc_before, "fc_after": fc_after}


def judge_frozen(obs, ctx, params):
    trainable = obs["trainable"]
    count = sum(int(np.prod(shape)) for _, shape in trainable)
    only_fc = (count == FC_PARAMS and len(trainable) == 2
               and all("fc" in path for path, _ in trainable))
    changed = [name for name in CONV_LAYERS if obs["before"].get(name) != obs["after"].get(name)]
    return _fraction_and_messages([
        (0.4, only_fc, f"expected only fc's kernel and bias trainable ({FC_PARAMS} parameters), "
                       f"found {len(trainable)} variables with {count} parameters"
                       + ("" if only_fc else ". Hint: trainable=False on every conv layer")),
        (0.4, not changed, f"training changed {', '.join(changed)}: the convolutions must be frozen"),
        (0.2, obs["fc_before"] != obs["fc_after"], "training did not change fc: nothing was learned"),
    ])


# ---------------------------------------------------------------- 6 features

def collect_features(module, ctx, params):
    import keras

    model = _build(module, ctx)
    for name in CONV_LAYERS:  # the weights check grades these; here only the structure counts
        layer = model.get_layer(name)
        if [np.shape(w) for w in layer.get_weights()] == [ctx.weights[f"{name}_W"].shape,
                                                          ctx.weights[f"{name}_b"].shape]:
            layer.set_weights([ctx.weights[f"{name}_W"], ctx.weights[f"{name}_b"]])
    names = [n for n in LAYER_ORDER[1:11]]
    probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
    outputs = probe(ctx.probe[:2], training=False)
    arrays = {n: np.asarray(o) for n, o in zip(names, outputs)}
    pool3 = keras.Model(model.input, model.get_layer("pool3").output)
    arrays["pool3_all"] = np.asarray(pool3(ctx.probe, training=False))
    return {"arrays": arrays}


def reference_features(images: np.ndarray, weights: dict) -> dict[str, np.ndarray]:
    """The grader's own numpy computation of preprocess .. pool3 (every layer's output)."""
    x = images.astype(np.float32) - IMAGENET_MEAN_RGB
    out = {}
    for name in LAYER_ORDER[1:11]:
        if name.startswith("conv"):
            padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
            windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))
            # windows: [N, H, W, C, 3, 3] -> contract with the kernel [3, 3, C, O]
            kernel = weights[f"{name}_W"].transpose(2, 0, 1, 3)  # [C, 3, 3, O]
            x = np.tensordot(windows, kernel, axes=([3, 4, 5], [0, 1, 2])) + weights[f"{name}_b"]
            x = np.maximum(x, 0).astype(np.float32)
        else:
            n, h, w, c = x.shape
            x = x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
        out[name] = x
    return out


def judge_features(obs, ctx, params):
    found = obs["arrays"]
    expected = reference_features(ctx.probe, ctx.weights)
    tol = params["tolerance"]
    got_all = found.get("pool3_all")
    if got_all is not None and got_all.shape == expected["pool3"].shape \
            and _max_rel_diff(got_all, expected["pool3"]) <= tol:
        return 1.0, "pool3 matches the grader's own computation"
    first_two = reference_features(ctx.probe[:2], ctx.weights)
    for name in LAYER_ORDER[1:11]:
        got, want = found.get(name), first_two[name]
        if got is None or got.shape != want.shape:
            return 0.0, (f"{name} outputs shape {None if got is None else list(got.shape)}, "
                         f"expected {list(want.shape)}")
        if _max_rel_diff(got, want) > tol:
            return 0.0, (f"the network first departs from VGG16 at {name} (largest relative "
                         f"difference {_max_rel_diff(got, want):.3g}). Hint: check padding 'same', "
                         "the ReLU and the order of the layers up to there.")
    return 0.0, "pool3 differs from the grader's computation on some probe images"


# ---------------------------------------------------------------- 7 training and summaries

def collect_training(module, ctx, params):
    model = _build(module, ctx)
    batch = ctx.train_images[:256]
    before = _outputs(model, batch)
    log_dir = ctx.scratch / "training-logs"
    module.train(model, _fixed_batches(ctx), steps=params["steps"], log_dir=str(log_dir))
    return {"before": before, "after": _outputs(model, batch), "log_dir": str(log_dir)}


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    logits = logits.astype(np.float64)
    logits = logits - logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


def judge_training(obs, ctx, params):
    from .events import scalars

    labels = ctx.train_labels[:256]
    loss_before, loss_after = cross_entropy(obs["before"], labels), cross_entropy(obs["after"], labels)
    acc_before = float((obs["before"].argmax(1) == labels).mean())
    acc_after = float((obs["after"].argmax(1) == labels).mean())
    # Adam's first steps can overshoot the loss while accuracy already climbs: either counts.
    learned = loss_after < 0.95 * loss_before or acc_after >= max(acc_before + 0.2, 0.3)
    logged = scalars(Path(obs["log_dir"]))
    leaves = {tag.rsplit("/", 1)[-1] for tag in logged}
    missing = [tag for tag in ("loss", "accuracy") if tag not in leaves]
    return _fraction_and_messages([
        (0.5, learned,
         f"nothing was learned in {params['steps']} steps (loss {loss_before:.3f} -> "
         f"{loss_after:.3f}, accuracy {acc_before:.2f} -> {acc_after:.2f}). Hint: apply the "
         "gradients of the loss to the trainable variables"),
        (0.5, not missing, f"no TensorBoard scalar {' or '.join(repr(m) for m in missing)} under "
                           "log_dir. Hint: tf.summary.scalar inside a file writer's as_default()"),
    ])


# ---------------------------------------------------------------- 8 accuracy

def collect_accuracy(module, ctx, params):
    import keras

    keras.utils.set_random_seed(0)
    model = _build(module, ctx)
    if params["mode"] == "checkpoint":
        folder = ctx.submission_dir / params["checkpoint"]
        if not folder.is_dir():
            return {"missing": str(params["checkpoint"])}
        module.restore_checkpoint(model, str(folder))
    else:
        dataset = module.make_dataset(ctx.train_images, ctx.train_labels, batch_size=64, seed=0) \
            if hasattr(module, "make_dataset") else None
        try:
            next(iter(dataset))
        except Exception:  # a broken pipeline must not cost the accuracy item too
            dataset = _fixed_batches(ctx, batch=64)
        module.train(model, dataset, steps=params["steps"])
    images = ctx.heldout_images[:params["images"]]
    logits = np.concatenate([_outputs(model, images[i:i + 250]) for i in range(0, len(images), 250)])
    return {"logits": logits}


def judge_accuracy(obs, ctx, params):
    if "missing" in obs:
        return 0.0, f"expected a checkpoint folder {obs['missing']!r} beside the submission"
    logits = obs["logits"]
    labels = ctx.heldout_labels[:params["images"]]
    if logits.shape != (len(labels), 10):
        return 0.0, f"expected logits [{len(labels)}, 10], found {list(logits.shape)}"
    accuracy = float((logits.argmax(axis=1) == labels).mean())
    lower, upper = params["lower"], params["upper"]
    fraction = float(np.clip((accuracy - lower) / (upper - lower), 0.0, 1.0))
    how = f"after {params['steps']} steps" if params["mode"] == "train" else "from the checkpoint"
    message = f"accuracy {accuracy:.3f} on {len(logits)} unseen images {how}"
    if fraction < 1:
        message += f" (full points from {upper:.2f}, none at or below {lower:.2f})"
    return fraction, message


# ---------------------------------------------------------------- 9 checkpoint round-trip

def collect_checkpoint(module, ctx, params):
    import keras

    obs = {}
    probe = ctx.probe
    roundtrip = ctx.scratch / "ckpt-roundtrip"
    first = _build(module, ctx)
    module.train(first, _fixed_batches(ctx), steps=4, checkpoint_dir=str(roundtrip),
                 checkpoint_every=2, max_to_keep=1)
    obs["trained"] = _outputs(first, probe)
    obs["kept"] = len(list(roundtrip.glob("*.index")))
    fresh = _build(module, ctx)
    obs["restored_step"] = int(module.restore_checkpoint(fresh, str(roundtrip)))
    obs["restored"] = _outputs(fresh, probe)

    empty = ctx.scratch / "ckpt-empty"
    empty.mkdir(exist_ok=True)
    try:
        obs["empty_step"] = int(module.restore_checkpoint(_build(module, ctx), str(empty)))
    except Exception as exc:
        obs["empty_error"] = f"{type(exc).__name__}: {exc}"[:300]

    keras.utils.set_random_seed(0)
    straight = _build(module, ctx)
    module.train(straight, _fixed_batches(ctx), steps=6)
    obs["straight"] = _outputs(straight, probe)
    resume_dir = ctx.scratch / "ckpt-resume"
    module.train(_build(module, ctx), _fixed_batches(ctx), steps=3,
                 checkpoint_dir=str(resume_dir), checkpoint_every=3)
    pulled = [0]
    resumed = _build(module, ctx)
    history = module.train(resumed, _fixed_batches(ctx, start=3, counter=pulled), steps=6,
                           checkpoint_dir=str(resume_dir), checkpoint_every=3)
    obs["resumed"] = _outputs(resumed, probe)
    obs["resume_pulled"] = pulled[0]
    final = history.get("final_step") if isinstance(history, dict) else None
    obs["resume_final_step"] = int(final) if final is not None else -1
    return obs


def judge_checkpoint(obs, ctx, params):
    same = obs["trained"].shape == obs["restored"].shape and \
        np.allclose(obs["trained"], obs["restored"], rtol=1e-5, atol=1e-5)
    # Training 3 more steps pulls 3 batches; prefetching may pull a couple more, never 6.
    continued = 3 <= obs["resume_pulled"] <= 5 and obs["resume_final_step"] in (6, -1)
    optimizer_kept = np.allclose(obs["resumed"], obs["straight"], rtol=1e-3, atol=1e-3)
    empty_ok = obs.get("empty_step") == 0
    return _fraction_and_messages([
        (0.3, same and obs["restored_step"] == 4,
         f"restoring into a fresh model gave {'the same' if same else 'different'} outputs and "
         f"step {obs['restored_step']} (expected identical outputs and step 4)"),
        (0.15, obs["kept"] == 1, f"with max_to_keep=1, {obs['kept']} checkpoints were left "
                                 "(expected 1). Hint: tf.train.CheckpointManager(max_to_keep=...)"),
        (0.25, continued, f"resuming at step 3 towards step 6 trained {obs['resume_pulled']} "
                          "batches (expected 3): training must restore the step and continue"),
        (0.2, optimizer_kept, "3 steps + resume + 3 steps did not match 6 straight steps: save "
                              "and restore the optimizer (its moments) with the model"),
        (0.1, empty_ok, "restore_checkpoint on an empty folder should return 0, "
                        + (f"it raised {obs['empty_error']}" if "empty_error" in obs
                           else f"it returned {obs.get('empty_step')}")),
    ])


# ---------------------------------------------------------------- 10 tf.data pipeline

def _dataset_kinds(ds) -> list[str]:
    kinds, seen = [], 0
    while ds is not None and seen < 50:
        kinds.append(type(ds).__name__)
        ds = getattr(ds, "_input_dataset", None)
        seen += 1
    return kinds


def collect_pipeline(module, ctx, params):
    import tensorflow as tf

    size, batch = 50, params["batch_size"]
    images = np.zeros((size, 32, 32, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(size)  # each image carries its index too
    labels = np.arange(size, dtype=np.int64)
    once = module.make_dataset(images, labels, batch_size=batch, shuffle=True, repeat=False, seed=3)
    spec = once.element_spec
    epochs = [[np.asarray(l).tolist() for _, l in once] for _ in range(2)]
    pairs_ok = all(int(np.asarray(x)[i, 0, 0, 0]) == int(np.asarray(l)[i])
                   for x, l in once.take(1) for i in range(len(np.asarray(l))))
    forever = module.make_dataset(images, labels, batch_size=batch, shuffle=False, repeat=True)
    cardinality = int(forever.cardinality())
    taken = sum(len(np.asarray(l)) for _, l in forever.take(3 * size // batch + 3))
    return {"spec": [[str(s.dtype.name), s.shape.as_list()] for s in spec],
            "epochs": epochs, "pairs_ok": bool(pairs_ok),
            "infinite": cardinality == int(tf.data.INFINITE_CARDINALITY), "taken": taken,
            "kinds": _dataset_kinds(forever) + _dataset_kinds(once)}


def judge_pipeline(obs, ctx, params):
    batch = params["batch_size"]
    (image_dtype, image_shape), (label_dtype, label_shape) = obs["spec"]
    spec_ok = (image_dtype == "uint8" and image_shape[1:] == [32, 32, 3]
               and label_dtype.startswith(("int", "uint")) and len(label_shape) == 1)
    first, second = obs["epochs"]
    sizes = [len(b) for b in first]
    batches_ok = bool(sizes) and all(s == batch for s in sizes[:-1]) and 0 < sizes[-1] <= batch
    flat1, flat2 = sum(first, []), sum(second, [])
    covered = sorted(flat1) == list(range(50)) and sorted(flat2) == list(range(50))
    reshuffled = covered and flat1 != flat2 and flat1 != list(range(50))
    repeats = obs["infinite"] and obs["taken"] > 100
    prefetched = any("Prefetch" in kind for kind in obs["kinds"])
    return _fraction_and_messages([
        (0.2, spec_ok and obs["pairs_ok"], f"element spec {obs['spec']}: expected (uint8 [B, 32, "
                                           "32, 3], int [B]) with images and labels kept together"),
        (0.15, batches_ok, f"batch sizes {sizes[:6]}: expected {batch} (the last may be smaller)"),
        (0.2, covered, "one epoch must hold every example exactly once"),
        (0.15, reshuffled, "the order must be shuffled and differ between epochs. Hint: shuffle "
                           "before batch, with reshuffle_each_iteration"),
        (0.15, repeats, "with repeat=True the dataset must go on for ever. Hint: .repeat()"),
        (0.15, prefetched, "no prefetch in the pipeline. Hint: end with .prefetch(tf.data.AUTOTUNE)"),
    ])


CHECKS = {name: (globals()[f"collect_{name}"], globals()[f"judge_{name}"])
          for name in ("interface", "preprocess", "layer_shapes", "weights", "frozen", "features",
                       "training", "accuracy", "checkpoint", "pipeline")}
