"""Check 10: the tf.data pipeline, read from the graph it builds and the batches it gives.
"""
from __future__ import annotations

import itertools
import math
import re

import numpy as np

from .... import graphs
from .. import network
from .common import MAX_TEXT, _chain_shown, _entries, _judged, _kept_value, _require, _shape, _text


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


