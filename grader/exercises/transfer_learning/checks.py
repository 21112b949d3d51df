"""The exercise's checks. Each check is two halves:

- `collect_<check>(module, ctx, params)` runs in the worker process, calls the student's
  code and returns plain observations (numbers, strings, numpy arrays);
- `judge_<check>(obs, ctx, params)` runs in the grading process, never touches student
  code or TensorFlow, and turns observations into (fraction of points, message).

Labels of held-out images exist only on the judging side.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import itertools
import math
import re
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ... import checkpoints, graphs
from ...exercise import Calibration, Check, Registry, at_least_one, positive, rules
from . import network

IMAGENET_MEAN_RGB = np.array(network.IMAGENET_MEAN_RGB, np.float32)
CONV_LAYERS = network.CONV_LAYERS
LAYER_ORDER = network.LAYER_ORDER
LAYER_SHAPES = network.LAYER_SHAPES
FEATURE_LAYERS = network.FEATURE_LAYERS
FC_PARAMS = network.FC_PARAMS
FC = network.FC.name
SIGNATURES = network.CONTRACT
# The grader's own fc weights for comparing a model's logits with its own computation.
FC_PROBE_SEED = 5
CHECKPOINT_BUILD_SEED = 6


@dataclass
class WorkerContext:
    """What the student-facing half may see: no held-out labels. `train_labels`, `probe`
    and `heldout_images` are the running item's (the labels in the item's own names of
    the classes; held-out images empty for an item that is not given them)."""
    weights: dict
    train_images: np.ndarray
    train_labels: np.ndarray
    probe: np.ndarray
    heldout_images: np.ndarray
    scratch: Path
    submission_dir: Path
    runs: dict = field(default_factory=dict)
    """observations one item leaves for another, within one worker process (Check.shares)"""

    def given(self, arrays: dict) -> None:
        """The running item's questions (inputs.WorkerInputs.asked)."""
        self.train_labels = arrays["train_labels"]
        self.probe = arrays["probe"]
        self.heldout_images = arrays.get("heldout_images", self.train_images[:0])


def worker_context(arrays: dict, scratch: Path, submission_dir: Path) -> WorkerContext:
    """What the collect halves see, from inputs.WorkerInputs.to_bytes's arrays: the
    weights and training images; each item's training labels, probe images (and held-out
    images, for the items that are given them) come when it starts (`given`)."""
    weights = {k[2:]: v for k, v in arrays.items() if k.startswith("w_")}
    nothing = arrays["train_images"][:0]
    return WorkerContext(weights, arrays["train_images"], np.zeros(0, np.int64), nothing, nothing,
                         scratch, submission_dir)


@dataclass
class JudgeContext:
    """What the judge halves see: they are pure functions of the observations and these,
    so judging can happen on another machine than collecting (`grader batch --scheduler`)."""
    weights: dict
    train_labels: np.ndarray
    probe: np.ndarray
    heldout_labels: np.ndarray
    train_images: np.ndarray | None = None
    heldout_images: np.ndarray | None = None
    names: np.ndarray | None = None
    """the item's renaming of the classes (class c is called names[c]), for behaviour
    kept the same whatever the batch's private seed"""


# ---------------------------------------------------------------- worker-side helpers
# Models are reached only through the contract: model(images), model.get_layer(name) and
# each layer's own variables, so functional, Sequential and subclassed models, Keras
# layers and custom layers holding plain tf.Variables are all graded alike.

def _build(module, ctx: WorkerContext):
    return module.build_model(ctx.weights, num_classes=network.NUM_CLASSES)


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

    spec = (tf.TensorSpec([batch, *network.IMAGE_SHAPE], tf.uint8), tf.TensorSpec([batch], tf.int64))
    return tf.data.Dataset.from_generator(gen, output_signature=spec).with_options(quick_teardown())


def quick_teardown():
    """tf.data options for the short runs of grading: autotuning off. With it on, deleting
    an iterator (at the end of every train() call) can wait seconds for the autotuner's
    thread; the items' runs are too short to gain anything from tuning."""
    import tensorflow as tf

    untuned = tf.data.Options()
    untuned.autotune.enabled = False
    return untuned


def find_layer(model, name: str):
    """model.get_layer(name), also looking inside nested models; None when absent."""
    try:
        return model.get_layer(name)
    except (ValueError, AttributeError, KeyError, TypeError):
        pass
    queue, seen = list(getattr(model, "layers", []) or []), set()
    while queue:
        layer = queue.pop(0)
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if getattr(layer, "name", None) == name:
            return layer
        queue.extend(getattr(layer, "layers", []) or [])
    return None


def layer_variables(layer) -> list:
    """A layer's variables: its Keras weights, else the tf.Variables it holds as attributes
    (what a layer written with tf.nn.conv2d and tf.Variable has)."""
    found = list(getattr(layer, "weights", None) or [])
    if found:
        return found
    import tensorflow as tf

    out, seen = [], set()

    def walk(obj, depth):
        try:
            children = obj._trackable_children()
        except Exception:
            return
        for child in children.values():
            if isinstance(child, tf.Variable):
                if id(child) not in seen:
                    seen.add(id(child))
                    out.append(child)
            elif depth < 2 and not isinstance(child, (str, int, float)):
                walk(child, depth + 1)

    walk(layer, 0)
    return out


def kernel_and_bias(layer):
    """(kernel variable, bias variable) of a conv or dense layer, or None."""
    if layer is None:
        return None
    variables = layer_variables(layer)
    kernels = [v for v in variables if len(v.shape) >= 2]
    biases = [v for v in variables if len(v.shape) == 1]
    if len(kernels) == 1 and len(biases) == 1:
        return kernels[0], biases[0]
    return None


def _array(variable) -> np.ndarray:
    return np.array(variable.numpy() if hasattr(variable, "numpy") else variable)


def _conv_weights(model) -> dict:
    """{conv layer: [kernel, bias] arrays} for the conv layers that have them."""
    found = {}
    for name in CONV_LAYERS:
        pair = kernel_and_bias(find_layer(model, name))
        if pair is not None:
            found[name] = [_array(v) for v in pair]
    return found


def _fc_variables(model) -> list:
    layer = find_layer(model, FC)
    if layer is None:
        raise LookupError(f"the model has no layer named {FC!r} (model.get_layer({FC!r}) failed)")
    variables = layer_variables(layer)
    if not variables:
        raise LookupError(f"the layer {FC!r} holds no variables")
    return variables


def start_fc(model) -> None:
    """Set fc to zeros: every training item starts from the same head, whatever the
    submission's initialiser, so runs can be compared and bounds do not depend on it."""
    for variable in _fc_variables(model):
        variable.assign(np.zeros(tuple(variable.shape), np.float32))


def probe_fc_arrays(shapes) -> list[np.ndarray]:
    """The grader's fixed random fc weights of the given shapes (both sides make them)."""
    rng = np.random.default_rng(FC_PROBE_SEED)
    return [rng.normal(0.0, 1e-3, size=tuple(shape)).astype(np.float32) for shape in shapes]


# Below this many images an eager call is quicker than tracing the model's forward pass.
TRACE_FROM = 200
_forward = weakref.WeakKeyDictionary()


def _traced_forward(model, images):
    """model(x, training=False) as one tf.function per model, for any batch size: on this
    CPU a traced forward pass runs about a third faster than eager calls."""
    import tensorflow as tf

    try:
        return _forward[model]
    except (KeyError, TypeError):
        pass
    spec = tf.TensorSpec([None, *images.shape[1:]], tf.as_dtype(images.dtype))
    try:
        # The function reaches its model through a weak reference, or the cache would keep
        # every model it has seen alive.
        ref = weakref.ref(model)
        forward = tf.function(lambda x: ref()(x, training=False), input_signature=[spec])
        _forward[model] = forward
    except TypeError:  # a model that cannot be weakly referenced or hashed: no cache
        forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    return forward


def _outputs(model, images) -> np.ndarray:
    """The model's logits for `images`, 250 at a time. Many images go through a traced
    forward pass; a model whose call cannot be traced is called eagerly, as few images are."""
    chunks = range(0, len(images), 250)
    if len(images) >= TRACE_FROM:
        try:
            forward = _traced_forward(model, images)
            return np.concatenate([np.asarray(forward(images[i:i + 250]), dtype=np.float32)
                                   for i in chunks])
        except Exception:  # noqa: BLE001 - the eager calls below say what is wrong, if anything
            with contextlib.suppress(KeyError, TypeError):
                del _forward[model]
    return np.concatenate([np.asarray(model(images[i:i + 250], training=False), dtype=np.float32)
                           for i in chunks])


def _chain(model, images) -> dict:
    """Each named layer called on the previous named layer's output, in contract order:
    {name: output array, or None when the layer is absent, or an error string}."""
    import tensorflow as tf

    x, out = tf.constant(images), {}
    for name in LAYER_ORDER:
        layer = find_layer(model, name)
        if layer is None:
            out[name] = None
            continue
        try:
            x = layer(x)
            out[name] = np.asarray(x, dtype=np.float32)
        except Exception as exc:
            out[name] = f"{type(exc).__name__}: {exc}"[:200]
            break
    return out


def _fraction_and_messages(parts: list[tuple[float, bool, str]]) -> tuple[float, str]:
    """Sum the weights of the passed parts; the message lists what failed."""
    score = sum(weight for weight, ok, _ in parts if ok)
    failed = [message for _, ok, message in parts if not ok]
    return score, "; ".join(failed) if failed else "all good"


def _max_rel_diff(found: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(found - expected)) / max(1.0, float(np.max(np.abs(expected)))))


# ---------------------------------------------------------------- bounds on what judges read
# Every observation comes from the worker's process, which is the submission's, so any of
# it may be crafted. Each judge checks the types, dimensions and sizes of what it reads
# before any work that grows with them: what an observation can cost the grading process
# is bounded here, not only by the channel's bounds on a frame. What no run of a collect
# half sends is Malformed, and the item scores 0 with the reason (`_judged`).

MAX_OUTPUTS = 4096
"""logits per image a judge reads at most (the table's fc has 10; a wrong head, a few hundred)"""
MAX_HEAD_LAYERS = 16
"""dense layers from flatten to fc, fc included, that a set of logits may report"""
MAX_HEAD_VALUES = 1 << 26
"""values of the head's kernels and biases together (a hidden layer of 4096 units has 16.8 M)"""
MAX_CHAIN_LAYERS = 40
"""layers of the chain from conv1_1 to the logits that a set of logits may report (the
table's has 13; a few dropouts, activations or hidden dense layers more are honest)"""
MAX_ENTRIES = 1_000
"""entries of a list of names, shapes or variables (an honest model has a few dozen)"""
MAX_VARIABLES = 16
"""variables of one layer"""
MAX_TEXT = 200
"""characters of the worker's own text (an error, a dtype's name) a message quotes"""


class Malformed(ValueError):
    """An observation no run of the collect half sends: the item scores 0 with this reason."""


def _require(ok, reason: str) -> None:
    if not ok:
        raise Malformed(reason)


def _judged(judge):
    """The judge, scoring 0 with the reason an observation that is not a mapping, or that
    its checks find Malformed: as every item whose observations cannot be judged."""
    @functools.wraps(judge)
    def checked(obs, ctx, params):
        try:
            _require(isinstance(obs, dict), "the observation is not a mapping")
            return judge(obs, ctx, params)
        except Malformed as exc:
            return 0.0, f"the observations were malformed: {exc}"
    return checked


def _text(value, what: str) -> str:
    """The worker's text, cut to MAX_TEXT characters for a message."""
    _require(isinstance(value, str), f"{what} is not text")
    return value if len(value) <= MAX_TEXT else value[:MAX_TEXT] + "..."


def _integer(value, what: str) -> int:
    _require(isinstance(value, int) and not isinstance(value, bool) and -2 ** 63 <= value < 2 ** 63,
             f"{what} is not an integer")
    return value


def _entries(value, what: str, most: int = MAX_ENTRIES) -> list:
    _require(isinstance(value, list), f"{what} is not a list")
    _require(len(value) <= most, f"{what} holds {len(value)} entries, more than {most}")
    return value


def _mapping(value, what: str) -> dict:
    _require(isinstance(value, dict), f"{what} is not a mapping")
    return value


def _shape(value, what: str, unknown: bool = True) -> list:
    """A shape as a list of at most 8 sizes (None for an unknown one, when `unknown`)."""
    _entries(value, what, 8)
    _require(all((isinstance(d, int) and not isinstance(d, bool) and 0 <= d < 2 ** 40)
                 or (unknown and d is None) for d in value), f"{what} is not a shape")
    return value


def _numbers(value, what: str, ndim: int | None = None) -> np.ndarray:
    """An array of numbers (bool, integer or floating point), of `ndim` dimensions if given."""
    _require(isinstance(value, np.ndarray) and value.dtype.kind in "biuf",
             f"{what} is not an array of numbers")
    _require(ndim is None or value.ndim == ndim,
             f"{what} has {value.ndim} dimensions, expected {ndim}")
    return value


def _array_list(value, what: str, most: int = MAX_VARIABLES) -> list:
    """A list of at most `most` arrays of numbers (a layer's variables)."""
    for array in _entries(value, what, most):
        _numbers(array, f"a variable of {what}")
    return value


def _permutation(order, n: int) -> np.ndarray | None:
    """A flatten layer's answer to the index probe as indices, when it is a permutation of
    range(n); else None. Its size is checked before anything that grows with it, so a
    flatten answering with 60 million indices costs nothing."""
    if not isinstance(order, np.ndarray) or order.dtype.kind not in "biuf" or order.shape != (n,):
        return None
    indices = order.astype(np.int64)
    if not np.array_equal(indices, order) or not np.array_equal(np.sort(indices), np.arange(n)):
        return None
    return indices


# ---------------------------------------------------------------- logits the grading side explains
# The worker's process is the submission's: whatever it reports about itself can be forged.
# So logits earn points only when the grading process can recompute them from what the
# worker reports at the same moment: the input of conv1_1, the conv weights, and the chain
# of standard layers the model calls (the table's seven convolutions with or without ReLU,
# 2x2 max or average pools, flatten, dense layers), else the table's chain with its head
# (fc, and any dense layers between flatten and fc). A model that classifies by any other
# means has logits nothing explains; a model with trained convolutions, a wrong
# preprocessing or a structural mistake (no ReLU, average pools, two convolutions swapped)
# is still explained (with its own weights, inputs and layers), so each such mistake costs
# only its own item (preprocess, weights or features).

def _inputs_of(model, module, images) -> np.ndarray | None:
    """What the model's convolutions see: its preprocess layer's output on `images`, else
    the module's preprocess()."""
    import tensorflow as tf

    layer = find_layer(model, "preprocess")
    for fn in ([layer] if layer is not None else []) + [getattr(module, "preprocess", None)]:
        if fn is None:
            continue
        try:
            return np.concatenate([np.asarray(fn(tf.constant(images[i:i + 250])), np.float32)
                                   for i in range(0, len(images), 250)])
        except Exception:  # noqa: BLE001 - then nothing explains the logits, said when judged
            continue
    return None


def _flatten_order(model) -> np.ndarray | None:
    """Where the model's flatten puts each of pool3's values (None: no flatten layer, or
    one that cannot take pool3's shape)."""
    import tensorflow as tf

    flatten = find_layer(model, "flatten")
    if flatten is None:
        return None
    index = np.arange(int(np.prod(LAYER_SHAPES["pool3"])), dtype=np.float32)
    try:
        order = flatten(tf.constant(index.reshape((1, *LAYER_SHAPES["pool3"]))))
        return np.asarray(order, dtype=np.float64).reshape(-1)
    except Exception:  # noqa: BLE001
        return None


_HEAD_SKIPPED = {"Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise", "SpatialDropout1D",
                 "Flatten", "Reshape", "InputLayer"}


def _activation_name(layer) -> str:
    activation = getattr(layer, "activation", None)
    return str(getattr(activation, "__name__", None) or "linear") if activation else "linear"


def _head(model) -> list:
    """[[kernel, bias, activation], ...]: the dense layers a model applies after flatten,
    ending with fc. Layers in between are read from model.layers (functional, Sequential and
    subclassed models list them in order); anything but dense layers and inactive ones there
    leaves fc alone, which then explains nothing if the model does more."""
    fc = find_layer(model, FC)
    pair = kernel_and_bias(fc)
    if pair is None:
        return []
    head = [[*(_array(v) for v in pair), _activation_name(fc)]]
    layers = list(getattr(model, "layers", []) or [])
    flatten = find_layer(model, "flatten")
    where = {id(layer): k for k, layer in enumerate(layers)}
    if flatten is None or id(flatten) not in where or id(fc) not in where:
        return head
    between = []
    for layer in layers[where[id(flatten)] + 1:where[id(fc)]]:
        if type(layer).__name__ in _HEAD_SKIPPED:
            continue
        inner = kernel_and_bias(layer)
        if inner is None:
            return head
        between.append([*(_array(v) for v in inner), _activation_name(layer)])
    return between + head


def _called_layers(model, images) -> list:
    """The Keras layers a forward pass on `images` calls, in the order it calls them, less
    those that only call others (the model itself, nested models, blocks): a subclassed
    model's call() order, which model.layers (its attributes' order) does not tell."""
    import keras

    base, calls, depth = keras.layers.Layer, [], [0]
    original = base.__call__

    def recording(self, *args, **kwargs):
        calls.append((depth[0], self))
        depth[0] += 1
        try:
            return original(self, *args, **kwargs)
        finally:
            depth[0] -= 1

    base.__call__ = recording
    try:
        model(images, training=False)
    finally:
        base.__call__ = original
    return [layer for k, (d, layer) in enumerate(calls) if k + 1 == len(calls) or calls[k + 1][0] <= d]


def _listed_layers(model) -> list:
    """model.layers in order, nested models opened: when a forward pass records no calls
    (a call() traced once by tf.function is not run again)."""
    out = []
    for layer in getattr(model, "layers", []) or []:
        inner = getattr(layer, "layers", None)
        out.extend(_listed_layers(layer) if inner else [layer])
    return out


_CHAIN_SKIPPED = {"Dropout", "AlphaDropout", "GaussianDropout", "GaussianNoise", "SpatialDropout2D",
                  "InputLayer"}


def _chain_entry(layer):
    """One standard layer as plain data (see _chain_plan), else None."""
    import keras

    L, kind = keras.layers, type(layer)
    channels_last = getattr(layer, "data_format", "channels_last") == "channels_last"
    if kind is L.Conv2D:
        if not channels_last or tuple(layer.dilation_rate) != (1, 1) or layer.groups != 1 \
                or not layer.use_bias or layer.name not in CONV_LAYERS:
            return None
        return {"kind": "conv", "name": layer.name, "activation": _activation_name(layer),
                "size": list(layer.kernel_size), "strides": list(layer.strides),
                "padding": str(layer.padding)}
    if kind in (L.MaxPooling2D, L.AveragePooling2D):
        if not channels_last:
            return None
        return {"kind": "pool", "name": layer.name, "op": "max" if kind is L.MaxPooling2D else "avg",
                "size": list(layer.pool_size), "strides": list(layer.strides or layer.pool_size),
                "padding": str(layer.padding)}
    if kind is L.Flatten:
        return {"kind": "flatten", "name": layer.name} if channels_last else None
    if kind is L.Dense:
        kernel = _array(layer.kernel)
        bias = _array(layer.bias) if layer.bias is not None else np.zeros(kernel.shape[-1], np.float32)
        return {"kind": "dense", "name": layer.name, "kernel": kernel, "bias": bias,
                "activation": _activation_name(layer)}
    if kind is L.Activation:
        return {"kind": "activation", "name": layer.name, "activation": _activation_name(layer)}
    if kind is L.ReLU:
        plain = layer.max_value is None and not layer.negative_slope and not layer.threshold
        return {"kind": "activation", "name": layer.name, "activation": "relu"} if plain else None
    return None


_CALL_ORDER: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
"""each model's layers in the order a forward pass calls them, read once per model (its
weights are read at every witness; the order a model calls its layers does not change)"""


def _layer_chain(model, images) -> list | None:
    """The layers the model applies from conv1_1's input to its logits, as plain data:
    the order of a forward pass, else of model.layers; None when one of them is no standard
    layer (the grading side then explains the logits by the table's chain)."""
    try:
        layers = _CALL_ORDER.get(model)
    except TypeError:  # a model that cannot be weakly referenced: read each time
        layers = None
    if layers is None:
        try:
            layers = _called_layers(model, images[:2]) or _listed_layers(model)
        except Exception:  # noqa: BLE001 - the table's chain then explains the logits, or nothing
            return None
        with contextlib.suppress(TypeError):
            _CALL_ORDER[model] = layers
    chain = []
    for layer in layers:
        if type(layer).__name__ in _CHAIN_SKIPPED or (
                not chain and getattr(layer, "name", None) == "preprocess"):
            continue
        try:
            entry = _chain_entry(layer)
        except Exception:  # noqa: BLE001
            entry = None
        if entry is None or len(chain) >= MAX_CHAIN_LAYERS:
            return None
        chain.append(entry)
    return chain or None


def logit_witness(model, module, images) -> dict:
    """The model's logits on `images` and what the grading side needs to recompute them,
    all read at the same moment: its chain of layers as the model reports it (`chain`),
    and the table's parts by name (`convs`, `head`, `flatten_order`) for models whose
    layers are not all standard ones."""
    logits = _outputs(model, images)
    return {"logits": logits, "inputs": _inputs_of(model, module, images),
            "convs": _conv_weights(model), "head": _head(model),
            "flatten_order": _flatten_order(model), "chain": _layer_chain(model, images)}


TABLE_FRONT = tuple(("conv", name, "relu") if name in CONV_LAYERS else ("pool", "max")
                    for name in FEATURE_LAYERS)
"""conv1_1 .. pool3 as the table has them: steps ("conv", name, activation), ("pool", op)
and ("relu",), what _front computes"""


def _front(inputs: np.ndarray, convs: dict, steps=TABLE_FRONT) -> list[np.ndarray]:
    """Each step's output on already preprocessed inputs, with the given conv weights
    ({name: [kernel, bias]}): each 3x3 convolution (stride 1, padding 'same') as one matrix
    product over the 3x3 neighbourhoods, each pool 2x2 with stride 2. ValueError when a
    kernel does not take the channels it is given."""
    x = inputs.astype(np.float32)
    out = []
    for step in steps:
        n, h, w, c = x.shape
        if step[0] == "conv":
            kernel, bias = convs[step[1]]
            if kernel.shape[:3] != (3, 3, c):
                raise ValueError(f"{step[1]}'s kernel {list(kernel.shape)} on {c} channels")
            padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
            columns = np.empty((n, h, w, 3, 3, c), np.float32)
            for dy in range(3):
                for dx in range(3):
                    columns[:, :, :, dy, dx, :] = padded[:, dy:dy + h, dx:dx + w, :]
            x = columns.reshape(n * h * w, 9 * c) @ kernel.reshape(9 * c, -1).astype(np.float32)
            x = x.reshape(n, h, w, -1) + bias.astype(np.float32)
            if step[2] == "relu":
                x = np.maximum(x, 0)
        elif step[0] == "pool":
            if h < 2 or w < 2:
                raise ValueError(f"a 2x2 pool on {h}x{w} values")
            x = x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
            x = x.max(axis=(2, 4)) if step[1] == "max" else x.mean(axis=(2, 4), dtype=np.float32)
        else:
            x = np.maximum(x, 0)
        out.append(x)
    return out


def vgg_front(inputs: np.ndarray, convs: dict) -> dict[str, np.ndarray]:
    """conv1_1 .. pool3 of the table on already preprocessed inputs, with the given conv
    weights ({name: [kernel, bias]})."""
    return dict(zip(FEATURE_LAYERS, _front(inputs, convs)))


EXPLAINED_ROWS = 12
"""Images per set of logits recomputed on the grading side, chosen there at random after
the logits arrived: logits forged on a fraction f of the images pass with odds (1-f)^12."""
EXPLAIN_TOLERANCE = 1e-3
"""Allowed difference, relative to the sum of the magnitudes of the terms of each output"""
_front_cache: dict = {}
_front_lock = threading.Lock()


def _cached_front(inputs: np.ndarray, convs: dict, steps=TABLE_FRONT) -> list[np.ndarray]:
    """_front, kept for the next set of logits of the same inputs, weights and steps (the
    runs of one item share them when only fc trained)."""
    import hashlib

    digest = hashlib.sha256(repr(steps).encode())
    digest.update(np.ascontiguousarray(inputs).tobytes())
    used = {step[1] for step in steps if step[0] == "conv"}
    for name in CONV_LAYERS:
        for array in convs[name] if name in used else ():
            digest.update(np.ascontiguousarray(array).tobytes())
    key = digest.hexdigest()
    found = _front_cache.get(key)
    if found is None:
        found = _front(inputs, convs, steps)
        # A judge past the engine's time limit may still run in its thread: the cache is
        # changed only under the lock.
        with _front_lock:
            while len(_front_cache) >= 4:
                _front_cache.pop(next(iter(_front_cache)))
            _front_cache[key] = found
    return found


def _colour_transform(images: np.ndarray, inputs: np.ndarray) -> np.ndarray | None:
    """`images` under the colour transform that `inputs` are of every pixel of them (an
    affine map of the three channels: scaling, mean subtraction, channel order), fitted
    over all the images; None when `inputs` are no such transform. Logits are recomputed
    from these, never from the reported inputs: the twelve numbers of one map fitted over
    every image carry nothing about any one image, whereas whatever fits in the residual's
    tolerance (which grows with the values) would reach the recomputation."""
    x = images.reshape(-1, 3).astype(np.float64)
    y = inputs.reshape(-1, 3).astype(np.float64)
    if not np.all(np.isfinite(y)):
        return None
    design = np.hstack([x, np.ones((len(x), 1))])
    # the normal equations (4x4): a tenth of the time of a least-squares solve over every
    # pixel, and exact enough for pixel values; lstsq there copes with single-colour images
    solution, *_ = np.linalg.lstsq(design.T @ design, design.T @ y, rcond=None)
    fitted = design @ solution
    if float(np.max(np.abs(fitted - y), initial=0.0)) > 1e-3 * (1.0 + float(np.max(np.abs(y), initial=0.0))):
        return None
    return fitted.reshape(images.shape)


def _apply_head(x: np.ndarray, head: list) -> tuple[np.ndarray, np.ndarray]:
    """(output, magnitude bound of each output's terms) of the dense layers on x."""
    bound = np.abs(x)
    for kernel, bias, activation in head:
        kernel, bias = np.asarray(kernel, np.float64), np.asarray(bias, np.float64).reshape(-1)
        if kernel.ndim != 2:
            raise ValueError(f"a dense kernel of shape {list(kernel.shape)}")
        if kernel.shape[0] != x.shape[1] and kernel.shape[1] == x.shape[1]:
            kernel = kernel.T  # kept as [outputs, inputs]
        if kernel.shape[0] != x.shape[1] or bias.shape != (kernel.shape[1],):
            raise ValueError(f"a dense layer of shape {list(kernel.shape)} on {x.shape[1]} values")
        bound = bound @ np.abs(kernel) + np.abs(bias)
        x = x @ kernel + bias
        if activation == "relu":
            x = np.maximum(x, 0)
        elif activation == "softmax":
            x = np.exp(x - x.max(axis=1, keepdims=True))
            x = x / x.sum(axis=1, keepdims=True)
            bound = np.ones_like(x)
        elif activation != "linear":
            raise ValueError(f"a dense layer with activation {activation!r}")
    return x, bound


def random_rows(n: int) -> np.ndarray:
    """EXPLAINED_ROWS of n images, drawn from fresh entropy (nothing in the worker can
    know them), in order."""
    import secrets

    rng = np.random.default_rng(secrets.randbits(64))
    return np.sort(rng.choice(n, size=min(EXPLAINED_ROWS, n), replace=False))


def _witness_parts(witness: dict) -> tuple:
    """(inputs, convs, head, chain) of a set of logits, each checked against what
    logit_witness sends (Malformed otherwise): the head is at most MAX_HEAD_LAYERS layers and
    MAX_HEAD_VALUES values, the chain at most MAX_CHAIN_LAYERS layers of known kinds whose
    dense layers hold at most MAX_HEAD_VALUES values, so recomputing either is bounded
    whatever the worker reports."""
    inputs, convs, head = witness.get("inputs"), witness.get("convs"), witness.get("head")
    if inputs is not None:
        _numbers(inputs, "the preprocess layer's output")
    convs = _mapping({} if convs is None else convs, "the convolutions")
    for name in CONV_LAYERS:
        if name in convs:
            _array_list(convs[name], name)
    head = _entries([] if head is None else head, "the head (the dense layers up to fc)",
                    MAX_HEAD_LAYERS)
    values = 0
    for layer in head:
        _require(isinstance(layer, list) and len(layer) == 3,
                 "a layer of the head is not [kernel, bias, activation]")
        kernel, bias = _numbers(layer[0], "a kernel of the head"), _numbers(layer[1], "a bias of the head")
        _require(isinstance(layer[2], str) and len(layer[2]) <= MAX_TEXT, "an activation that is no name")
        values += kernel.size + bias.size
    _require(values <= MAX_HEAD_VALUES,
             f"a head of {values} values (at most {MAX_HEAD_VALUES} are recomputed)")
    order = witness.get("flatten_order")
    if order is not None:
        _numbers(order, "the flatten layer's order", ndim=1)
    return inputs, convs, head, _reported_chain(witness.get("chain"))


_CHAIN_KINDS = {"conv", "pool", "flatten", "dense", "activation"}


def _reported_chain(chain) -> list | None:
    """A witness's chain of layers (_layer_chain), checked on its types and sizes."""
    if chain is None:
        return None
    _entries(chain, "the model's chain of layers", MAX_CHAIN_LAYERS)
    values = 0
    for entry in chain:
        _mapping(entry, "a layer of the chain")
        _require(entry.get("kind") in _CHAIN_KINDS, "a layer of the chain is of no known kind")
        for key in ("name", "activation", "op", "padding"):
            if key in entry:
                _require(isinstance(entry[key], str) and len(entry[key]) <= MAX_TEXT,
                         f"a layer's {key} is no name")
        for key in ("size", "strides"):
            if key in entry:
                _shape(entry[key], f"a layer's {key}", False)
        if entry["kind"] == "dense":
            _require(isinstance(entry.get("activation"), str), "a dense layer of the chain has no activation")
            values += _numbers(entry.get("kernel"), "a dense kernel of the chain", 2).size \
                + _numbers(entry.get("bias"), "a dense bias of the chain", 1).size
    _require(values <= MAX_HEAD_VALUES,
             f"dense layers of {values} values (at most {MAX_HEAD_VALUES} are recomputed)")
    return chain


MAX_FRONT_COST = 2
"""multiply-adds of a reported chain's convolutions, in multiples of the table's (a chain
that leaves out a pool before conv3_1 costs 4 times as much, and is not recomputed)"""


def _front_cost(steps, convs: dict) -> int:
    h, w = network.IMAGE_SHAPE[:2]
    cost = 0
    for step in steps:
        if step[0] == "conv":
            cost += h * w * int(np.prod(np.shape(convs[step[1]][0])))
        elif step[0] == "pool":
            h, w = h // 2, w // 2
    return cost


def _chain_plan(chain: list, convs: dict) -> tuple | str:
    """(front steps for _front, head for _apply_head) of a reported chain: the table's seven
    convolutions, each once (3x3, stride 1, padding 'same', with a ReLU or none), 2x2 max or
    average pools, ReLUs, one flatten, then dense layers. Otherwise what in it is not
    explained."""
    steps, head, flat = [], [], False
    for entry in chain:
        kind, name, act = entry["kind"], repr(entry.get("name", ""))[:40], entry.get("activation", "linear")
        if kind == "flatten":
            if flat:
                return "the model flattens twice"
            flat = True
        elif kind == "activation":
            if act not in ("relu", "linear"):
                return f"its activation layer {name} applies {act[:40]!r}"
            if act == "relu" and flat:
                if not head or head[-1][2] != "linear":
                    return f"its activation layer {name} follows no dense layer without activation"
                head[-1][2] = "relu"
            elif act == "relu":
                steps.append(("relu",))
        elif flat:
            if kind != "dense":
                return f"its layer {name} ({kind}) comes after flatten"
            head.append([entry["kernel"], entry["bias"], act])
        elif kind == "conv":
            where = (list(entry.get("size") or []), list(entry.get("strides") or []), entry.get("padding"))
            if where != ([3, 3], [1, 1], "same"):
                return (f"its convolution {name} is {where[0]} with strides {where[1]} and padding "
                        f"{str(where[2])[:20]!r}: only the table's 3x3 convolutions with stride 1 and "
                        "padding 'same' are recomputed")
            if act not in ("relu", "linear"):
                return f"its convolution {name} applies {act[:40]!r}"
            steps.append(("conv", entry.get("name"), act))
        elif kind == "pool":
            where = (list(entry.get("size") or []), list(entry.get("strides") or []), entry.get("padding"))
            if entry.get("op") not in ("max", "avg") or where != ([2, 2], [2, 2], "valid"):
                return f"its pool {name} is not a 2x2 max or average pool with stride 2"
            steps.append(("pool", entry["op"]))
        else:
            return f"its dense layer {name} comes before flatten"
    named = [step[1] for step in steps if step[0] == "conv"]
    if len(named) != len(CONV_LAYERS) or set(named) != set(CONV_LAYERS):
        return "its convolutions are not the table's seven, each once"
    if not head:
        return "it ends in no flatten and dense layer"
    steps = tuple(steps)
    if _front_cost(steps, convs) > MAX_FRONT_COST * _front_cost(TABLE_FRONT, convs):
        return f"its convolutions cost more than {MAX_FRONT_COST} times the table's to recompute"
    return steps, head


def _head_explains(feature: np.ndarray, orders: list, head: list, logits: np.ndarray,
                   problems: list) -> bool:
    """Do the dense layers on the flattened feature maps, in one of the flatten orders,
    give the logits? What does not add up goes to `problems`."""
    flat = feature.reshape(len(feature), -1).astype(np.float64)
    for order in orders:
        try:
            want, bound = _apply_head(flat[:, order], head)
        except ValueError as exc:
            problems.append(str(exc))
            return False
        if want.shape == logits.shape and np.all(
                np.abs(want - logits) <= EXPLAIN_TOLERANCE * (bound + 1e-3)):
            # The tolerance grows with the terms' magnitudes, so a huge bias or huge
            # cancelling terms would widen it at will: the decision itself must also be
            # the head's, the recomputed top class on all but one of the rows.
            agree = int((want.argmax(axis=1) == logits.argmax(axis=1)).sum())
            if agree >= len(logits) - 1:
                return True
            problems.append(f"its top class is the recomputed one on only {agree} of "
                            f"{len(logits)} images")
    return False


def explain_logits(witness: dict, images: np.ndarray, rows=None) -> str | None:
    """None when the witness's logits on `images` are what its own inputs and layers compute
    (recomputed here on `rows`, by default drawn by random_rows): the chain of layers the
    model reports, else the table's chain with its conv weights and head; otherwise what
    does not add up."""
    _require(isinstance(witness, dict), "a set of logits is not a mapping")
    n = len(images)
    logits = _numbers(witness.get("logits"), "the logits")
    if logits.ndim != 2 or len(logits) != n:
        return f"expected logits for {n} images, found shape {list(logits.shape)[:8]}"
    _require(0 < logits.shape[1] <= MAX_OUTPUTS,
             f"{logits.shape[1]} logits per image (at most {MAX_OUTPUTS} are read)")
    logits = logits.astype(np.float64)
    inputs, convs, head, chain = _witness_parts(witness)
    if inputs is None or np.shape(inputs) != images.shape:
        return ("the model's preprocess layer (or preprocess()) gave no output of the images' "
                "shape on them")
    lacking = [name for name in CONV_LAYERS
               if name not in convs or [np.shape(a) for a in convs[name]] !=
               [tuple(p) for p in network.LAYERS[LAYER_ORDER.index(name)].params]]
    if lacking:
        return f"no 3x3 kernel and bias of the table's shapes in {', '.join(lacking[:3])}"
    plan = _chain_plan(chain, convs) if chain is not None else None
    if not head and not isinstance(plan, tuple):
        return f"no kernel and bias found in the layer {FC!r}" + (
            f" (and the model's own chain of layers is not recomputed: {plan})" if plan else "")
    transformed = _colour_transform(images, inputs)
    if transformed is None:
        return "the preprocess layer's output is not a colour transform of each pixel of the images"
    if rows is None:
        rows = random_rows(n)
    x, wanted = transformed[rows].astype(np.float32), logits[rows]
    problems = [f"the model's own chain of layers is not recomputed: {plan}"] \
        if isinstance(plan, str) else []
    if isinstance(plan, tuple):
        # The model's own chain: a structural mistake (no ReLU, average pools, a layer
        # order) is then explained, and costs only the features item.
        steps, own_head = plan
        try:
            feature = _cached_front(x, convs, steps)[-1] if steps else x
        except ValueError as exc:
            problems.append(str(exc))
        else:
            if _head_explains(feature, [np.arange(feature[0].size)], own_head, wanted, problems):
                return None
    # The table's chain with the named layers' weights: for models whose layers are not all
    # standard ones (custom layers computing with tf.nn).
    features = dict(zip(FEATURE_LAYERS, _cached_front(x, convs)))
    width = np.shape(head[0][0]) if head else ()
    for name in reversed(FEATURE_LAYERS):
        size = features[name][0].size
        if size not in width:
            continue
        orders = [np.arange(size),
                  np.arange(size).reshape(features[name].shape[1:]).transpose(2, 0, 1).reshape(-1)]
        order = _permutation(witness.get("flatten_order"), size) if name == "pool3" else None
        if order is not None:
            orders.insert(0, order)
        if _head_explains(features[name], orders, head, wanted, problems):
            return None
    return ("the model's logits are not fc applied to its own VGG16 features of the images"
            + (f" ({problems[0]})" if problems else "")
            + ": the output must be computed by the named layers (preprocess, the convolutions "
              "and pools, flatten, fc), in that order, on the images given")


# ---------------------------------------------------------------- 1 interface

# ---------------------------------------------------------------- behaviour, for similarity
# What a run did, kept in an item's details under "behaviour" for `grader similarity`
# (grader/copying/behaviour.py): numbers (compared within a tolerance) or values
# (compared exactly), a few hundred at most, so the gradebook stays small. Every submission
# is run under the same seeds and batches, so two copies of one program agree here however
# their code was rewritten, while independent solutions agree only where the exercise
# leaves no choice (and that, many submissions share). Each batch draws its own private
# seed, which draws the probe images, renames the classes and seeds every item; what is
# kept does not depend on it (images the seed does not draw, logits with the classes named
# back), so the kit's own solutions, graded once, can be held against any class on the
# default. What cannot be kept so (the pipeline's order, which the item's seed shuffles;
# the accuracy logged) is marked "within": compared inside one batch only.

# The accuracy items keep none: they run on held-out images that each course draws with
# its own seed, so the kit's own solutions (the background of what honest work does,
# tests/corpus/behaviour.json) could not be held against a class on them.

BEHAVIOUR_VALUES = 320
"""numbers one behaviour keeps (32 images' logits)"""


def _kept_numbers(values) -> dict:
    flat = np.asarray(values, dtype=np.float64).reshape(-1)[:BEHAVIOUR_VALUES]
    return {"numbers": [float(v) if math.isfinite(v) else 0.0
                        for v in flat.astype(np.float32).tolist()]}


def _kept_value(value) -> dict:
    return {"value": value}


def _named_back(logits, ctx) -> np.ndarray:
    """Logits with each class's column where its own name puts it, whatever the batch's
    renaming (training under renamed labels is the same computation, columns permuted)."""
    logits = np.asarray(logits)
    names = getattr(ctx, "names", None)
    if names is None or logits.ndim != 2 or logits.shape[1] != len(names):
        return logits
    return logits[:, names]


def _chain_shown(chain) -> list | str:
    """A dataset's chain as ops and their constant arguments (the seeds left out: the grader
    passes them), or why it has none."""
    if isinstance(chain, str):
        return "none"
    return [[step.kind, sorted((k, str(v)) for k, v in step.args.items() if "seed" not in k),
             list(step.function_ops)[:40]] for step in chain[:40]]


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


@_judged
def judge_interface(obs, ctx, params):
    functions = _mapping(obs["functions"], "the functions")
    for name in SIGNATURES:
        if functions.get(name) is not None:
            _require(all(isinstance(p, str) for p in _entries(functions[name], f"{name}'s parameters")),
                     f"{name}'s parameters are not names")
    unfinished = _entries(obs.get("unfinished", []), "the unfinished functions", len(SIGNATURES))
    problems = []
    for name, wanted in SIGNATURES.items():
        got = functions.get(name)
        if got is None:
            problems.append(f"{name} is missing or not a function")
        elif "*" not in got and not any(p.startswith("**") for p in got):
            lacking = [p for p in wanted if p not in got]
            if lacking:
                problems.append(f"{name} lacks parameter(s) {', '.join(lacking)}")
            elif name in unfinished:
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


def _named_mistake(found: np.ndarray, x: np.ndarray, atol: float) -> str | None:
    """The message of the usual preprocessing mistake that turns the images `x` (float)
    into `found`, or None."""
    return next((message for message, mistake in _PREPROCESS_MISTAKES
                 if np.allclose(found, mistake(x), atol=atol)), None)


def preprocessing_mistake(inputs, images: np.ndarray) -> str | None:
    """What is wrong with `inputs`, what a model's preprocessing gives conv1_1 for `images`
    (uint8): None when they are x*255 - the ImageNet mean (or unknown: no inputs, another
    shape), else the mistake, named as the preprocess item names it when it is one of the
    usual ones."""
    if not isinstance(inputs, np.ndarray) or inputs.shape != images.shape:
        return None
    x = images.astype(np.float64)
    found = inputs.astype(np.float64)
    if not np.all(np.isfinite(found)):
        return "they hold values that are not finite numbers"
    if np.allclose(found, x - IMAGENET_MEAN_RGB, atol=1e-2):
        return None
    if (message := _named_mistake(found, x, 1e-2)) is not None:
        return message
    return (f"they differ from x*255 - [123.68, 116.779, 103.939] by up to "
            f"{np.max(np.abs(found - (x - IMAGENET_MEAN_RGB))):.4g}")


@_judged
def judge_preprocess(obs, ctx, params):
    x = ctx.probe.astype(np.float64)
    expected = x - IMAGENET_MEAN_RGB
    out = _numbers(obs["output"], "preprocess's output")
    dtype = _text(obs["dtype"], "the output's dtype")
    if out.shape != expected.shape:
        return 0.0, (f"expected output shape {list(expected.shape)}, found {list(out.shape)[:8]}. "
                     "Hint: preprocessing works pixel by pixel and keeps the shape.")
    # the probe's last two images are all 0 and all 255 whatever the seed: every 8th pixel
    behaviour = {"behaviour": {"output": _kept_numbers(out[-2:, ::8, ::8, :]), "dtype": _kept_value(dtype)}}
    if np.allclose(out, expected, atol=params["tolerance"]):
        if dtype != "float32":
            return 0.5, f"values are right but the dtype is {dtype}, expected float32", behaviour
        return 1.0, "matches x*255 - ImageNet mean (RGB) on probe images", behaviour
    if (message := _named_mistake(out, x, max(params["tolerance"], 1e-2))) is not None:
        return 0.0, f"expected x*255 - [123.68, 116.779, 103.939]: {message}", behaviour
    return 0.0, (f"expected x*255 - [123.68, 116.779, 103.939] per pixel; largest difference "
                 f"{np.max(np.abs(out - expected)):.4g}. Hint: convert_image_dtype gives 0..1."), behaviour


# ---------------------------------------------------------------- 3 layer shapes

def collect_layer_shapes(module, ctx, params):
    model = _build(module, ctx)
    chain = _chain(model, ctx.probe[:2])
    shapes = {name: (list(out.shape[1:]) if isinstance(out, np.ndarray) else out)
              for name, out in chain.items()}
    params_found = {}
    for name in CONV_LAYERS + [FC]:
        layer = find_layer(model, name)
        if layer is not None:
            params_found[name] = [list(v.shape) for v in layer_variables(layer)]
    try:
        output = list(np.shape(_outputs(model, ctx.probe[:2])))
    except Exception as exc:
        output = f"{type(exc).__name__}: {exc}"[:200]
    return {"shapes": shapes, "params": params_found, "output": output}


def _shape_or_error(value, what: str):
    """An output shape as collect_layer_shapes reports it: None (no such layer), the error
    calling it raised (cut for a message), or a shape."""
    if value is None:
        return None
    return _text(value, what) if isinstance(value, str) else _shape(value, what)


@_judged
def judge_layer_shapes(obs, ctx, params):
    expected_params = {layer.name: [list(p) for p in layer.params]
                       for layer in network.LAYERS if layer.params}
    shapes = _mapping(obs["shapes"], "the layers' output shapes")
    shapes = {name: _shape_or_error(shapes.get(name), f"{name}'s output shape") for name in LAYER_ORDER}
    found_params = _mapping(obs["params"], "the layers' variables")
    for name in expected_params:
        if found_params.get(name) is not None:
            for shape in _entries(found_params[name], f"{name}'s variables", MAX_VARIABLES):
                _shape(shape, f"a variable shape of {name}")
    output = _shape_or_error(obs["output"], "the model's output shape")
    problems = []
    for name in LAYER_ORDER:
        got = shapes[name]
        if got is None:
            problems.append(f"no layer named {name}")
        elif isinstance(got, str):
            problems.append(f"calling {name} on the previous layer's output failed ({got})")
        elif tuple(got) != LAYER_SHAPES[name]:
            problems.append(f"{name} outputs {got}, expected {list(LAYER_SHAPES[name])}")
        elif name in expected_params and found_params.get(name) != expected_params[name]:
            problems.append(f"{name} holds variables of shapes {found_params.get(name)}, "
                            f"expected kernel and bias {expected_params[name]}")
    if output != [2, network.NUM_CLASSES]:
        problems.append(f"the model maps 2 images to {output}, expected logits "
                        f"[2, {network.NUM_CLASSES}]")
    if not problems:
        return 1.0, "all 13 layers have the expected shapes"
    score = 1.0 - len(problems) / (len(LAYER_ORDER) + 1)
    return max(score, 0.0), "; ".join(problems[:4]) + (" ..." if len(problems) > 4 else "") + \
        ". Hint: 3x3 convs with padding 'same', 2x2 max pools with stride 2, names as in the table."


# ---------------------------------------------------------------- 4 weights

def collect_weights(module, ctx, params):
    model = _build(module, ctx)
    arrays = {}
    for name, (kernel, bias) in _conv_weights(model).items():
        arrays[f"{name}_W"], arrays[f"{name}_b"] = kernel, bias
    return {"arrays": arrays}


@_judged
def judge_weights(obs, ctx, params):
    arrays = _mapping(obs["arrays"], "the conv weights")
    wrong = []
    for key in network.WEIGHT_KEYS:
        got = arrays.get(key)
        if got is not None:
            _numbers(got, key)
        want = ctx.weights[key]
        if got is None or got.shape != want.shape or not np.array_equal(got, want):
            wrong.append(key)
    if not wrong:
        return 1.0, "every conv kernel and bias equals the weights file"
    total = len(network.WEIGHT_KEYS)
    swapped = [key for key in wrong if isinstance(arrays.get(key), np.ndarray) and arrays[key].ndim == 4
               and arrays[key].shape == ctx.weights[key].shape[1::-1] + ctx.weights[key].shape[2:]
               and np.array_equal(arrays[key], np.transpose(ctx.weights[key], (1, 0, 2, 3)))]
    how = (f": {', '.join(swapped[:5])}{' ...' if len(swapped) > 5 else ''} "
           f"{'is' if len(swapped) == 1 else 'are'} the file's kernel with its height and width "
           "axes swapped" if swapped else
           ": none of the convolutions holds the file's values, as if they were never set"
           if len(wrong) == total else "")
    return (total - len(wrong)) / total, (
        f"{', '.join(wrong[:5])}{' ...' if len(wrong) > 5 else ''} differ from the weights file{how}. "
        "Hint: set each conv's kernel and bias from weights['convX_Y_W'] and ['convX_Y_b'], "
        "unchanged (no transpose, no reshape).")


# ---------------------------------------------------------------- 5 frozen

def _frozen_before(model) -> tuple:
    """What the frozen item compares, taken before training: the trainable variables, and
    copies of the conv kernels and biases and of fc (already at zeros)."""
    fc = _fc_variables(model)
    fc_ids = {id(v) for v in fc}
    trainable = [[str(getattr(v, "path", None) or v.name), list(v.shape), id(v) in fc_ids]
                 for v in model.trainable_variables]
    return trainable, _conv_weights(model), [_array(v) for v in fc]


def _frozen_observation(model, trainable, convs, fc, steps: int) -> dict:
    """The conv weights and fc before and after training, as arrays: the grading process
    compares them (a comparison made here would be the submission's to make)."""
    return {"trainable": trainable, "before": convs, "after": _conv_weights(model),
            "fc_before": fc, "fc_after": [_array(v) for v in _fc_variables(model)], "steps": steps}


def _same_arrays(first, second) -> bool:
    return isinstance(first, list) and isinstance(second, list) and len(first) == len(second) \
        and all(isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.shape == b.shape
                and np.array_equal(a, b) for a, b in zip(first, second))


def _same_head(first, second) -> bool:
    """Two heads as _head reports them ([[kernel, bias, activation], ...]) hold the same."""
    return isinstance(first, list) and isinstance(second, list) and len(first) == len(second) \
        and all(isinstance(a, list) and isinstance(b, list) and len(a) == len(b) == 3
                and _same_arrays(a[:2], b[:2]) and a[2] == b[2] for a, b in zip(first, second))


def collect_frozen(module, ctx, params):
    # The training item's run answers the same questions, when it ran first in this worker
    # and succeeded (SHARES): the frozen state does not depend on which run trained.
    if "frozen" in ctx.runs:
        return ctx.runs["frozen"]
    model = _build(module, ctx)
    start_fc(model)
    before = _frozen_before(model)
    module.train(model, _fixed_batches(ctx), steps=params["steps"])
    return _frozen_observation(model, *before, params["steps"])


def _trainable_entry(entry) -> tuple[str, list, bool]:
    _require(isinstance(entry, list) and len(entry) == 3 and isinstance(entry[2], bool),
             "a trainable variable is not [path, shape, is fc]")
    return _text(entry[0], "a variable's path"), _shape(entry[1], "a variable's shape", False), entry[2]


def _layer_variables(found, what: str) -> dict:
    """{conv layer: its variables} as _conv_weights reports them, checked."""
    found = _mapping(found, what)
    for name in CONV_LAYERS:
        if name in found:
            _array_list(found[name], f"{name}'s variables {what}")
    return found


@_judged
def judge_frozen(obs, ctx, params):
    trainable = [_trainable_entry(e) for e in _entries(obs["trainable"], "the trainable variables")]
    count = sum(math.prod(shape) for _, shape, _ in trainable)
    only_fc = count == FC_PARAMS and len(trainable) == 2 and all(is_fc for _, _, is_fc in trainable)
    before = _layer_variables(obs["before"], "before training")
    after = _layer_variables(obs["after"], "after training")
    _array_list(obs["fc_before"], "fc before training")
    _array_list(obs["fc_after"], "fc after training")
    steps = _integer(obs["steps"], "the number of steps")
    missing = [name for name in CONV_LAYERS if name not in before]
    changed = [name for name in CONV_LAYERS
               if name in before and not _same_arrays(before[name], after.get(name))]
    fc_changed = not _same_arrays(obs["fc_before"], obs["fc_after"])
    others = [path for path, _, is_fc in trainable if not is_fc]
    convs_trainable = [path for path in others if any(name in path for name in CONV_LAYERS)]
    if convs_trainable or not trainable:
        hint = "trainable=False on every conv layer, nothing trainable but fc"
    elif others:  # layers the table does not have
        hint = "the table has no trainable layer but fc (no dense layer between flatten and fc)"
    else:  # fc alone, of another size
        fc_count = sum(math.prod(shape) for _, shape, _ in trainable)
        hint = (f"only fc is trainable, but it holds {fc_count} parameters: fc maps pool3's "
                f"flattened values to the classes, and its size follows from theirs (the "
                "layer_shapes item says which differ)")
    return _fraction_and_messages([
        (0.4, only_fc, f"expected only fc's kernel and bias trainable ({FC_PARAMS} parameters), "
                       f"found {len(trainable)} trainable variables with {count} parameters"
                       + (f", among them {', '.join(others[:3])}" if others else "")
                       + f". Hint: {hint}"),
        (0.4, not changed and not missing,
         f"no kernel and bias found in {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}: "
         "frozen convolutions must be there to stay frozen" if missing else
         f"training changed {', '.join(changed)}: the convolutions must be frozen"),
        (0.2, fc_changed, f"{steps} training steps did not change fc: nothing was learned"),
    ])


# ---------------------------------------------------------------- 6 features

def collect_features(module, ctx, params):
    model = _build(module, ctx)
    # The weights item grades the values; here only the computation counts.
    for name in CONV_LAYERS:
        pair = kernel_and_bias(find_layer(model, name))
        if pair and [tuple(v.shape) for v in pair] == [ctx.weights[f"{name}_W"].shape,
                                                       ctx.weights[f"{name}_b"].shape]:
            pair[0].assign(ctx.weights[f"{name}_W"])
            pair[1].assign(ctx.weights[f"{name}_b"])
    chain = _chain(model, ctx.probe)
    obs = {"chain": {name: chain.get(name) for name in FEATURE_LAYERS}}
    # What conv1_1 is given (a preprocessing mistake is the preprocess item's), and the
    # model's layers as it calls them, to say how they differ from the table's.
    obs["inputs"] = _inputs_of(model, module, ctx.probe)
    layers = _layer_chain(model, ctx.probe)
    obs["structure"] = None if layers is None else \
        [{k: v for k, v in entry.items() if k not in ("kernel", "bias")} for entry in layers]
    # The model's own logits, with the grader's fc weights, against pool3 -> flatten -> fc.
    fc_vars = _fc_variables(model)
    shapes = [list(v.shape) for v in fc_vars]
    for variable, value in zip(fc_vars, probe_fc_arrays(shapes)):
        variable.assign(value)
    obs["fc_shapes"] = shapes
    obs["logits"] = _outputs(model, ctx.probe)
    order = _flatten_order(model)
    obs["flatten_order"] = order if order is not None else \
        np.arange(int(np.prod(LAYER_SHAPES["pool3"])), dtype=np.float64)
    return obs


def reference_features(images: np.ndarray, weights: dict) -> dict[str, np.ndarray]:
    """The grader's own numpy computation of conv1_1 .. pool3 (every layer's output)."""
    return vgg_front(images.astype(np.float32) - IMAGENET_MEAN_RGB,
                     {name: [weights[f"{name}_W"], weights[f"{name}_b"]] for name in CONV_LAYERS})


def _structure_differences(structure) -> list[str]:
    """How the model's layers, as it calls them (_layer_chain without arrays), differ from
    the table's: ReLUs, pools, order, dense layers."""
    found = []
    convs = [entry for entry in structure if entry.get("kind") == "conv"]
    bare = [str(entry.get("name"))[:20] for k, entry in enumerate(structure)
            if entry.get("kind") == "conv" and entry.get("activation") != "relu"
            and not (k + 1 < len(structure) and structure[k + 1].get("kind") == "activation"
                     and structure[k + 1].get("activation") == "relu")]
    if bare:
        found.append(f"no ReLU after {', '.join(bare)} (each of the table's convolutions ends "
                     "with one)")
    averaged = [str(entry.get("name"))[:20] for entry in structure
                if entry.get("kind") == "pool" and entry.get("op") != "max"]
    if averaged:
        found.append(f"{', '.join(averaged)} average{'s' if len(averaged) == 1 else ''} where the "
                     "table's pools take the maximum of each 2x2 block")
    names = [str(entry.get("name"))[:20] for entry in convs]
    for got, want in zip(names, CONV_LAYERS):
        if got != want:
            found.append(f"it applies {got} where the table applies {want} (the table's order: "
                         f"{', '.join(CONV_LAYERS)})")
            break
    after, last = [], None
    for entry in structure:
        if entry.get("kind") == "conv":
            last = str(entry.get("name"))[:20]
        elif entry.get("kind") == "pool":
            after.append(str(last))
    table = [LAYER_ORDER[LAYER_ORDER.index(name) - 1] for name in FEATURE_LAYERS if name not in CONV_LAYERS]
    if after != table:
        found.append(f"its 2x2 pools follow {', '.join(after) or 'nothing'} (the table's follow "
                     f"{', '.join(table)})")
    dense = sum(entry.get("kind") == "dense" for entry in structure)
    if dense > 1:
        found.append(f"{dense} dense layers after flatten (the table has fc alone)")
    return found


def _layers_given(chain: dict, inputs, images: np.ndarray, weights: dict, tol: float) -> tuple | None:
    """(what conv1_1 is given, the table's conv1_1 .. pool3 on it) when the model's layers
    are the table's on what conv1_1 is given: the model's own preprocessing (`inputs`), or
    one of the usual preprocessing mistakes of the images; None otherwise. Only a message
    reads this: the verdict compares the layers on a colour transform of the images, never
    on inputs the worker reports."""
    convs = {name: [weights[f"{name}_W"], weights[f"{name}_b"]] for name in CONV_LAYERS}
    x = images.astype(np.float64)
    candidates = [(mistake(x), message) for message, mistake in _PREPROCESS_MISTAKES]
    if isinstance(inputs, np.ndarray) and inputs.shape == images.shape and np.all(np.isfinite(inputs)):
        candidates.insert(0, (inputs, "what the model's preprocessing gives it, "
                              + (preprocessing_mistake(inputs, images) or "not x*255 - [123.68, "
                                 "116.779, 103.939]").replace("they differ", "which differs", 1)))
    first = chain.get(FEATURE_LAYERS[0])
    if not isinstance(first, np.ndarray):
        return None
    for given, what in candidates:
        try:
            if first.shape != given.shape[:3] + first.shape[3:] or \
                    _max_rel_diff(first, _front(given, convs, TABLE_FRONT[:1])[0]) > tol:
                continue
            front = vgg_front(given, convs)
        except ValueError:
            continue
        if all(isinstance(chain.get(name), np.ndarray) and chain[name].shape == front[name].shape
               and _max_rel_diff(chain[name], front[name]) <= tol for name in FEATURE_LAYERS):
            return what, front
    return None


def _logits_follow(logits: np.ndarray, pool3: np.ndarray, order: np.ndarray, fc_shapes: list,
                   tol: float) -> bool:
    """The logits are the grader's fc (probe values) on the flattened `pool3`."""
    kernel, bias = probe_fc_arrays(fc_shapes)
    want = pool3.reshape(len(pool3), -1)[:, order] @ kernel + bias
    return logits.shape == want.shape and _max_rel_diff(logits, want) <= tol


@_judged
def judge_features(obs, ctx, params):
    chain = _mapping(obs["chain"], "the layers' outputs")
    for name in FEATURE_LAYERS:
        if isinstance(chain.get(name), np.ndarray):
            _numbers(chain[name], f"layer {name}'s output")
        elif chain.get(name) is not None:
            _text(chain[name], f"layer {name}'s error")
    fc_shapes = [_shape(shape, "a shape of fc's variables", False)
                 for shape in _entries(obs["fc_shapes"], "fc's variables", MAX_VARIABLES)]
    logits = _numbers(obs["logits"], "the model's logits")
    order = _numbers(obs["flatten_order"], "the flatten layer's order", ndim=1)
    structure = obs.get("structure")
    if structure is not None:
        for entry in _entries(structure, "the model's layers", MAX_CHAIN_LAYERS):
            _mapping(entry, "a layer of the model")
            for key in ("kind", "name", "activation", "op"):
                _text(entry.get(key, ""), f"a layer's {key}")
    # The layers are compared on what the model's own preprocessing gives conv1_1 (a
    # colour transform of the images: its mistakes are the preprocess item's), else on
    # the grader's preprocessing.
    inputs, fitted = obs.get("inputs"), None
    if inputs is not None and _numbers(inputs, "the preprocess layer's output").shape == ctx.probe.shape:
        fitted = _colour_transform(ctx.probe, inputs)
    if fitted is not None:
        expected = vgg_front(fitted.astype(np.float32), {name: [ctx.weights[f"{name}_W"], ctx.weights[f"{name}_b"]]
                                                         for name in CONV_LAYERS})
    else:
        expected = reference_features(ctx.probe, ctx.weights)
    tol = params["tolerance"]
    problems = []
    chained_ok = True
    # How the model's layers, as it calls them, differ from the table's: when they do, they
    # are the hint, in place of the generic ones below.
    differences = _structure_differences(structure) if structure is not None else []
    # Set when the layers depart only because of what conv1_1 is given: (what it is given,
    # the table's layers on it), so that neither hint sends the student to the layers.
    given = None
    for name in FEATURE_LAYERS:
        got, want = chain.get(name), expected[name]
        if got is None or isinstance(got, str) or got.shape != want.shape:
            how = "is missing" if got is None else _text(got, "") if isinstance(got, str) else \
                f"outputs shape {list(got.shape[1:])[:8]}, expected {list(want.shape[1:])}"
            problems.append(f"layer {name} {how}")
            chained_ok = False
            break
        if _max_rel_diff(got, want) > tol:
            difference = f"largest relative difference {_max_rel_diff(got, want):.3g}"
            if name == FEATURE_LAYERS[0]:
                given = _layers_given(chain, inputs, ctx.probe, ctx.weights, tol)
            if given is not None:
                problems.append(f"the layers depart from VGG16 at {name} ({difference}) only "
                                f"because of what conv1_1 is given: {given[0]}. Each layer "
                                "computes VGG16's on what the layer before gives it. Hint: check "
                                "the preprocessing, first the pixel scale (convert_image_dtype "
                                "gives 0..1; VGG16 expects 0..255 minus the ImageNet mean)")
            else:
                problems.append(f"the layers first depart from VGG16 at {name} ({difference}"
                                + (", on the grader's preprocessing: the model's own gives conv1_1 no "
                                   "colour transform of the images)" if fitted is None else ")")
                                + ("" if differences else
                                   ". Hint: check padding 'same', the ReLU and the layer order up to there"))
            chained_ok = False
            break
    pool3 = expected["pool3"].reshape(len(ctx.probe), -1)
    width = pool3.shape[1]
    # Where the flatten puts pool3's values must be a permutation of them, its size checked
    # before anything that grows with it; fc a kernel [width, k] and a bias [k], checked
    # before the grader makes its own probe values of those shapes.
    order = _permutation(order, width)
    outputs = fc_shapes[0][1] if len(fc_shapes) == 2 and len(fc_shapes[0]) == 2 else 0
    fc_fits = fc_shapes == [[width, outputs], [outputs]] and 0 < outputs <= MAX_OUTPUTS
    logits_ok = False
    if order is not None and fc_fits:
        kernel, bias = probe_fc_arrays(fc_shapes)
        want = pool3[:, order] @ kernel + bias
        logits_ok = logits.shape == want.shape and _max_rel_diff(logits, want) <= tol
    if not logits_ok and given is not None and order is not None and fc_fits and \
            _logits_follow(logits, given[1]["pool3"], order, fc_shapes, tol):
        problems.append("the model's own output is fc applied to its own flattened pool3 "
                        "features, which differ by what conv1_1 is given (the preprocessing)")
    elif not logits_ok:
        problems.append("the model's own output is not fc applied to the flattened pool3 "
                        "features" + ("" if order is not None else
                                      f" (its flatten layer does not reorder pool3's {width} values)")
                        + ("" if differences else ". Hint: the model must be exactly the chain of "
                           "the named layers; check that call() uses every layer once, in order"))
    if chained_ok and logits_ok:
        return 1.0, "pool3 and the model's logits match the grader's own computation"
    if differences:
        problems.append("the model's layers, as it calls them, differ from the table's: "
                        + "; ".join(differences))
    return (0.6 if chained_ok else 0.0) + (0.4 if logits_ok else 0.0), "; ".join(problems)


# ---------------------------------------------------------------- 7 training and summaries

TRAINING_IMAGES = 256
"""training images the training item's logits are read on, before and after the run"""


def collect_training(module, ctx, params):
    model = _build(module, ctx)
    start_fc(model)
    try:
        frozen_before = _frozen_before(model)
    except Exception:  # noqa: BLE001 - the frozen item then runs and judges on its own
        frozen_before = None
    batch = ctx.train_images[:TRAINING_IMAGES]
    before = logit_witness(model, module, batch)
    log_dir = ctx.scratch / "training-logs"
    module.train(model, _fixed_batches(ctx), steps=params["steps"], log_dir=str(log_dir))
    if frozen_before is not None:
        with contextlib.suppress(Exception):
            ctx.runs["frozen"] = _frozen_observation(model, *frozen_before, params["steps"])
    return {"before": before, "after": logit_witness(model, module, batch), "log_dir": str(log_dir)}


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    logits = logits.astype(np.float64)
    logits = logits - logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(labels)), labels].mean())


# Scalar tags accepted for the training loss and accuracy: tf.summary.scalar's plain names
# and those keras.callbacks.TensorBoard writes, in any run sub-folder of log_dir.
LOSS_TAGS = {"loss", "batch_loss", "epoch_loss", "train_loss"}
ACCURACY_TAGS = {"accuracy", "acc", "batch_accuracy", "epoch_accuracy", "train_accuracy",
                 "sparse_categorical_accuracy", "batch_sparse_categorical_accuracy",
                 "epoch_sparse_categorical_accuracy"}


def finish_training(obs, scratch: Path):
    """Run by the engine outside the sandbox, on the machine that collected: the scalar
    tags of the event files the submission wrote, read defensively, inside scratch only.
    Whatever the worker itself said about tags is replaced."""
    from ...events import scalars

    log_dir = Path(obs["log_dir"])
    if not log_dir.resolve().is_relative_to(Path(scratch).resolve()):
        raise ValueError(f"log_dir {str(log_dir)[:100]} is outside the scratch folder")
    found = scalars(log_dir)
    obs["scalar_tags"] = sorted(found)
    obs["curves"] = training_curves(found)
    return obs


CURVE_POINTS = 200
"""points a training curve keeps for people to look at (grader review and report)"""


def training_curves(found: dict[str, list[tuple[int, float]]]) -> dict:
    """{"loss": [[step, value]], "accuracy": [...]} from the scalars a run logged: the
    first accepted tag of each kind, in step order, thinned to CURVE_POINTS points."""
    curves = {}
    for kind, accepted in (("loss", LOSS_TAGS), ("accuracy", ACCURACY_TAGS)):
        tags = sorted(t for t in found if str(t).rsplit("/", 1)[-1].lower() in accepted)
        if not tags:
            continue
        points = sorted((int(step), float(value)) for step, value in found[tags[0]]
                        if np.isfinite(value))
        stride = max(1, -(-len(points) // CURVE_POINTS))
        curves[kind] = [[step, round(value, 6)] for step, value in points[::stride]]
    return curves


LEARNING_RATES_PARAGRAPH = "'Mind the scale of what fc sees' in the handout's section 4"


def training_accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of `logits` on the training item's images: what the item's verdict reads."""
    return float((np.asarray(logits).argmax(1) == labels).mean())


def other_names(logits: np.ndarray, labels: np.ndarray) -> str | None:
    """What is wrong when `logits` sort the images into classes well, but under other names
    than `labels` (None when they do not).

    Every item names the classes its own way (inputs.renaming), so a head trained before
    grading, loaded from a file or copied from another run, predicts the data set's names,
    or another item's: under the labels it is judged on it scores below chance, while
    renaming its classes one to one (matched greedily on the counts of predicted class
    against label) makes it accurate. A head that learned from the labels it was given
    has its best renaming at the identity, or near it."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    if logits.ndim != 2 or len(logits) != len(labels) or not len(labels):
        return None
    classes = max(logits.shape[1], int(labels.max()) + 1)
    counts = np.zeros((classes, classes), np.int64)
    np.add.at(counts, (logits.argmax(axis=1), labels), 1)
    direct = float(np.trace(counts)) / len(labels)
    matched, left = 0, counts.astype(np.float64)
    for _ in range(classes):
        row, column = np.unravel_index(np.argmax(left), left.shape)
        if left[row, column] <= 0:
            break
        matched += int(left[row, column])
        left[row, :], left[:, column] = -1, -1
    matched /= len(labels)
    if matched < max(0.5, direct + 0.3):
        return None
    return (f"the head tells the {len(labels)} images apart ({matched:.2f} of them right once its "
            f"classes are renamed) but not under the names it was given ({direct:.2f} right): "
            "it was trained on other labels (a head made before grading, loaded from a file "
            "or copied), or the labels are changed on their way into the loss. Every grading "
            "names the classes its own way: train() must learn from the batches it is given")


def learning_diagnosis(before: np.ndarray, after: np.ndarray, labels: np.ndarray,
                       steps: int, bar: float, inputs_off: str | None = None,
                       weights_off: list[str] | None = None, checked: bool = False,
                       logged_loss: list | None = None) -> tuple[bool, str]:
    """(learned, what was measured and its most likely cause) from the logits on the same
    training images before and after a run of `steps` steps.

    Learning counts when the accuracy on those images reaches `bar`, a bound calibrated
    on the course's data (`grader calibrate`): the loss is reported but not judged,
    because Adam's first steps overshoot it on features in the hundreds while the
    accuracy already climbs, and on real images the loss can stay above its start for
    the whole budget of a correct run.

    The cause is read from what the grader saw of the network the run trained: what
    conv1_1 is given when that is not x*255 - the ImageNet mean (`inputs_off`, in the
    preprocess item's words), the convolutions that do not hold the weights file's values
    (`weights_off`), and `checked` when both were read and found right, so what is left
    is the training itself; then the loss the run logged ([[step, value], ...]) shows how
    far the steps overshot.
    """
    loss_before, loss_after = cross_entropy(before, labels), cross_entropy(after, labels)
    acc_before, acc_after = training_accuracy(before, labels), training_accuracy(after, labels)
    measured = (f"in {steps} steps the accuracy on {len(labels)} training images went "
                f"{acc_before:.2f} -> {acc_after:.2f} (learned from {bar:.2f}) and the loss "
                f"{loss_before:.3f} -> {loss_after:.3f}")
    moved = float(np.max(np.abs(after.astype(np.float64) - before))) if before.size else 0.0
    if acc_after >= bar and acc_after > acc_before:
        return True, measured
    if moved <= 1e-6 * (1.0 + float(np.max(np.abs(before))) if before.size else 1.0):
        return False, (f"nothing learned: {measured}, and the model's outputs did not change "
                       "at all, so fc was never updated. Hint: apply the gradients of the loss to the "
                       "trainable variables (optimizer.apply_gradients)")
    if inputs_off:
        return False, (f"not learned: {measured}. The updates are applied, but the network's "
                       f"inputs are off: {inputs_off}, so fc sees features VGG16 was not trained "
                       "for. Hint: fix preprocess first (uint8 to 0..255 floats, the ImageNet mean "
                       "subtracted in RGB order; the preprocess item says more)")
    if weights_off:
        return False, (f"not learned: {measured}. The updates are applied, but the convolutions "
                       f"do not hold the VGG16 weights ({', '.join(weights_off[:3])}"
                       f"{' ...' if len(weights_off) > 3 else ''} differ from the weights file), so "
                       "the features tell the classes apart poorly. Hint: are the VGG16 weights "
                       "loaded into the convolutions? (the weights item says more)")
    if loss_after > loss_before:
        if checked:
            swing = ""
            if logged_loss and len(logged_loss) >= 3:
                step, peak = max(logged_loss, key=lambda point: point[1])
                swing = (f" (the loss it logged peaked at {peak:.4g} at step {step:g} and ended at "
                         f"{logged_loss[-1][1]:.4g})")
            return False, (f"not learned: {measured}. The updates are applied, but the loss ended "
                           f"above where it started: each step overshoots{swing}. The network's inputs and "
                           "the VGG16 weights are right, so the learning rate is too large for "
                           f"this optimizer on these features ({LEARNING_RATES_PARAGRAPH}; Adam at "
                           "1e-4 settles within the budget). Hint: lower the learning rate, or "
                           "use the default 1e-4 with Adam")
        return False, (f"not learned: {measured}. The updates are applied, but the loss ended "
                       "above where it started: each step overshoots. Hint: most likely the network's "
                       "inputs are off (preprocess: uint8 to 0..255 floats, the ImageNet mean "
                       "subtracted in RGB order), else a learning rate too large for this optimizer on "
                       f"these features ({LEARNING_RATES_PARAGRAPH}; Adam at 1e-4 settles within "
                       "the budget)")
    if acc_after > acc_before + 0.05:
        return False, (f"too little learned: {measured}. The updates are applied and help, but "
                       "too slowly for the budget. Hint: a learning rate too small or too large for "
                       f"this optimizer ({LEARNING_RATES_PARAGRAPH})"
                       + ("" if checked else ", or features that barely tell the classes apart "
                          "(are the VGG16 weights loaded into the convolutions?)"))
    return False, (f"too little learned: {measured}. The updates are applied but change nothing "
                   "that matters. Hint: a learning rate far below 1e-4 (1e-6 needs "
                   "about a hundred times the steps)"
                   + ("" if checked else ", or features near zero (are the VGG16 weights "
                      "loaded into the convolutions?)"))


def _network_off(witness: dict, images: np.ndarray, weights: dict) -> tuple:
    """(what is wrong with what conv1_1 is given, the convolutions whose kernel or bias is
    not the weights file's, both read) from a set of logits' witness (checked by
    explain_logits before): what a training or accuracy message blames before the
    training itself."""
    inputs = witness.get("inputs")
    convs = witness.get("convs") or {}
    inputs_off = preprocessing_mistake(inputs, images)
    weights_off = [name for name in CONV_LAYERS if name in convs and not _same_arrays(
        convs[name], [weights[f"{name}_W"], weights[f"{name}_b"]])]
    checked = isinstance(inputs, np.ndarray) and inputs.shape == images.shape and \
        all(name in convs for name in CONV_LAYERS)
    return inputs_off, weights_off, checked


@_judged
def judge_training(obs, ctx, params):
    labels = ctx.train_labels[:TRAINING_IMAGES]
    images = ctx.train_images[:TRAINING_IMAGES]
    for run in ("before", "after"):
        logits = _numbers(_mapping(obs[run], f"what was read {run} training").get("logits"),
                          f"the logits {run} training", ndim=2)
        _require(len(logits) == len(labels) and 0 < logits.shape[1] <= MAX_OUTPUTS,
                 f"the logits {run} training have shape {list(logits.shape)}, expected "
                 f"[{len(labels)}, at most {MAX_OUTPUTS}]")
    tags = _entries(obs["scalar_tags"], "the scalar tags")
    _require(all(isinstance(tag, str) for tag in tags), "a scalar tag is not text")
    rows = random_rows(len(images))  # the same for both: one front end when fc alone trained
    unexplained = explain_logits(obs["before"], images, rows) or explain_logits(obs["after"], images, rows)
    if unexplained:
        learned, diagnosis = False, f"nothing counts as learned: {unexplained}"
    elif renamed := other_names(obs["after"]["logits"], labels):
        return 0.0, f"nothing counts: {renamed}"
    else:
        run = (obs["before"]["logits"], obs["after"]["logits"], labels, params["steps"],
               params["learned_accuracy"])
        learned, diagnosis = learning_diagnosis(*run)
        if not learned:  # the cause, from what the grader saw of the network and the run logged
            logged = _mapping(obs.get("curves", {}), "the curves").get("loss")
            logged = [point for point in logged if isinstance(point, list) and len(point) == 2
                      and all(isinstance(v, (int, float)) for v in point)] \
                if isinstance(logged, list) else None
            learned, diagnosis = learning_diagnosis(*run, *_network_off(obs["before"], images, ctx.weights),
                                                    logged_loss=logged)
    leaves = {tag.rsplit("/", 1)[-1].lower()[:MAX_TEXT] for tag in tags}
    missing = [kind for kind, accepted in (("loss", LOSS_TAGS), ("accuracy", ACCURACY_TAGS))
               if not leaves & accepted]
    found = ", ".join(sorted(leaves)[:6]) or "none"
    curves = _mapping(obs.get("curves", {}), "the curves")
    logged = {kind: [p for p in points if isinstance(p, list) and len(p) == 2
                     and all(isinstance(v, (int, float)) for v in p)]
              for kind, points in curves.items() if isinstance(points, list)}
    details = {"curves": curves,
               "train_accuracy": [training_accuracy(obs["before"]["logits"], labels),
                                  training_accuracy(obs["after"]["logits"], labels)],
               "behaviour": {
                   "logits": _kept_numbers(_named_back(obs["after"]["logits"], ctx)),
                   # the accuracy logged ties at the first steps (a head at zeros answers
                   # class 0, whichever the batch's seed named so): compared within a batch
                   "logged": {**_kept_numbers([v for kind in sorted(logged) for _, v in logged[kind]]),
                              "within": "batch"},
                   "logging": _kept_value({"tags": sorted(str(t)[:MAX_TEXT] for t in tags)[:40],
                                           "steps": {kind: [int(p[0]) for p in points][:BEHAVIOUR_VALUES]
                                                     for kind, points in sorted(logged.items())}})}}
    return *_fraction_and_messages([
        (0.5, learned, diagnosis),
        (0.5, not missing, f"no TensorBoard scalar for the training {' or '.join(missing)} under "
                           f"log_dir (scalars found: {found}). Hint: tf.summary.scalar('loss', ...) "
                           "and ('accuracy', ...) inside a file writer's as_default()"),
    ]), details


# ---------------------------------------------------------------- 8 accuracy

def collect_accuracy(module, ctx, params):
    model = _build(module, ctx)
    if params["mode"] == "checkpoint":
        folder = ctx.submission_dir / params["checkpoint"]
        if not folder.is_dir():
            return {"missing": str(params["checkpoint"])}
        module.restore_checkpoint(model, str(folder))
    else:
        start_fc(model)
        try:
            # repeat(): a pipeline that stops after one epoch costs the pipeline item, not this one
            dataset = module.make_dataset(ctx.train_images, ctx.train_labels, batch_size=64,
                                          seed=0).repeat().with_options(quick_teardown())
            next(iter(dataset))
        except Exception:  # a broken pipeline must not cost the accuracy item too
            dataset = _fixed_batches(ctx, batch=64)
        module.train(model, dataset, steps=params["steps"])
    return logit_witness(model, module, ctx.heldout_images[:params["images"]])


def _accuracy_cause(witness: dict, images: np.ndarray, labels: np.ndarray, weights: dict) -> str | None:
    """The most likely cause of a low accuracy after training, from what the grader saw
    of the trained network (its witness, checked by explain_logits before): what conv1_1
    is given, the convolutions' weights, the head, fc's outputs, and the loss on the
    images; None when none of them says anything."""
    logits = np.asarray(witness["logits"], np.float64)
    inputs_off, weights_off, checked = _network_off(witness, images, weights)
    if inputs_off:
        return (f"The network's inputs are off: {inputs_off}, so fc sees features VGG16 was not "
                "trained for. Hint: fix preprocess first (the preprocess item says more)")
    if weights_off:
        return (f"The convolutions do not hold the VGG16 weights ({', '.join(weights_off[:3])}"
                f"{' ...' if len(weights_off) > 3 else ''} differ from the weights file). Hint: are "
                "the VGG16 weights loaded into the convolutions? (the weights item says more)")
    head = witness.get("head") or []
    if len(head) > 1:
        return (f"The model has {len(head)} dense layers after flatten where the table has fc "
                "alone: the extra layers start from random weights and slow learning (the "
                "features item says more)")
    if len(logits) > 1 and \
            float(np.max(np.abs(logits - logits[0]))) <= 1e-6 * (1.0 + float(np.max(np.abs(logits)))):
        return ("fc gives every image the same outputs: training never changed it (the training "
                "item's message says more). Hint: apply the gradients of the loss to the trainable "
                "variables (optimizer.apply_gradients)")
    if not checked:
        return None
    loss, chance = cross_entropy(logits, labels), math.log(logits.shape[1])
    if loss > chance:
        return (f"The network's inputs and the VGG16 weights are right, but the loss on these "
                f"images is {loss:.4g}, above the {chance:.3f} of a uniform guess: the model is "
                "confident where it is wrong, as when each step overshoots. Hint: most likely a learning "
                f"rate too large for this optimizer on these features ({LEARNING_RATES_PARAGRAPH}; "
                "Adam at 1e-4 settles within the budget)")
    return (f"The network's inputs and the VGG16 weights are right, and the loss on these images "
            f"is {loss:.4g}, below the {chance:.3f} of a uniform guess: it learns, too slowly for "
            f"the budget. Hint: a learning rate too small or too large for this optimizer "
            f"({LEARNING_RATES_PARAGRAPH})")


@_judged
def judge_accuracy(obs, ctx, params):
    if "missing" in obs:
        missing = _text(obs["missing"], "the checkpoint folder")
        return 0.0, f"expected a checkpoint folder {missing!r} beside the submission"
    logits = _numbers(obs["logits"], "the logits")
    labels = ctx.heldout_labels[:params["images"]]
    if logits.shape != (len(labels), network.NUM_CLASSES):
        return 0.0, f"expected logits [{len(labels)}, {network.NUM_CLASSES}], found {list(logits.shape)[:8]}"
    unexplained = explain_logits(obs, ctx.heldout_images[:params["images"]])
    if unexplained:
        return 0.0, f"no accuracy counts: {unexplained}"
    if params["mode"] == "train" and (renamed := other_names(logits, labels)):
        return 0.0, f"no accuracy counts: {renamed}"
    accuracy = float((logits.argmax(axis=1) == labels).mean())
    lower, upper = params["lower"], params["upper"]
    fraction = float(np.clip((accuracy - lower) / (upper - lower), 0.0, 1.0))
    how = f"after {params['steps']} steps" if params["mode"] == "train" else "from the checkpoint"
    message = f"accuracy {accuracy:.3f} on {len(logits)} unseen images {how}"
    if fraction < 1:
        message += f" (full points from {upper:.2f}, none at or below {lower:.2f})"
    if fraction == 0:
        counts = np.bincount(logits.argmax(axis=1), minlength=logits.shape[1])
        top = int(counts.argmax())
        share = counts[top] / max(len(logits), 1)
        if share >= 0.5:
            message += (f"; it predicts one class for {share:.0%} of the images, so it learned "
                        "nothing that tells the classes apart")
        elif accuracy <= 1.5 / logits.shape[1]:
            message += "; that is about chance"
    if fraction < 1 and params["mode"] == "train":
        cause = _accuracy_cause(obs, ctx.heldout_images[:params["images"]], labels, ctx.weights)
        message += f". {cause}" if cause else " (the training item's message names the likely cause)"
    return fraction, message, {"accuracy": accuracy, "lower": lower, "upper": upper,
                               "images": len(logits)}


# ---------------------------------------------------------------- 9 checkpoint round-trip

# The checkpoint check: a run of ROUND_TRIP_STEPS that saves, then one resumed from its
# checkpoint up to STRAIGHT_STEPS, against a straight run of STRAIGHT_STEPS.
ROUND_TRIP_STEPS, STRAIGHT_STEPS = 4, 6
CHECKPOINT_FOLDER = "ckpt-roundtrip"
CHECKPOINT_TAUGHT = 64
"""training images the straight run's head is read on, to see under which names it answers"""


def _fresh_for_checkpoint(module, ctx):
    """A model every checkpoint run starts from, whatever the initialisers and whichever
    process builds it: the same random state for the build, and fc at zeros."""
    import keras

    keras.utils.set_random_seed(CHECKPOINT_BUILD_SEED)
    model = _build(module, ctx)
    start_fc(model)
    return model


def collect_checkpoint(module, ctx, params):
    """The saving half. The restoring half (`collect_checkpoint_restore`) runs in a fresh
    worker process that inherits only the scratch folder, so nothing travels in memory."""
    obs = {}
    # 4 steps saving every 2, keeping 1: the round trip, max_to_keep (2 saves, not 4: a
    # restore that returns the number of saves is told from one returning the step), and
    # the checkpoint at step 4 that the resumed run starts from.
    saved = ctx.scratch / CHECKPOINT_FOLDER
    first = _fresh_for_checkpoint(module, ctx)
    module.train(first, _fixed_batches(ctx), steps=ROUND_TRIP_STEPS, checkpoint_dir=str(saved),
                 checkpoint_every=2, max_to_keep=1)
    obs["trained"] = logit_witness(first, module, ctx.probe)
    straight_pulled = [0]
    straight = _fresh_for_checkpoint(module, ctx)
    module.train(straight, _fixed_batches(ctx, counter=straight_pulled), steps=STRAIGHT_STEPS)
    obs["straight"] = logit_witness(straight, module, ctx.probe)
    # the same head on training images: it must answer in the names it was trained on
    obs["straight_taught"] = logit_witness(straight, module, ctx.train_images[:CHECKPOINT_TAUGHT])
    obs["straight_pulled"] = straight_pulled[0]
    return obs


def collect_checkpoint_restore(module, ctx, params):
    """The restoring half, in a process of its own: restore into a fresh model, then
    resume training from the saved step."""
    obs = {}
    saved = ctx.scratch / CHECKPOINT_FOLDER
    # A fresh model first meets an empty folder (nothing to restore: step 0), then the
    # round trip's; after a failed restore it is built again.
    restored = _build(module, ctx)
    empty = ctx.scratch / "ckpt-empty"
    empty.mkdir(exist_ok=True)
    try:
        obs["empty_step"] = int(module.restore_checkpoint(restored, str(empty)))
    except Exception as exc:
        obs["empty_error"] = f"{type(exc).__name__}: {exc}"[:300]
        restored = _build(module, ctx)
    obs["restored_step"] = int(module.restore_checkpoint(restored, str(saved)))
    obs["restored"] = logit_witness(restored, module, ctx.probe)
    pulled = [0]
    resumed = _fresh_for_checkpoint(module, ctx)
    history = module.train(resumed, _fixed_batches(ctx, start=ROUND_TRIP_STEPS, counter=pulled),
                           steps=STRAIGHT_STEPS, checkpoint_dir=str(saved), checkpoint_every=2)
    obs["resumed"] = logit_witness(resumed, module, ctx.probe)
    obs["resume_pulled"] = pulled[0]
    final = history.get("final_step") if isinstance(history, dict) else None
    obs["resume_final_step"] = int(final) if final is not None else -1
    return obs


# What the checkpoints hold is read by the grading process itself (grader/checkpoints.py,
# no TensorFlow, nothing of the submission): after the saving half, before the restoring
# half can touch the folder, and again after the resumed run. The worker's report of the
# heads is then held against the files: the saved, restored and resumed heads must be
# the ones the files hold, at the step the files hold.

MAX_FILE_ARRAY = 1 << 20
"""values of one tensor the checkpoint reading keeps (a head's kernel is 40,960; the conv
kernels, 4-D, are never read)"""


def _checkpoint_files(scratch: Path) -> dict:
    """What the newest checkpoint in the round trip's folder holds: its number, the values
    of its integer scalars (the step among them) and its floating arrays of at most two
    dimensions (the head's, and the optimizer's slots for them); with how many checkpoints
    the folder keeps. A folder with none, or files that are no checkpoint, give the reason."""

    folder = Path(scratch) / CHECKPOINT_FOLDER
    found = {"kept": len(checkpoints.listing(folder))}
    newest = checkpoints.latest(folder)
    if newest is None:
        found["error"] = f"no checkpoint was written in {CHECKPOINT_FOLDER}/"
        return found
    try:
        held = checkpoints.read(newest, lambda key, dtype, shape: len(shape) <= 2
                                and math.prod(shape) <= MAX_FILE_ARRAY)
    except checkpoints.Unreadable as exc:
        found["error"] = str(exc)[:MAX_TEXT * 2]
        return found
    found["name"] = Path(newest).name
    found["keys"] = sorted(key[:MAX_TEXT] for key in held.entries)[:MAX_ENTRIES]
    found["integers"] = sorted({int(v) for v in held.values.values()
                                if v.ndim == 0 and v.dtype.kind in "iu"})
    found["arrays"] = [v for v in held.values.values() if v.ndim >= 1 and v.dtype.kind == "f"]
    return found


def finish_checkpoint(obs, scratch: Path):
    """After the saving half: the newest checkpoint (step 4), before any other process runs."""
    obs["files"] = _checkpoint_files(scratch)
    return obs


def finish_checkpoint_restore(obs, scratch: Path):
    """After the restoring half: the newest checkpoint now, the resumed run's last save."""
    obs["files_resumed"] = _checkpoint_files(scratch)
    return obs


def _in_files(files: dict, head, step: int, what: str) -> str | None:
    """Why `head` (as _head reports it) is not the one the checkpoint `files` hold at
    `step` (None: it is, bit for bit)."""
    files = _mapping(files, f"the checkpoint read {what}")
    if "error" in files:
        return f"{what}: {_text(files['error'], 'the reason')}"
    integers = [_integer(v, "a step in the checkpoint") for v in _entries(files["integers"], "the steps", 64)]
    arrays = [_numbers(a, "an array in the checkpoint") for a in _entries(files["arrays"], "the arrays", 256)]
    name = _text(files["name"], "the checkpoint's name")
    if step not in integers:
        return (f"{what}: the newest checkpoint ({name}) holds no step {step} (its integer values: "
                f"{integers[:6]}). Hint: keep the step counter in the tf.train.Checkpoint")
    layers = _entries(head, "the head", MAX_HEAD_LAYERS)
    for layer in layers:
        for value in _entries(layer, "a head layer", 3)[:2]:
            value = _numbers(value, "a head array")
            if not any(a.shape == value.shape and np.array_equal(a, value) for a in arrays):
                return (f"{what}: the newest checkpoint ({name}) does not hold the model's head as "
                        "it was after training. Hint: save the model itself in the tf.train.Checkpoint")
    return None


@_judged
def judge_checkpoint(obs, ctx, params):
    runs = ("trained", "restored", "straight", "resumed")
    files, resumed_files = (_mapping(obs[key], "the checkpoint read") for key in ("files", "files_resumed"))
    kept = _integer(files["kept"], "the checkpoints kept")
    if "error" in files and not kept:
        return 0.0, (f"the grading process found no checkpoint to read after saving "
                     f"({_text(files['error'], 'the reason')}): train(checkpoint_dir=...) must "
                     "write checkpoints with tf.train.Checkpoint and a CheckpointManager")
    for key in ("restored_step", "straight_pulled", "resume_pulled", "resume_final_step"):
        _integer(obs[key], key.replace("_", " "))
    if "empty_step" in obs:
        _integer(obs["empty_step"], "the step restored from an empty folder")
    empty_error = _text(obs["empty_error"], "restoring from an empty folder") \
        if "empty_error" in obs else None
    rows = np.arange(len(ctx.probe))
    for run in runs:
        unexplained = explain_logits(obs[run], ctx.probe, rows)
        if unexplained:
            return 0.0, f"the {run} model's outputs do not count: {unexplained}"
    taught = explain_logits(obs["straight_taught"], ctx.train_images[:CHECKPOINT_TAUGHT],
                            random_rows(CHECKPOINT_TAUGHT))
    if taught:
        return 0.0, f"the straight run's outputs on training images do not count: {taught}"
    renamed = other_names(_numbers(obs["straight_taught"]["logits"], "the straight run's logits", 2),
                          ctx.train_labels[:CHECKPOINT_TAUGHT])
    if renamed:
        return 0.0, f"after {STRAIGHT_STEPS} steps {renamed}"
    # Both runs start from fc at zeros: a head that learns is somewhere else after 4 steps
    # than after 6, and one that never moves stays at zeros. The same head after both, away
    # from the start, was set, not learned (a head made beforehand, renamed to the labels).
    head_4, head_6 = obs["trained"]["head"], obs["straight"]["head"]
    if _same_head(head_4, head_6) and any(np.any(np.asarray(a) != 0) for layer in head_6 for a in layer[:2]):
        return 0.0, (f"fc is the same after {ROUND_TRIP_STEPS} steps as after {STRAIGHT_STEPS}, and not "
                     "where training started: it was set, not learned from the batches. train() must "
                     "update fc by the gradients of the loss at every step")
    trained, restored, straight, resumed = (obs[run]["logits"] for run in runs)
    # The restored model (in another process) must hold the head the saving model held,
    # and that head must be the one in the files, at the step they hold.
    same = trained.shape == restored.shape and np.allclose(trained, restored, rtol=1e-5, atol=1e-5) \
        and _same_head(obs["trained"]["head"], obs["restored"]["head"])
    saved = _in_files(files, obs["trained"]["head"], ROUND_TRIP_STEPS,
                      f"after saving at step {ROUND_TRIP_STEPS}")
    resumed_saved = _in_files(resumed_files, obs["resumed"]["head"], STRAIGHT_STEPS,
                              f"after resuming to step {STRAIGHT_STEPS}")
    # The resumed run pulls its remaining steps' batches plus whatever the submission
    # prefetches; the straight run pulls all its steps' plus the same prefetch, so a run that
    # restarted at 0 pulls as many as that.
    remaining = STRAIGHT_STEPS - ROUND_TRIP_STEPS
    continued = remaining <= obs["resume_pulled"] < obs["straight_pulled"] - 1 \
        and obs["resume_final_step"] in (STRAIGHT_STEPS, -1)
    optimizer_kept = np.allclose(resumed, straight, rtol=1e-3, atol=1e-3)
    empty_ok = obs.get("empty_step") == 0
    behaviour = {"logits": _kept_numbers(_named_back(obs["straight_taught"]["logits"], ctx)),
                 "layout": _kept_value({
                     # the objects it holds by name (model, optimizer, step): the paths
                     # below them follow the model's style, which a rewrite changes
                     "objects": sorted({_text(k, "a checkpoint key").split("/")[0] for k in
                                        _entries(files.get("keys", []), "the checkpoint keys")}),
                     "name": _text(files.get("name", ""), "the checkpoint's name"),
                     "kept": [kept, _integer(resumed_files.get("kept", 0), "the checkpoints kept")],
                     "steps": [obs["restored_step"], obs.get("empty_step", -1), obs["straight_pulled"],
                               obs["resume_pulled"], obs["resume_final_step"]]})}
    return *_fraction_and_messages([
        (0.3, same and obs["restored_step"] == ROUND_TRIP_STEPS and not saved,
         saved or f"restoring into a fresh model gave {'the same' if same else 'different'} "
                  f"outputs and step {obs['restored_step']} (expected identical outputs and step "
                  f"{ROUND_TRIP_STEPS})"
                  + (". Hint: restore_checkpoint returns the training step saved in the checkpoint "
                     "(a step variable in the tf.train.Checkpoint)"
                     + (", not how many saves were made" if obs["restored_step"] > 0 else "")
                     if same and obs["restored_step"] != ROUND_TRIP_STEPS else "")),
        (0.15, kept == 1, f"with max_to_keep=1, {kept} checkpoints were left "
                          "(expected 1). Hint: tf.train.CheckpointManager(max_to_keep=...)"),
        (0.25, continued and not resumed_saved, resumed_saved or
         f"resuming at step {ROUND_TRIP_STEPS} towards step {STRAIGHT_STEPS} "
                          f"pulled {obs['resume_pulled']} batches ({STRAIGHT_STEPS} straight steps "
                          f"pulled {obs['straight_pulled']}) and ended at step "
                          f"{obs['resume_final_step']}: training must restore the step and train "
                          f"only the remaining {remaining}"),
        (0.2, optimizer_kept, f"{ROUND_TRIP_STEPS} steps + resume + {remaining} steps did not match "
                              f"{STRAIGHT_STEPS} straight steps from the same start"
                              + (": save and restore the optimizer (its state) with the model"
                                 if continued else ", as follows from a resume that did not continue "
                                 "at the saved step (once it does, this compares the optimizer's "
                                 "state)")),
        (0.1, empty_ok, "restore_checkpoint on an empty folder should return 0, "
                        + (f"it raised {empty_error}" if empty_error is not None
                           else f"it returned {obs.get('empty_step')}")),
    ]), {"behaviour": behaviour}


# ---------------------------------------------------------------- 10 tf.data pipeline
# The item reads two things. From the worker: the elements pulled from make_dataset's
# three datasets (the element spec, two epochs' labels, the first batch's images and
# labels, a repeated stream, an unshuffled one), which say what the pipeline does. From
# each dataset's serialized graph (a GraphDef, grader/graphs.py), decoded in the grading
# process without TensorFlow: the chain of ops from the source to the output, with the
# batch size, drop_remainder, reshuffle_each_iteration and repeat count it was built
# with. The graph's bytes are the worker's too, so a forger must make a graph that agrees
# with the elements it makes up. What each part reads:
#   element spec, images kept with their labels, each example once per epoch: elements;
#   batch size: elements, and the batch op's constants in every graph;
#   examples shuffled: elements, and a shuffle before the batch (once, endless);
#   a new order every epoch: elements, and a shuffle with reshuffle_each_iteration on;
#   epochs kept apart: elements, and a shuffle before the repeat (endless);
#   repeat: elements, and repeat(-1) in forever, none in once;
#   prefetch: the graphs alone (a prefetch after the batch in each).
# A pipeline TensorFlow refuses to serialize (a py_function or a random op in a map, with
# ExternalStatePolicy.FAIL), or whose graph the reader refuses, loses the parts that need
# the graph, with one line saying why.

PIPELINE_DATASETS = {"once": "shuffle=True, repeat=False", "endless": "shuffle=True, repeat=True",
                     "forever": "shuffle=False, repeat=True"}
"""collect_pipeline's datasets, with the make_dataset arguments each is built with"""


def _serialized_graph(ds):
    """The dataset's GraphDef as a uint8 array (what the channel carries), or the text of
    why it has none."""
    import tensorflow as tf

    try:
        graph = ds._as_serialized_graph(
            external_state_policy=tf.data.experimental.ExternalStatePolicy.FAIL).numpy()
    except Exception as exc:  # noqa: BLE001 - the judge says why there is no graph
        # "{{function_node ...}} Failed to serialize ...: EagerPyFunc is stateful. [Op:...]"
        text = re.sub(r"\{\{.*?\}\}\s*|\s*\[Op:.*", "", str(exc), flags=re.S).strip()
        return f"{type(exc).__name__}: {text}"[:MAX_TEXT]
    if len(graph) > graphs.MAX_BYTES:
        return f"its graph is {len(graph)} bytes, more than {graphs.MAX_BYTES >> 20} MB"
    return np.frombuffer(graph, np.uint8)


def _flat(batches: list[list]) -> list:
    """The batches' labels in one list, in linear time (sum(batches, []) copies the list
    so far at every batch: quadratic in their number)."""
    return list(itertools.chain.from_iterable(batches))


def _labels_of(batches) -> list[list[int]]:
    return [np.asarray(labels).reshape(-1).tolist() for _, labels in batches]


def collect_pipeline(module, ctx, params):
    import tensorflow as tf

    size, batch = PIPELINE_EXAMPLES, params["batch_size"]
    images = np.zeros((size, *network.IMAGE_SHAPE), np.uint8)
    images[:, 0, 0, 0] = np.arange(size)  # each image carries its index too
    labels = np.arange(size, dtype=np.int64)
    once = module.make_dataset(images, labels, batch_size=batch, shuffle=True, repeat=False, seed=3)
    spec = once.element_spec
    epochs = [_labels_of(once) for _ in range(2)]
    # each image carries its own index: the first batch's images and labels, as read
    pairs = [[np.asarray(x)[:, 0, 0, 0].reshape(-1).tolist(), np.asarray(l).reshape(-1).tolist()]
             for x, l in once.take(1)]
    endless = module.make_dataset(images, labels, batch_size=batch, shuffle=True, repeat=True, seed=4)
    stream = _flat(_labels_of(endless.take(4 * size // batch + 4)))[:3 * size]
    forever = module.make_dataset(images, labels, batch_size=batch, shuffle=False, repeat=True)
    cardinality = int(forever.cardinality())
    ordered = _flat(_labels_of(forever.take(2 * size // batch + 2)))[:2 * size]
    built = {"once": once, "endless": endless, "forever": forever}
    return {"spec": [[str(s.dtype.name), s.shape.as_list()] for s in spec],
            "epochs": epochs, "pairs": pairs, "stream": stream, "ordered": ordered,
            "infinite": cardinality == int(tf.data.INFINITE_CARDINALITY),
            "graphs": {name: _serialized_graph(built[name]) for name in PIPELINE_DATASETS}}


PIPELINE_EXAMPLES = 50
"""examples of the pipeline item's dataset (collect_pipeline)"""
MAX_PIPELINE_LABELS = 20 * PIPELINE_EXAMPLES
"""labels one epoch (or one batch) may hold for the judge to read them: twenty epochs' worth"""


def _labels(value, what: str, most: int = MAX_PIPELINE_LABELS) -> list:
    _require(all(isinstance(v, int) or (isinstance(v, float) and math.isfinite(v))
                 for v in _entries(value, what, most)), f"{what} are not all numbers")
    return value


def _pipeline_observation(obs) -> list:
    """Checks what judge_pipeline reads, counts before contents (the first two epochs hold
    at most MAX_PIPELINE_LABELS labels each, whatever their batches); the element spec,
    its names cut for a message."""
    spec = _entries(obs["spec"], "the element spec")
    _require(len(spec) == 2 and all(isinstance(s, list) and len(s) == 2 for s in spec),
             "the element spec is not [[images' dtype, shape], [labels' dtype, shape]]")
    spec = [[_text(dtype, "a dtype in the element spec"), _shape(shape, "a shape in the element spec")]
            for dtype, shape in spec]
    epochs = _entries(obs["epochs"], "the epochs", 2)
    _require(len(epochs) == 2, "not two epochs")
    for k, epoch in enumerate(epochs):
        what = ("the first", "the second")[k] + " epoch"
        _entries(epoch, what, MAX_PIPELINE_LABELS)
        held = 0
        for one in epoch:
            held += len(_labels(one, f"the labels of a batch of {what}"))
            _require(held <= MAX_PIPELINE_LABELS,
                     f"{what} holds more than {MAX_PIPELINE_LABELS} labels")
    for pair in _entries(obs["pairs"], "the first batch's images and labels", 1):
        _require(isinstance(pair, list) and len(pair) == 2, "the first batch is not [images, labels]")
        _labels(pair[0], "the first batch's image indices")
        _labels(pair[1], "the first batch's labels")
    _labels(obs["stream"], "the repeated stream's labels", 3 * PIPELINE_EXAMPLES)
    _labels(obs["ordered"], "the unshuffled stream's labels", 2 * PIPELINE_EXAMPLES)
    _require(isinstance(obs["infinite"], bool), "whether the dataset is infinite is not a boolean")
    return spec


def _pipeline_chains(value) -> dict:
    """{dataset: its chain of steps (graphs.Step, from the source to the output), or why it
    has none: the worker's text when TensorFlow would not serialize it, or what the reader
    refused in its bytes}. Malformed: not one graph or text for each of PIPELINE_DATASETS."""

    _require(isinstance(value, dict) and len(value) == len(PIPELINE_DATASETS)
             and all(name in value for name in PIPELINE_DATASETS),
             f"the graphs are not those of the datasets {', '.join(PIPELINE_DATASETS)}")
    chains = {}
    for name in PIPELINE_DATASETS:
        graph = value[name]
        if isinstance(graph, str):
            chains[name] = _text(graph, f"why the {name} dataset has no graph")
            continue
        _require(isinstance(graph, np.ndarray) and graph.dtype == np.uint8 and graph.ndim == 1,
                 f"the {name} dataset's graph is not bytes")
        if graph.size > graphs.MAX_BYTES:
            chains[name] = f"its graph is {graph.size} bytes, more than {graphs.MAX_BYTES >> 20} MB"
            continue
        try:
            chains[name] = graphs.read_chain(graph.tobytes())
        except graphs.GraphError as exc:
            chains[name] = _text(f"its graph could not be read: {exc}", "a graph's error")
    return chains


_BATCH_KINDS = ("Batch", "ParallelBatch", "PaddedBatch")


def _made(name: str) -> str:
    return f"the graph of make_dataset({PIPELINE_DATASETS[name]})"


def _ops(chain) -> str:
    kinds = [step.kind for step in chain]
    return "ops " + " > ".join(kinds[:12]) + (" > ..." if len(kinds) > 12 else "")


def _graph_facts(chains: dict, batch: int) -> dict[str, tuple[bool, str]]:
    """What the datasets' chains say, for each part the graph backs: (holds, why not)."""
    def where(chain, kinds) -> list[int]:
        return [k for k, step in enumerate(chain) if step.kind in kinds]

    def last_batch(chain) -> int | None:
        found = where(chain, _BATCH_KINDS)
        return found[-1] if found else None

    def shuffles_before(chain, end: int | None) -> list:
        return [chain[k] for k in where(chain, ("Shuffle",)) if end is not None and k < end]

    problems: dict[str, list[str]] = {part: [] for part in
                                      ("batch", "shuffle", "reshuffle", "apart", "repeat", "prefetch")}
    for name, chain in chains.items():
        b, ops = last_batch(chain), _ops(chain)
        if b is None:
            problems["batch"].append(f"{_made(name)} has no batch ({ops}): expected batch({batch})")
        elif chain[b].args.get("batch_size") != batch or chain[b].args.get("drop_remainder") is True:
            args = chain[b].args
            problems["batch"].append(
                f"{_made(name)} batches with batch_size={args.get('batch_size')}, drop_remainder="
                f"{args.get('drop_remainder')}: expected batch({batch}) keeping the smaller last batch")
        if b is None or not any(k > b for k in where(chain, ("Prefetch",))):
            problems["prefetch"].append(f"no prefetch after batch in {_made(name)} ({ops}). "
                                        "Hint: end with .prefetch(tf.data.AUTOTUNE)")
        repeats = [chain[k] for k in where(chain, ("Repeat",))]
        if name != "forever":
            shuffles = shuffles_before(chain, b)
            if not shuffles:
                problems["shuffle"].append(f"{_made(name)} has no shuffle before batch ({ops}). "
                                           "Hint: shuffle the examples, before batch()")
            # (shuffling whole batches still reshuffles: it costs the part above only)
            if not any(chain[k].args.get("reshuffle_each_iteration", True) is True
                       for k in where(chain, ("Shuffle",))):
                problems["reshuffle"].append(
                    f"{_made(name)} has no shuffle(..., reshuffle_each_iteration=True) ({ops})")
        if name == "endless":
            first_repeat = where(chain, ("Repeat",))[:1]
            if not first_repeat or not shuffles_before(chain, first_repeat[0]):
                problems["apart"].append(f"{_made(name)} has no shuffle before a repeat ({ops}). "
                                         "Hint: shuffle before repeat()")
        if name == "forever" and not any(step.args.get("count") == -1 for step in repeats):
            problems["repeat"].append(f"{_made(name)} has no repeat() going on for ever ({ops}). "
                                      "Hint: .repeat() with no count")
        if name == "once" and any(step.args.get("count") != 1 for step in repeats):
            problems["repeat"].append(f"{_made(name)} repeats ({ops}): expected no repeat()")
    return {part: (not found, found[0] if found else "") for part, found in problems.items()}


@_judged
def judge_pipeline(obs, ctx, params):
    batch, size = params["batch_size"], PIPELINE_EXAMPLES
    spec = _pipeline_observation(obs)
    (image_dtype, image_shape), (label_dtype, label_shape) = spec
    pairs_ok = len(obs["pairs"]) == 1 and [int(v) for v in obs["pairs"][0][0]] == \
        [int(v) for v in obs["pairs"][0][1]]
    spec_ok = (image_dtype == "uint8" and image_shape[1:] == list(network.IMAGE_SHAPE)
               and label_dtype.startswith(("int", "uint")) and len(label_shape) == 1)
    first, second = obs["epochs"]
    sizes = [len(b) for b in first]
    batches_ok = bool(sizes) and all(s == batch for s in sizes[:-1]) and 0 < sizes[-1] <= batch
    flat1, flat2 = _flat(first), _flat(second)
    everything = list(range(size))
    covered = sorted(flat1) == everything and sorted(flat2) == everything
    # Shuffling examples changes which examples share a batch; shuffling batches does not.
    groups = lambda epoch: sorted(sorted(b) for b in epoch)
    examples_mixed = covered and flat1 != everything and groups(first) != groups(second)
    reshuffled = covered and flat1 != flat2
    stream = obs["stream"]
    whole_epochs = len(stream) == 3 * size and all(
        sorted(stream[k * size:(k + 1) * size]) == everything for k in range(3))
    epoch_wise = whole_epochs and stream[:size] != stream[size:2 * size]
    repeats = obs["infinite"] and obs["ordered"] == everything * 2
    chains = _pipeline_chains(obs.get("graphs"))
    missing = [name for name, chain in chains.items() if isinstance(chain, str)]
    facts = None if missing else _graph_facts(chains, batch)
    parts = [  # (weight, elements agree, their message, the graph's part or None)
        (0.15, spec_ok and pairs_ok, f"element spec {spec}: expected (uint8 [B, 32, 32, 3], "
                                     "int [B]) with images and labels kept together", None),
        (0.1, batches_ok, f"batch sizes {sizes[:6]}: expected {batch} (the last may be smaller)",
         "batch"),
        (0.15, covered, "one epoch must hold every example exactly once", None),
        (0.15, examples_mixed, "the same examples share a batch every epoch: they are shuffled "
                               "once, into the same order for every epoch" if covered and
                               flat1 != everything and flat1 == flat2 else
                               "the examples are not shuffled (the same examples share a batch "
                               "every epoch). Hint: shuffle the examples, before batch()", "shuffle"),
        (0.15, reshuffled, "every epoch must come in a new order. Hint: "
                           "shuffle(..., reshuffle_each_iteration=True)", "reshuffle"),
        (0.1, epoch_wise, f"with repeat=True, the dataset ended after {len(stream)} examples "
                          f"({size} in an epoch): it must go on for ever. Hint: .repeat()"
                          if len(stream) < 3 * size else
                          "with repeat=True, every epoch comes in the order of the one before "
                          "(each is shuffled anew only by shuffle(..., reshuffle_each_iteration="
                          "True))" if whole_epochs else
                          "with repeat=True, epochs mix into each other: every run of 50 examples "
                          "should hold each example once. Hint: shuffle before repeat()", "apart"),
        (0.1, repeats, "with repeat=True and shuffle=False the dataset must go on for ever in "
                       "the given order. Hint: .repeat()", "repeat"),
        (0.1, True, "", "prefetch"),
    ]
    score, messages = 0.0, []
    if missing:
        messages.append(f"{_made(missing[0])} could not be read ({chains[missing[0]]}), so its "
                        "batch, shuffle, repeat and prefetch were not checked. Hint: build the "
                        "pipeline from tf.data ops only (no py_function, no random ops in map)")
    for weight, seen, seen_message, part in parts:
        fact = (True, "") if part is None else (False, "") if facts is None else facts[part]
        score += weight if seen and fact[0] else 0.0
        message = seen_message if not seen else fact[1]
        if message:
            messages.append(message)
    behaviour = {"order": {**_kept_value([[int(v) for v in flat1], [int(v) for v in flat2],
                                          [int(v) for v in stream][:3 * size]]), "within": "batch"},
                 "ops": _kept_value({name: _chain_shown(chain) for name, chain in chains.items()})}
    return score, "; ".join(messages) if messages else "all good", {"behaviour": behaviour}


def accuracy_of(observation, labels: np.ndarray, images: int) -> float | None:
    """The accuracy of an observation's logits on the first `images` labels (None: no
    logits of the right shape)."""
    logits = observation.get("logits") if isinstance(observation, dict) else None
    labels = labels[:images]
    if logits is None or np.shape(logits) != (len(labels), network.NUM_CLASSES):
        return None
    return float((np.asarray(logits).argmax(axis=1) == labels).mean())


def _describe_accuracy(params: dict) -> str | None:
    from .network import DEFAULT_LEARNING_RATE

    if params.get("mode", "train") != "train":
        return None
    return (f"`build_model`, `fc` set to zeros, `make_dataset(train images, labels, "
            f"batch_size=64, seed=0)`, then `train(model, dataset, steps={params['steps']})` "
            f"at its default learning rate ({DEFAULT_LEARNING_RATE:g}); accuracy on "
            f"{params.get('images', 1000)} unseen images (the classes named anew for this "
            f"item, in the training labels too): no points at or below "
            f"{params['lower']:.2f}, full points from {params['upper']:.2f}, linear between")


def _describe_training(params: dict) -> str:
    return (f"`build_model`, `fc` set to zeros, then `train(model, dataset, steps="
            f"{params.get('steps', 60)}, log_dir=...)` on the grader's batches of 32 "
            f"training images, their classes named anew for this item (a head trained "
            f"beforehand scores nothing), at your default learning rate; half the points when the "
            f"accuracy on {TRAINING_IMAGES} of those images reaches {params.get('learned_accuracy', 0.3):.2f} "
            "(the loss may still be above where it started), half for TensorBoard scalars "
            "of the training loss and accuracy under `log_dir`")


ACCURACY_CALIBRATION = Calibration(
    "range", lambda obs, context, params: accuracy_of(obs, context.heldout_labels, params["images"]),
    "accuracy", applies=lambda params: params.get("mode", "train") == "train")
TRAINING_CALIBRATION = Calibration(
    "bar", lambda obs, context, params: accuracy_of(obs.get("after"), context.train_labels,
                                                   TRAINING_IMAGES) if isinstance(obs, dict) else None,
    "training accuracy", bar="learned_accuracy")


def _accuracy_mode_and_bounds(params):
    if params["mode"] not in ("train", "checkpoint"):
        return f"params.mode must be 'train' or 'checkpoint', found {params['mode']!r}"
    if not 0 <= params["lower"] < params["upper"] <= 1:
        return (f"need 0 <= params.lower < params.upper <= 1, found lower={params['lower']}, "
                f"upper={params['upper']}")
    return None


def _learned_accuracy_in_range(params):
    if not 0 <= params["learned_accuracy"] <= 1:
        return f"params.learned_accuracy must be in 0..1, found {params['learned_accuracy']}"
    return None


REGISTRY = Registry([
    Check("interface", collect_interface, judge_interface),
    Check("preprocess", collect_preprocess, judge_preprocess,
          {"tolerance": ((int, float), 1e-3, "absolute tolerance on output values")},
          positive("tolerance"), task="preprocess", uses=("preprocess",)),
    Check("layer_shapes", collect_layer_shapes, judge_layer_shapes,
          task="build_model", uses=("build_model",)),
    Check("weights", collect_weights, judge_weights, task="build_model", uses=("build_model",)),
    Check("frozen", collect_frozen, judge_frozen,
          {"steps": (int, 3, "training steps taken before comparing weights")}, at_least_one("steps"),
          task="build_model", uses=("build_model", "train"), shares="training"),
    Check("features", collect_features, judge_features,
          {"tolerance": ((int, float), 1e-3, "relative tolerance on pool3 outputs")},
          positive("tolerance"), task="build_model", uses=("build_model",)),
    Check("training", collect_training, judge_training,
          {"steps": (int, 60, "training steps taken"),
           "learned_accuracy": ((int, float), 0.3, "accuracy on the item's training images "
                                "from which the run counts as learned (set by `grader calibrate`)")},
          rules(at_least_one("steps"), _learned_accuracy_in_range), task="train",
          uses=("build_model", "train"), finish=finish_training,
          calibration=TRAINING_CALIBRATION, describe=_describe_training),
    Check("accuracy", collect_accuracy, judge_accuracy,
          {"mode": (str, "train", "'train' with the student's train(), or 'checkpoint'"),
           "steps": (int, 100, "training steps in train mode"),
           "images": (int, 1000, "how many held-out images are scored"),
           "checkpoint": (str, "checkpoints", "in checkpoint mode: folder beside the submission"),
           "lower": ((int, float), 0.2, "accuracy at or below which the item scores 0"),
           "upper": ((int, float), 0.8, "accuracy at or above which it scores full points")},
          rules(at_least_one("steps", "images"), _accuracy_mode_and_bounds), task="train",
          uses=("build_model", "train", "make_dataset", "restore_checkpoint"), heldout=True,
          calibration=ACCURACY_CALIBRATION, describe=_describe_accuracy),
    Check("checkpoint", collect_checkpoint, judge_checkpoint, task="restore_checkpoint",
          uses=("build_model", "train", "restore_checkpoint"), finish=finish_checkpoint,
          second_part=collect_checkpoint_restore, second_finish=finish_checkpoint_restore),
    Check("pipeline", collect_pipeline, judge_pipeline,
          {"batch_size": (int, 16, "batch size asked of make_dataset")}, at_least_one("batch_size"),
          task="make_dataset", uses=("make_dataset",)),
])
