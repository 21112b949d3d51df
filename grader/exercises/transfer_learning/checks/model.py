"""The worker's access to a student's model: building it, its layers and variables, the
fixed batches the training items feed, and its outputs.
"""
from __future__ import annotations

import contextlib
import weakref

import numpy as np

from .. import network
from .common import CONV_LAYERS, FC, FC_PROBE_SEED, LAYER_ORDER, WorkerContext


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


