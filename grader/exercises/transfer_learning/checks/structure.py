"""Checks 1-4: the interface, the preprocessing, the layer shapes and the weights.
"""
from __future__ import annotations

import inspect

import numpy as np

from .. import network
from .common import (
    CONV_LAYERS, FC, IMAGENET_MEAN_RGB, LAYER_ORDER, LAYER_SHAPES, MAX_VARIABLES, SIGNATURES,
    _entries, _judged, _kept_numbers, _kept_value, _mapping, _numbers, _require, _shape, _text
)
from .model import _build, _chain, _conv_weights, _outputs, find_layer, layer_variables


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


