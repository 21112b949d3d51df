"""What the worker reports of how a model computes its logits: the layers it calls, in
order, with their variables (the witness that `explain` checks).
"""
from __future__ import annotations

import contextlib
import weakref

import numpy as np

from .common import CONV_LAYERS, FC, LAYER_SHAPES, MAX_CHAIN_LAYERS
from .model import _array, _conv_weights, _outputs, find_layer, kernel_and_bias


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


