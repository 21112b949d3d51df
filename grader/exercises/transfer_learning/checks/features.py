"""Checks 5-6: frozen variables, and the pool3 features and logits against the grader's
own computation.
"""
from __future__ import annotations

import math

import numpy as np

from .common import (
    CONV_LAYERS, FC_PARAMS, FEATURE_LAYERS, IMAGENET_MEAN_RGB, LAYER_ORDER, LAYER_SHAPES,
    MAX_CHAIN_LAYERS, MAX_OUTPUTS, MAX_VARIABLES, _array_list, _entries, _fraction_and_messages,
    _integer, _judged, _mapping, _max_rel_diff, _numbers, _permutation, _require, _shape, _text
)
from .explain import TABLE_FRONT, _colour_transform, _front, vgg_front
from .model import (
    _array, _build, _chain, _conv_weights, _fc_variables, _fixed_batches, _outputs, find_layer,
    kernel_and_bias, probe_fc_arrays, start_fc
)
from .structure import _PREPROCESS_MISTAKES, preprocessing_mistake
from .witness import _flatten_order, _inputs_of, _layer_chain


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


