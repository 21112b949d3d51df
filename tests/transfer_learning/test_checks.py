"""The checks' own parts, on small hand-made inputs: how models are reached whatever
their style, and what the pipeline and summary judges accept and refuse."""
from __future__ import annotations


import numpy as np
import pytest

from grader.exercises.transfer_learning import checks


class _Ctx:
    train_labels = np.arange(256) % 10
    train_images = np.zeros((256, 32, 32, 3), np.uint8)
    weights: dict = {}


def test_variables_held_as_plain_tf_variables_are_found():
    """A custom layer with tf.Variable attributes has no Keras weights; are its kernel and
    bias still found, to read and to assign?"""
    import keras
    import tensorflow as tf

    class Conv(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.k = tf.Variable(np.ones((3, 3, 3, 4), np.float32), trainable=False)
            self.b = tf.Variable(np.zeros(4, np.float32), trainable=False)

        def call(self, x):
            return tf.nn.relu(tf.nn.conv2d(x, self.k, 1, "SAME") + self.b)

    layer = Conv(name="conv1_1")
    assert layer.weights == []  # what Keras itself reports
    kernel, bias = checks.model.kernel_and_bias(layer)
    assert tuple(kernel.shape) == (3, 3, 3, 4) and tuple(bias.shape) == (4,)
    kernel.assign(np.full((3, 3, 3, 4), 2.0, np.float32))
    assert float(layer.k.numpy().mean()) == 2.0


def test_nested_layers_are_found_by_name():
    import keras

    inner = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc")], name="head")
    outer = keras.Sequential([keras.Input((4,)), inner])
    assert checks.model.find_layer(outer, "fc") is inner.layers[0]
    assert checks.model.find_layer(outer, "nothing") is None


def _pipeline_obs(batches_per_epoch, stream=None, ordered=None):
    from test_graphs import honest_graphs

    everything = list(range(50))
    return {"spec": [["uint8", [None, 32, 32, 3]], ["int64", [None]]],
            "epochs": batches_per_epoch, "pairs": [[[0, 1], [0, 1]]],
            # by default the first epoch three times over: labels, as collect_pipeline sends them
            "stream": stream if stream is not None else
            [label for batch in batches_per_epoch[0] for label in batch] * 3,
            "ordered": ordered if ordered is not None else everything * 2,
            "infinite": True, "graphs": honest_graphs(16)}


def _shuffled_epoch(rng):
    order = rng.permutation(50).tolist()
    return [order[i:i + 16] for i in range(0, 50, 16)]


def test_pipeline_judge_accepts_shuffled_examples():
    rng = np.random.default_rng(0)
    first, second = _shuffled_epoch(rng), _shuffled_epoch(rng)
    stream = sum(first + second + _shuffled_epoch(rng), [])
    score, message, *_ = checks.pipeline.judge_pipeline(_pipeline_obs([first, second], stream), None,
                                           {"batch_size": 16})
    assert score == pytest.approx(1.0), message


def test_pipeline_judge_refuses_shuffled_batches():
    """Batches shuffled as wholes: new order every epoch, but the same examples together."""
    blocks = [list(range(i, min(i + 16, 50))) for i in range(0, 50, 16)]
    first, second = [blocks[2], blocks[0], blocks[3], blocks[1]], [blocks[1], blocks[3], blocks[0], blocks[2]]
    score, message, *_ = checks.pipeline.judge_pipeline(_pipeline_obs([first, second]), None, {"batch_size": 16})
    assert score < 1 and "the same examples share a batch" in message


def test_pipeline_judge_refuses_epochs_mixed_by_repeat_before_shuffle():
    rng = np.random.default_rng(1)
    first, second = _shuffled_epoch(rng), _shuffled_epoch(rng)
    mixed = rng.permutation(list(range(50)) * 3).tolist()
    score, message, *_ = checks.pipeline.judge_pipeline(_pipeline_obs([first, second], mixed), None,
                                           {"batch_size": 16})
    assert score < 1 and "epochs mix into each other" in message


@pytest.mark.parametrize("tags, ok", [
    (("loss", "accuracy"), True),
    (("epoch_loss", "epoch_accuracy"), True),                      # keras.callbacks.TensorBoard
    (("batch_loss", "batch_sparse_categorical_accuracy"), True),
    (("train/loss", "train/accuracy"), True),                      # one writer, tags with a run
    (("xent", "hits"), False),
    (("loss",), False),
])
def test_training_judge_reads_the_usual_summary_tags(tmp_path, tags, ok, monkeypatch):
    import tensorflow as tf

    monkeypatch.setattr(checks.training, "explain_logits", lambda *args: None)  # tested below

    writer = tf.summary.create_file_writer(str(tmp_path / "train"))
    with writer.as_default():
        for step in range(3):
            for tag in tags:
                tf.summary.scalar(tag, 1.0 / (step + 1), step=step)
    writer.flush()
    labels = _Ctx.train_labels
    learned = np.eye(10, dtype=np.float32)[labels] * 5
    obs = {"before": {"logits": np.zeros((256, 10), np.float32)}, "after": {"logits": learned},
           "log_dir": str(tmp_path)}
    obs = checks.training.finish_training(obs, tmp_path)  # what the engine does where the worker ran
    score, message, _ = checks.training.judge_training(obs, _Ctx(), {"steps": 3, "learned_accuracy": 0.5})
    assert (score == 1.0) == ok, message


def _logits_with_accuracy(labels: np.ndarray, accuracy: float, scale: float) -> np.ndarray:
    """Logits right on the first `accuracy` share of the images, wrong on the rest."""
    right = int(round(accuracy * len(labels)))
    predicted = np.concatenate([labels[:right], (labels[right:] + 1) % 10])
    return (np.eye(10, dtype=np.float32)[predicted] * scale).astype(np.float32)


@pytest.mark.parametrize("accuracy, scale, learned, says", [
    (0.40, 40.0, True, "loss 2.303 -> "),        # real images: the loss above its start, accuracy up
    (0.20, 40.0, False, "each step overshoots"),  # below the bar with the loss up: overshoot
    (0.20, 0.1, False, "too slowly for the budget"),
    (0.12, 0.01, False, "are the VGG16 weights loaded"),
])
def test_learning_is_the_accuracy_on_the_training_images_against_the_calibrated_bar(
        accuracy, scale, learned, says):
    labels = np.arange(200) % 10
    before = np.zeros((200, 10), np.float32)
    found, message = checks.training.learning_diagnosis(before, _logits_with_accuracy(labels, accuracy, scale),
                                               labels, 60, bar=0.3)
    assert found == learned and says in message, message
    assert f"0.10 -> {accuracy:.2f} (learned from 0.30)" in message


@pytest.mark.parametrize("causes, says, not_says", [
    ({"inputs_off": "the pixels were not multiplied by 255"}, "inputs are off: the pixels were not "
     "multiplied by 255", "learning rate"),
    ({"weights_off": ["conv1_1", "conv1_2"]}, "are the VGG16 weights loaded", "learning rate"),
    ({"checked": True}, "so the learning rate is too large", "inputs are off"),
    ({"checked": True, "logged_loss": [[0, 2.3], [5, 812.0], [59, 40.5]]},
     "overshoots (the loss it logged peaked at 812 at step 5 and ended at 40.5)", "inputs are off"),
    ({}, "most likely the network's inputs are off", "so the learning rate"),  # nothing read
])
def test_the_training_hint_names_what_the_grader_saw_of_the_network(causes, says, not_says):
    """Loss up, accuracy below the bar: the inputs conv1_1 is given, or the convolutions'
    weights, when they are off; the learning rate when both were read and are right."""
    labels = np.arange(200) % 10
    found, message = checks.training.learning_diagnosis(np.zeros((200, 10), np.float32),
                                               _logits_with_accuracy(labels, 0.2, 40.0), labels, 60,
                                               0.3, **causes)
    assert not found and says in message and not_says not in message, message


def test_an_accuracy_below_its_bounds_names_the_likely_cause():
    """What the trained network's witness shows: inputs off, weights off, one output for
    every image, else the loss on the images: above chance is overshooting (the learning
    rate), below it is learning too slowly."""
    from types import SimpleNamespace

    weights, images = _small_weights(), _images(40)
    labels = np.arange(40) % 10
    convs = {name: [weights[f"{name}_W"], weights[f"{name}_b"]] for name in checks.common.CONV_LAYERS}
    right = images.astype(np.float32) - checks.common.IMAGENET_MEAN_RGB
    wrong = (np.eye(10, dtype=np.float32)[(labels + 1) % 10] * 50)
    wrong[:8] = np.eye(10, dtype=np.float32)[labels[:8]] * 50  # 0.2 right, confidently wrong on the rest
    witness = {"logits": wrong, "inputs": right, "convs": convs, "head": [[0, 0, "linear"]]}
    unscaled = images / np.float32(255) - checks.common.IMAGENET_MEAN_RGB
    for changed, says in (({"inputs": unscaled}, "inputs are off: the pixels were not multiplied by 255"),
                          ({"convs": {**convs, "conv1_1": [convs["conv1_1"][0] * 0, convs["conv1_1"][1]]}},
                           "do not hold the VGG16 weights (conv1_1 differ"),
                          ({"logits": np.zeros((40, 10), np.float32)}, "fc gives every image the same outputs"),
                          ({}, "most likely a learning rate too large"),
                          ({"logits": wrong / 100}, "it learns, too slowly"),
                          ({"inputs": None}, None)):
        cause = checks.training._accuracy_cause({**witness, **changed}, images, labels, weights)
        assert (cause is None if says is None else says in cause), cause


def test_outputs_that_never_moved_name_the_missing_update():
    labels = np.arange(200) % 10
    found, message = checks.training.learning_diagnosis(np.zeros((200, 10)), np.zeros((200, 10)), labels, 60, 0.3)
    assert not found and "fc was never updated" in message


def test_a_sharing_check_runs_right_after_the_check_it_shares():
    from grader.rubric import Item

    items = [Item(name, name, 1, name) for name in
             ("interface", "frozen", "features", "training", "accuracy")]
    assert [i.id for i in checks.REGISTRY.run_order(items)] == \
        ["interface", "features", "training", "frozen", "accuracy"]
    alone = [i for i in items if i.id != "training"]
    assert checks.REGISTRY.run_order(alone) == alone  # nothing to share: the rubric's order


def test_outputs_traced_equal_eager_and_an_untraceable_model_is_called_eagerly():
    """Many images go through a traced forward pass; a model whose call only works
    eagerly (here: it converts its input to numpy) still gets its outputs."""
    import keras

    images = np.random.default_rng(0).integers(0, 256, (300, 32, 32, 3), dtype=np.uint8)
    inputs = keras.Input((32, 32, 3), dtype="uint8")
    x = keras.layers.Flatten()(keras.ops.cast(inputs, "float32"))
    model = keras.Model(inputs, keras.layers.Dense(10, name="fc")(x))
    eager = np.asarray(model(images, training=False))
    # float32 sums of 3072 terms in another order: equal to a few ulps of the largest output
    scale = float(np.abs(eager).max())
    np.testing.assert_allclose(checks.model._outputs(model, images), eager, rtol=0, atol=1e-5 * scale)

    class NumpyOnly(keras.Model):
        def call(self, x, training=False):
            return np.asarray(x, np.float32).reshape(len(x), -1)[:, :10]

    numpy_only = NumpyOnly()
    found = checks.model._outputs(numpy_only, images)
    np.testing.assert_array_equal(found, images.reshape(300, -1)[:, :10].astype(np.float32))


def test_the_traced_forward_pass_does_not_keep_its_model_alive():
    import gc
    import weakref

    import keras

    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(10, name="fc")])
    checks.model._outputs(model, np.zeros((checks.model.TRACE_FROM, 32, 32, 3), np.uint8))
    assert model in checks.model._forward  # traced once, kept for the model's next evaluation
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None  # and with it its cache entry


# ---------------------------------------------------------------- logits the grading side explains

def _small_weights(seed=0) -> dict:
    from grader.exercises.transfer_learning import network

    rng = np.random.default_rng(seed)
    return {key: rng.normal(0, 0.05, size=shape).astype(np.float32)
            for layer in network.LAYERS if layer.kind == "conv"
            for key, shape in zip(layer.weight_keys, layer.params)}


def _images(n=20, seed=1):
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def _fake_model_module():
    """A module whose 'model' has every named layer, holding the right weights, but whose
    output is computed by other means (here: from the mean colour of each image)."""
    import keras
    import types

    from grader.exercises.transfer_learning import network

    class Fake(keras.Model):
        def __init__(self, weights):
            super().__init__()
            self.pre = keras.layers.Lambda(lambda x: keras.ops.cast(x, "float32") - np.array(
                network.IMAGENET_MEAN_RGB, np.float32), name="preprocess")
            self.convs = []
            for layer in network.LAYERS:
                if layer.kind == "conv":
                    conv = keras.layers.Conv2D(layer.params[1][0], 3, padding="same",
                                               activation="relu", name=layer.name)
                    conv.build((None, None, None, layer.params[0][2]))
                    conv.set_weights([weights[k] for k in layer.weight_keys])
                    self.convs.append(conv)
            self.flatten = keras.layers.Flatten(name="flatten")
            self.fc = keras.layers.Dense(10, name="fc")
            self.fc.build((None, 4096))

        def call(self, x, training=False):
            colour = keras.ops.mean(keras.ops.cast(x, "float32"), axis=(1, 2))
            zero = keras.ops.zeros_like(colour)[:, :1]
            return keras.ops.concatenate([colour, zero, colour, zero, colour[:, :2]],
                                         axis=1) + self.fc.bias

    return Fake, types.SimpleNamespace(preprocess=lambda images: images)


def test_logits_of_the_named_layers_are_explained_and_other_logits_are_not():
    """A real VGG front end and fc (in Keras) is explained by the grading side's own
    computation, in the standard and in a channels-first flatten order; a model with all the
    named layers and weights that computes its output some other way is not."""
    import keras

    from grader.exercises.transfer_learning import network

    weights, images = _small_weights(), _images()
    mean = np.array(network.IMAGENET_MEAN_RGB, np.float32)
    for channels_first in (False, True):
        inputs = keras.Input((32, 32, 3), dtype="uint8")
        x = keras.layers.Lambda(lambda t: keras.ops.cast(t, "float32") - mean, name="preprocess")(inputs)
        for layer in network.LAYERS:
            if layer.kind == "conv":
                x = keras.layers.Conv2D(layer.params[1][0], 3, padding="same", activation="relu",
                                        name=layer.name)(x)
            elif layer.kind == "pool":
                x = keras.layers.MaxPooling2D(2, name=layer.name)(x)
        if channels_first:
            x = keras.layers.Permute((3, 1, 2))(x)
        x = keras.layers.Flatten(name="flatten")(x)
        model = keras.Model(inputs, keras.layers.Dense(10, name="fc")(x))
        for layer in network.LAYERS:
            if layer.kind == "conv":
                model.get_layer(layer.name).set_weights([weights[k] for k in layer.weight_keys])
        fc = model.get_layer("fc")
        fc.set_weights([np.random.default_rng(2).normal(0, 1e-2, (4096, 10)).astype(np.float32),
                        np.arange(10, dtype=np.float32)])
        witness = checks.witness.logit_witness(model, None, images)
        assert checks.explain.explain_logits(witness, images) is None
        forged = dict(witness, logits=witness["logits"] + np.eye(10)[np.arange(20) % 10] * 3)
        assert "not fc applied" in checks.explain.explain_logits(forged, images, rows=np.arange(20))

    Fake, module = _fake_model_module()
    fake = Fake(weights)
    witness = checks.witness.logit_witness(fake, module, images)
    assert set(witness["convs"]) == set(checks.common.CONV_LAYERS)
    assert "not fc applied" in checks.explain.explain_logits(witness, images)


def test_explanation_refuses_inputs_that_are_not_a_colour_transform_of_the_images():
    weights, images = _small_weights(), _images(6)
    inputs = images.astype(np.float32) - 120.0
    features = checks.explain.vgg_front(inputs, {n: [weights[f"{n}_W"], weights[f"{n}_b"]]
                                         for n in checks.common.CONV_LAYERS})
    kernel = np.random.default_rng(3).normal(0, 1e-2, (4096, 10)).astype(np.float32)
    convs = {n: [weights[f"{n}_W"], weights[f"{n}_b"]] for n in checks.common.CONV_LAYERS}
    head = [[kernel, np.zeros(10, np.float32), "linear"]]
    logits = features["pool3"].reshape(6, -1) @ kernel
    honest = {"logits": logits, "inputs": inputs, "convs": convs, "head": head, "flatten_order": None}
    assert checks.explain.explain_logits(honest, images) is None
    # inputs that encode something else than the pixels (here: shifted by one pixel)
    shifted = np.roll(inputs, 1, axis=2)
    features = checks.explain.vgg_front(shifted, convs)
    crafted = dict(honest, inputs=shifted, logits=features["pool3"].reshape(6, -1) @ kernel)
    assert "colour transform" in checks.explain.explain_logits(crafted, images)


def test_frozen_is_compared_in_the_grading_process():
    """The frozen verdict comes from the arrays the worker reports, compared here."""
    convs = {n: [np.ones((3, 3, 1, 1), np.float32), np.zeros(1, np.float32)] for n in checks.common.CONV_LAYERS}
    trainable = [["fc/kernel", [4096, 10], True], ["fc/bias", [10], True]]
    obs = {"trainable": trainable, "before": convs, "steps": 3,
           "after": {**convs, "conv2_1": [np.full((3, 3, 1, 1), 2, np.float32), np.zeros(1, np.float32)]},
           "fc_before": [np.zeros((4096, 10), np.float32), np.zeros(10, np.float32)],
           "fc_after": [np.ones((4096, 10), np.float32), np.zeros(10, np.float32)]}
    score, message = checks.features.judge_frozen(obs, None, {})
    assert score == pytest.approx(0.6) and "training changed conv2_1" in message
    score, _ = checks.features.judge_frozen(dict(obs, after=convs), None, {})
    assert score == pytest.approx(1.0)


@pytest.mark.parametrize("trainable, says, not_says", [
    ([["conv1_1/kernel", [3, 3, 3, 64], False], ["fc/kernel", [4096, 10], True], ["fc/bias", [10], True]],
     "trainable=False on every conv layer", "layer_shapes"),
    ([["fc/kernel", [16384, 10], True], ["fc/bias", [10], True]],            # pool3 left out
     "only fc is trainable, but it holds 163850 parameters", "trainable=False"),
    ([["dense/kernel", [4096, 64], False], ["dense/bias", [64], False],      # a hidden layer
      ["fc/kernel", [64, 10], True], ["fc/bias", [10], True]],
     "no dense layer between flatten and fc", "trainable=False"),
])
def test_the_frozen_hint_names_what_is_trainable(trainable, says, not_says):
    """Is a model whose only trainable layer is an fc of the wrong size, or a dense layer
    the table lacks, told so, rather than to freeze its convolutions?"""
    convs = {n: [np.ones((3, 3, 1, 1), np.float32), np.zeros(1, np.float32)] for n in checks.common.CONV_LAYERS}
    obs = {"trainable": trainable, "before": convs, "after": convs, "steps": 3,
           "fc_before": [np.zeros((4, 10), np.float32)], "fc_after": [np.ones((4, 10), np.float32)]}
    score, message = checks.features.judge_frozen(obs, None, {})
    assert score == pytest.approx(0.6) and says in message and not_says not in message, message


def test_a_transposed_kernel_and_weights_never_set_are_named():
    from types import SimpleNamespace

    weights = _small_weights()
    ctx = SimpleNamespace(weights=weights)
    arrays = {**weights, "conv2_1_W": np.transpose(weights["conv2_1_W"], (1, 0, 2, 3))}
    score, message = checks.structure.judge_weights({"arrays": arrays}, ctx, {})
    assert score < 1 and "conv2_1_W is the file's kernel with its height and width axes swapped" in message
    unset = {key: np.zeros_like(value) for key, value in weights.items()}
    score, message = checks.structure.judge_weights({"arrays": unset}, ctx, {})
    assert score == 0 and "as if they were never set" in message, message


# ---------------------------------------------------------------- what a crafted observation costs
# The worker is the submission's: every observation may be crafted. Each judge checks the
# sizes and shapes of what it reads before any work that grows with them; what no collect
# half sends scores 0 with the reason.

MALFORMED = "the observations were malformed: "


@pytest.fixture
def sorting_sizes(monkeypatch):
    """The sizes of everything the checks sort (builtin sorted, np.sort) while the test runs."""
    sizes = []
    real_sorted, real_sort = sorted, np.sort

    def counted_sorted(values, *args, **kwargs):
        values = list(values)
        sizes.append(len(values))
        return real_sorted(values, *args, **kwargs)

    def counted_sort(values, *args, **kwargs):
        sizes.append(np.size(values))
        return real_sort(values, *args, **kwargs)

    for part in (checks.common, checks.explain, checks.features):
        monkeypatch.setattr(part, "sorted", counted_sorted, raising=False)
    monkeypatch.setattr(np, "sort", counted_sort)
    return sizes


def test_a_dataset_of_many_one_label_batches_is_refused_on_its_counts():
    """205,000 one-label batches cost the old judge's sum(first, []) 48 s: the count of an
    epoch's labels is checked first, and the item scores 0."""
    many = [[k % 50] for k in range(20_000)]
    score, message, *_ = checks.pipeline.judge_pipeline(_pipeline_obs([many, many]), None, {"batch_size": 16})
    assert score == 0 and message.startswith(MALFORMED), message
    assert "the first epoch holds 20000 entries, more than 1000" in message


def test_the_pipeline_judge_flattens_batches_in_linear_time(monkeypatch):
    """No sum(batches, []): the labels are chained, whatever their number."""
    import builtins

    def no_list_sums(values, start=0):
        assert not isinstance(start, list), "sum() of lists: quadratic in their number"
        return builtins.sum(values, start)

    monkeypatch.setattr(checks.pipeline, "sum", no_list_sums, raising=False)
    rng = np.random.default_rng(0)
    first, second = _shuffled_epoch(rng), _shuffled_epoch(rng)
    stream = [label for batch in first + second + _shuffled_epoch(rng) for label in batch]
    score, message, *_ = checks.pipeline.judge_pipeline(_pipeline_obs([first, second], stream), None,
                                           {"batch_size": 16})
    assert score == pytest.approx(1.0), message
    assert checks.pipeline._flat([[1], [2, 3], []]) == [1, 2, 3]


def _features_obs(seed=0):
    """What collect_features sends for a model of the table with fc the grader's probe values."""
    from types import SimpleNamespace

    weights, probe = _small_weights(seed), _images(6)
    ctx = SimpleNamespace(probe=probe, weights=weights)
    expected = checks.features.reference_features(probe, weights)
    kernel, bias = checks.model.probe_fc_arrays([[4096, 10], [10]])
    obs = {"chain": dict(expected), "fc_shapes": [[4096, 10], [10]],
           "logits": (expected["pool3"].reshape(6, -1) @ kernel + bias).astype(np.float32),
           "flatten_order": np.arange(4096, dtype=np.float64)}
    return obs, ctx


def test_a_flatten_order_is_checked_on_its_size_before_it_is_sorted(sorting_sizes):
    """A flatten answering the index probe with 60 M indices cost the old judge 4.7 GB in
    sorted(order.tolist()): an order that is not pool3's 4096 values is refused on its size,
    and only the logits' part of the item is lost."""
    obs, ctx = _features_obs()
    score, message = checks.features.judge_features(obs, ctx, {"tolerance": 1e-3})
    assert score == pytest.approx(1.0), message
    assert max(sorting_sizes) <= 4096
    sorting_sizes.clear()
    for order in (np.tile(np.arange(4096, dtype=np.float64), 5),
                  np.broadcast_to(np.float64(0), (60_000_000,))):  # 60 M values in no memory
        score, message = checks.features.judge_features(dict(obs, flatten_order=order), ctx, {"tolerance": 1e-3})
        assert not sorting_sizes, sorting_sizes  # nothing of it sorted
        assert score == pytest.approx(0.6) and "does not reorder pool3's 4096 values" in message


def test_fc_shapes_are_checked_before_the_grader_makes_probe_values_of_them(monkeypatch):
    """The grader draws its own fc values of the shapes the worker reports: shapes other
    than a kernel [4096, k] and a bias [k], k bounded, are never drawn."""
    obs, ctx = _features_obs()
    drawn = []
    real = checks.model.probe_fc_arrays
    monkeypatch.setattr(checks.features, "probe_fc_arrays", lambda shapes: drawn.append(shapes) or real(shapes))
    for shapes in ([[4096, 5000], [5000]], [[1 << 20, 1 << 20], [1 << 20]], [[4096, 10]] * 3):
        score, message = checks.features.judge_features(dict(obs, fc_shapes=shapes), ctx, {"tolerance": 1e-3})
        assert drawn == []
        assert score == pytest.approx(0.6) and "not fc applied to the flattened pool3" in message
    score, message = checks.features.judge_features(dict(obs, fc_shapes=[[1]] * 17), ctx, {"tolerance": 1e-3})
    assert score == 0 and "fc's variables holds 17 entries, more than 16" in message


def _honest_witness(n=6):
    """A set of logits logit_witness could send, for `n` images (_images(n))."""
    weights, images = _small_weights(), _images(n)
    inputs = images.astype(np.float32) - 120.0
    convs = {name: [weights[f"{name}_W"], weights[f"{name}_b"]] for name in checks.common.CONV_LAYERS}
    kernel = np.random.default_rng(3).normal(0, 1e-2, (4096, 10)).astype(np.float32)
    features = checks.explain.vgg_front(inputs, convs)
    logits = features["pool3"].reshape(n, -1) @ kernel
    return {"logits": logits, "inputs": inputs, "convs": convs,
            "head": [[kernel, np.zeros(10, np.float32), "linear"]], "flatten_order": None}, images


def test_a_witness_flatten_order_is_checked_on_its_size_before_it_is_sorted(sorting_sizes):
    witness, images = _honest_witness()
    rows = np.arange(6)
    for order in (np.tile(np.arange(4096, dtype=np.float64), 5),
                  np.broadcast_to(np.float64(0), (60_000_000,))):
        assert checks.explain.explain_logits(dict(witness, flatten_order=order), images, rows) is None
        assert not sorting_sizes, sorting_sizes


def _ctx(n=6, heldout=None):
    from types import SimpleNamespace

    images = _images(n)
    return SimpleNamespace(probe=images, heldout_images=images if heldout is None else heldout,
                           heldout_labels=np.arange(n) % 10, train_images=_Ctx.train_images,
                           train_labels=_Ctx.train_labels, weights=_small_weights())


def _crafted():
    """(judge, observation, params, what the message names): observations no collect half
    sends, each of a size, shape or type that the old judges worked on or failed on."""
    witness, _ = _honest_witness()
    kernel, bias = witness["head"][0][:2]
    hidden = [np.zeros((4096, 4096), np.float32), np.zeros(4096, np.float32), "relu"]
    narrow = [[np.zeros((4096, 8), np.float32), np.zeros(8, np.float32), "relu"]] \
        + [[np.zeros((8, 8), np.float32), np.zeros(8, np.float32), "relu"]] * 39 \
        + [[np.zeros((8, 10), np.float32), np.zeros(10, np.float32), "linear"]]
    accuracy = {"mode": "train", "steps": 1, "images": 6, "lower": 0.2, "upper": 0.8}
    names = [f"p{k}" for k in range(5000)]
    # what the grading process read from the checkpoint files (checks.checkpoint.finish_checkpoint)
    files = {"files": {"kept": 1, "name": "ckpt-4", "integers": [4], "arrays": [kernel, bias]},
             "files_resumed": {"kept": 2, "name": "ckpt-6", "integers": [6], "arrays": [kernel, bias]}}
    return [
        ("interface", {"functions": {"preprocess": names}, "unfinished": []}, {},
         "preprocess's parameters holds 5000 entries"),
        ("preprocess", {"output": np.full((6, 32, 32, 3), "x"), "dtype": "float32"}, {"tolerance": 1e-3},
         "preprocess's output is not an array of numbers"),
        ("layer_shapes", {"shapes": {"conv1_1": list(range(5000))}, "params": {}, "output": [2, 10]}, {},
         "conv1_1's output shape holds 5000 entries"),
        ("weights", {"arrays": {"conv1_1_W": np.full((3, 3, 3, 64), "w")}}, {},
         "conv1_1_W is not an array of numbers"),
        ("frozen", {"trainable": [["v", [1], False]] * 5000, "before": {}, "after": {},
                    "fc_before": [], "fc_after": [], "steps": 3}, {},
         "the trainable variables holds 5000 entries"),
        ("training", {"before": {"logits": np.zeros((10 ** 4, 10), np.float32)},
                      "after": {"logits": np.zeros((256, 10), np.float32)}, "scalar_tags": []},
         {"steps": 3, "learned_accuracy": 0.5}, "the logits before training have shape [10000, 10]"),
        ("accuracy", dict(witness, head=narrow), accuracy,
         "the head (the dense layers up to fc) holds 41 entries, more than 16"),
        ("accuracy", dict(witness, head=[hidden] * 4 + [[kernel, bias, "linear"]]), accuracy,
         f"values (at most {checks.common.MAX_HEAD_VALUES} are recomputed)"),
        ("checkpoint", {"trained": dict(witness, logits=np.zeros((6, 10 ** 5), np.float32)),
                        "restored": witness, "straight": witness, "resumed": witness, **files,
                        "restored_step": 4, "straight_pulled": 6, "resume_pulled": 2,
                        "resume_final_step": 6}, {}, "100000 logits per image"),
        ("accuracy", {"missing": "m" * 100_000}, accuracy, "expected a checkpoint folder 'mmm"),
        ("checkpoint", {"trained": {"logits": "x"}, "restored": witness, "straight": witness,
                        "resumed": witness, **files, "restored_step": 4, "straight_pulled": 6,
                        "resume_pulled": 2, "resume_final_step": 6, "empty_step": 0}, {},
         "the logits is not an array of numbers"),
        ("checkpoint", {"trained": witness, "restored": witness, "straight": witness,
                        "resumed": witness, **files, "restored_step": 4,
                        "files": {**files["files"], "kept": "1" * 100_000},
                        "straight_pulled": 6, "resume_pulled": 2, "resume_final_step": 6}, {},
         "the checkpoints kept is not an integer"),
        ("pipeline", {**_pipeline_obs([[[1]], [[1]]]), "graphs": {"once": [1] * 10_000}},
         {"batch_size": 16}, "the graphs are not those of the datasets once, endless, forever"),
    ]


@pytest.mark.parametrize("check, obs, params, says", _crafted(),
                         ids=[f"{c[0]}-{k}" for k, c in enumerate(_crafted())])
def test_a_crafted_observation_scores_zero_with_the_reason(check, obs, params, says):
    judge = getattr(checks, f"judge_{check}")
    score, message, *_ = judge(obs, _ctx(), params)
    assert score == 0, message
    assert says in message and len(message) < 600, message[:600]
    if check != "accuracy" or "missing" not in obs:
        assert message.startswith(MALFORMED), message[:600]


def test_an_observation_that_is_not_a_mapping_scores_zero():
    score, message, *_ = checks.pipeline.judge_pipeline([1, 2, 3], None, {"batch_size": 16})
    assert score == 0 and message == MALFORMED + "the observation is not a mapping"


# ---------------------------------------------------------------- logits explained by the model's own chain

def _table_model(weights, activation="relu", pool=None, scale=1.0):
    """The table's network in Keras (functional), with the convolutions' activation, the
    pooling layer and the preprocessing's scale as given: structural or preprocessing
    mistakes of the kinds students make."""
    import keras

    from grader.exercises.transfer_learning import network

    pool = pool or keras.layers.MaxPooling2D
    mean = np.array(network.IMAGENET_MEAN_RGB, np.float32)
    inputs = keras.Input((32, 32, 3), dtype="uint8")
    x = keras.layers.Lambda(lambda t: keras.ops.cast(t, "float32") * scale - mean, name="preprocess")(inputs)
    for layer in network.LAYERS:
        if layer.kind == "conv":
            x = keras.layers.Conv2D(layer.params[1][0], 3, padding="same", activation=activation,
                                    name=layer.name)(x)
        elif layer.kind == "pool":
            x = pool(2, name=layer.name)(x)
    x = keras.layers.Dropout(0.5)(keras.layers.Flatten(name="flatten")(x))
    model = keras.Model(inputs, keras.layers.Dense(10, name="fc")(x))
    for layer in network.LAYERS:
        if layer.kind == "conv":
            model.get_layer(layer.name).set_weights([weights[k] for k in layer.weight_keys])
    model.get_layer("fc").set_weights([np.random.default_rng(2).normal(0, 1e-2, (4096, 10)).astype(np.float32),
                                       np.arange(10, dtype=np.float32)])
    return model


def test_a_structural_mistake_is_explained_by_the_models_own_chain():
    """Convolutions without ReLU, average pools, or a call() that swaps two convolutions:
    the logits are not the table's network's, but the grading side recomputes them from the
    chain of layers the model reports, so only the features item counts the mistake; the
    same logits forged on one image, or a fake model's, are still refused."""
    import keras

    weights, images = _small_weights(), _images()
    rows = np.arange(len(images))
    for model in (_table_model(weights, activation=None),
                  _table_model(weights, pool=keras.layers.AveragePooling2D)):
        witness = checks.witness.logit_witness(model, None, images)
        assert [entry["kind"] for entry in witness["chain"]][:3] == ["conv", "conv", "pool"]
        assert checks.explain.explain_logits(witness, images) is None
        assert "not fc applied" in checks.explain.explain_logits(dict(witness, chain=None), images, rows)
        forged = witness["logits"].copy()
        forged[3] = forged[3][::-1]
        assert "not fc applied" in checks.explain.explain_logits(dict(witness, logits=forged), images, rows)

    class Swapped(keras.Model):  # call() order differs from the attributes' order
        def __init__(self, inner):
            super().__init__()
            self.inner = [layer for layer in inner.layers if type(layer).__name__ != "InputLayer"]

        def call(self, x, training=False):
            names = [layer.name for layer in self.inner]
            k, j = names.index("conv3_2"), names.index("conv3_3")
            order = list(range(len(names)))
            order[k], order[j] = j, k
            for i in order:
                x = self.inner[i](x)
            return x

    swapped = Swapped(_table_model(weights))
    witness = checks.witness.logit_witness(swapped, None, images)
    assert [e["name"] for e in witness["chain"] if e["kind"] == "conv"][-3:] == ["conv3_1", "conv3_3", "conv3_2"]
    assert checks.explain.explain_logits(witness, images) is None

    Fake, module = _fake_model_module()
    witness = checks.witness.logit_witness(Fake(weights), module, images)
    assert "not fc applied" in checks.explain.explain_logits(witness, images)


def _chain_witness():
    model = _table_model(_small_weights())
    images = _images(6)
    return checks.witness.logit_witness(model, None, images), images


def test_a_reported_chain_must_be_the_tables_network_of_standard_layers():
    """What the worker says about its chain is recomputed, never believed: convolutions
    other than 3x3 stride 1 'same', a chain without the table's seven convolutions or one
    costing much more than the table's are not recomputed; a chain that is no list of known
    layers is malformed."""
    witness, images = _chain_witness()
    rows = np.arange(6)
    assert checks.explain.explain_logits(witness, images, rows) is None
    chain = witness["chain"]
    with_table_head = dict(witness, head=[])  # only the chain could explain these logits

    def refused(entries, says):
        message = checks.explain.explain_logits(dict(with_table_head, chain=entries), images, rows)
        assert message is not None and says in message, message

    strided = [dict(e, strides=[2, 2]) if e.get("name") == "conv2_1" else e for e in chain]
    refused(strided, "only the table's 3x3 convolutions with stride 1")
    refused([dict(e, padding="valid") if e["kind"] == "conv" else e for e in chain], "padding 'same'")
    refused([e for e in chain if e.get("name") != "conv3_3"], "not the table's seven, each once")
    refused([e for e in chain if e["kind"] != "pool"], "cost more than 2 times the table's")
    refused([dict(e, op="min") if e["kind"] == "pool" else e for e in chain], "2x2 max or average")
    refused([e for e in chain if e["kind"] != "dense"], "it ends in no flatten and dense layer")
    for crafted, says in (([{"kind": "lookup"}], "of no known kind"),
                          ([chain[0]] * 41, "holds 41 entries, more than 40"),
                          ("conv", "is not a list")):
        with pytest.raises(checks.common.Malformed, match=says):
            checks.explain.explain_logits(dict(witness, chain=crafted), images, rows)


def test_features_are_judged_on_the_models_own_preprocessing_and_name_what_differs():
    """A model that leaves out the x255 scaling has the table's layers: features keeps its
    points (the preprocess item counts that mistake). A model without ReLU loses them, and
    the message names the missing ReLU and the pools that average."""
    from types import SimpleNamespace

    import keras

    weights, probe = _small_weights(), _images(6)
    ctx = SimpleNamespace(probe=probe, weights=weights)

    def observe(model):
        module = SimpleNamespace(preprocess=None, build_model=lambda weights, num_classes: model)
        return checks.features.collect_features(module, SimpleNamespace(weights=weights, probe=probe), {})

    unscaled = observe(_table_model(weights, scale=1 / 255))
    score, message = checks.features.judge_features(unscaled, ctx, {"tolerance": 1e-3})
    assert score == pytest.approx(1.0), message
    # Unread, its preprocessing makes the same layers depart at once from the grader's
    # computation; the message names the pixel scale, not the layers or call() (issue 33)
    score, message = checks.features.judge_features(dict(unscaled, inputs=None), ctx, {"tolerance": 1e-3})
    assert score < 1 and "only because of what conv1_1 is given: the pixels were not " \
        "multiplied by 255" in message and "pixel scale" in message, message
    assert "layer order" not in message and "call()" not in message, message
    for model, says in ((_table_model(weights, activation=None), "no ReLU after conv1_1, conv1_2"),
                        (_table_model(weights, pool=keras.layers.AveragePooling2D),
                         "pool1, pool2, pool3 average")):
        score, message = checks.features.judge_features(observe(model), ctx, {"tolerance": 1e-3})
        assert score == 0 and says in message, message


# ---------------------------------------------------------------- the pipeline's graphs
# The structure comes from each dataset's serialized graph, read in the grading process
# (grader/graphs.py); test_graphs.pipeline_graph writes them as TensorFlow does.

def _graphed(stream_seed=0, **changed):
    """An honest pipeline observation: shuffled epochs and stream, and the reference's
    graphs with `changed` datasets' steps (or texts) in their place."""
    from test_graphs import honest_graphs

    rng = np.random.default_rng(stream_seed)
    first, second = _shuffled_epoch(rng), _shuffled_epoch(rng)
    stream = [label for batch in first + second + _shuffled_epoch(rng) for label in batch]
    return {**_pipeline_obs([first, second], stream), "graphs": honest_graphs(16, **changed)}


def test_pipeline_judge_accepts_honest_elements_and_graphs():
    score, message, *_ = checks.pipeline.judge_pipeline(_graphed(), None, {"batch_size": 16})
    assert score == pytest.approx(1.0) and message == "all good", message


def test_a_prefetch_the_worker_claims_but_the_graph_lacks_earns_nothing():
    """The worker's elements and its old `kinds` claim a prefetch; the graphs have none."""
    from test_graphs import REPEAT, batch, shuffle

    obs = _graphed(once=[shuffle(), batch()], endless=[shuffle(), batch(), REPEAT],
                   forever=[batch(), REPEAT])
    obs["kinds"] = ["_PrefetchDataset", "PrefetchDataset"]
    score, message, *_ = checks.pipeline.judge_pipeline(obs, None, {"batch_size": 16})
    assert score == pytest.approx(0.9), message
    assert message.startswith("no prefetch after batch in the graph of make_dataset(shuffle=True, "
                              "repeat=False)") and "Hint: end with .prefetch" in message, message


@pytest.mark.parametrize("changed, lost, says", [
    ({"once": "shuffle after batch"}, 0.15, "has no shuffle before batch (ops TensorSlice > Batch > Shuffle"),
    ({"endless": "repeat before shuffle"}, 0.1, "has no shuffle before a repeat"),
    ({"once": "no reshuffle"}, 0.15, "has no shuffle(..., reshuffle_each_iteration=True)"),
    ({"forever": "batch 32"}, 0.1, "batches with batch_size=32, drop_remainder=False: expected batch(16)"),
    ({"once": "drop remainder"}, 0.1, "drop_remainder=True: expected batch(16) keeping the smaller"),
    ({"once": "repeats"}, 0.1, "make_dataset(shuffle=True, repeat=False) repeats"),
    ({"forever": "repeat 3"}, 0.1, "has no repeat() going on for ever"),
])
def test_a_graph_that_disagrees_with_the_elements_costs_its_part(changed, lost, says):
    """Elements an honest pipeline yields, with a graph built otherwise: the part the graph
    backs is lost, with what the graph holds."""
    from test_graphs import PREFETCH, REPEAT, batch, shuffle

    steps = {"shuffle after batch": [batch(), shuffle(), PREFETCH],
             "repeat before shuffle": [REPEAT, shuffle(), batch(), PREFETCH],
             "no reshuffle": [shuffle(reshuffle=False), batch(), PREFETCH],
             "batch 32": [batch(32), REPEAT, PREFETCH],
             "drop remainder": [shuffle(), batch(drop=True), PREFETCH],
             "repeats": [shuffle(), batch(), REPEAT, PREFETCH],
             "repeat 3": [batch(), ("RepeatDataset", {"count": 3}), PREFETCH]}
    [(name, kind)] = changed.items()
    score, message, *_ = checks.pipeline.judge_pipeline(_graphed(**{name: steps[kind]}), None, {"batch_size": 16})
    assert score == pytest.approx(1.0 - lost), message
    assert says in message and "\n" not in message, message


def test_a_pipeline_without_a_graph_loses_the_parts_that_need_it_with_one_line():
    """A py_function: TensorFlow refuses to serialize the pipeline; the spec, the pairing
    and the coverage of an epoch still count."""
    why = "FailedPreconditionError: Failed to serialize the input pipeline graph: EagerPyFunc is stateful."
    score, message, *_ = checks.pipeline.judge_pipeline(_graphed(once=why), None, {"batch_size": 16})
    assert score == pytest.approx(0.3), message
    assert message == (f"the graph of make_dataset(shuffle=True, repeat=False) could not be read ({why}), "
                       "so its batch, shuffle, repeat and prefetch were not checked. Hint: build the "
                       "pipeline from tf.data ops only (no py_function, no random ops in map)")


def test_hostile_graph_bytes_lose_the_graphs_parts_with_what_the_reader_found():
    from test_graphs import HONEST

    obs = _graphed()
    obs["graphs"]["endless"] = np.frombuffer(HONEST[:len(HONEST) // 2], np.uint8)
    score, message, *_ = checks.pipeline.judge_pipeline(obs, None, {"batch_size": 16})
    assert score == pytest.approx(0.3) and "its graph could not be read: a length of" in message, message
    obs["graphs"]["endless"] = np.zeros((8 << 20) + 1, np.uint8)
    score, message, *_ = checks.pipeline.judge_pipeline(obs, None, {"batch_size": 16})
    assert score == pytest.approx(0.3) and "its graph is 8388609 bytes, more than 8 MB" in message, message


@pytest.mark.parametrize("graphs, says", [
    (None, "the graphs are not those of the datasets once, endless, forever"),
    ({"once": "x", "endless": "x"}, "the graphs are not those of the datasets once, endless, forever"),
    ({"once": "x", "endless": "x", "forever": np.zeros(4, np.float32)},
     "the forever dataset's graph is not bytes"),
    ({"once": "x", "endless": "x", "forever": 7}, "the forever dataset's graph is not bytes"),
])
def test_dataset_graphs_no_collect_half_sends_are_malformed(graphs, says):
    obs = _graphed()
    obs["graphs"] = graphs
    score, message, *_ = checks.pipeline.judge_pipeline(obs, None, {"batch_size": 16})
    assert score == 0 and message == MALFORMED + says, message
