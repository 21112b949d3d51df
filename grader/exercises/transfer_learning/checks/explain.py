"""The grading side's own account of a model's logits: the VGG front end computed in
numpy from the course's weights, and the reported head applied to it.
"""
from __future__ import annotations

import threading

import numpy as np

from .. import network
from .common import (
    CONV_LAYERS, FC, FEATURE_LAYERS, LAYER_ORDER, MAX_CHAIN_LAYERS, MAX_HEAD_LAYERS,
    MAX_HEAD_VALUES, MAX_OUTPUTS, MAX_TEXT, _array_list, _entries, _mapping, _numbers,
    _permutation, _require, _shape
)


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


