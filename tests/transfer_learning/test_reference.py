"""The reference solution honours the exercise module contract."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from grader.exercises.transfer_learning.network import LAYER_SHAPES


@pytest.fixture(scope="module")
def trained(reference, weights, small_data):
    """A model before and after 5 training steps, with its conv weights and fc kernel."""
    model = reference.build_model(weights)
    before = {v.path: v.numpy().copy() for v in model.weights}
    (x, y), _ = small_data
    reference.train(model, reference.make_dataset(x, y, seed=0), steps=5)
    return model, before


def test_preprocess_exact_values(reference):
    images = np.array([[[[0, 128, 255]]]], dtype=np.uint8)
    out = reference.preprocess(images)
    assert out.dtype == tf.float32 and tuple(out.shape) == (1, 1, 1, 3)
    np.testing.assert_allclose(out.numpy().ravel(),
                               [0 - 123.68, 128 - 116.779, 255 - 103.939], atol=1e-3)


def test_every_layer_output_shape(reference, weights):
    model = reference.build_model(weights)
    for name, shape in LAYER_SHAPES.items():
        assert tuple(model.get_layer(name).output.shape) == (None, *shape), name
    assert model.input.dtype == "uint8"


def test_weights_equal_the_file(reference, weights):
    model = reference.build_model(weights)
    for block, n in ((1, 2), (2, 2), (3, 3)):
        for i in range(1, n + 1):
            kernel, bias = model.get_layer(f"conv{block}_{i}").get_weights()
            np.testing.assert_array_equal(kernel, weights[f"conv{block}_{i}_W"])
            np.testing.assert_array_equal(bias, weights[f"conv{block}_{i}_b"])


def test_only_fc_is_trainable(reference, weights):
    model = reference.build_model(weights)
    assert sorted(v.path for v in model.trainable_variables) == ["fc/bias", "fc/kernel"]
    assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == 40970


def test_training_leaves_convs_bit_identical_and_changes_fc(trained):
    model, before = trained
    for variable in model.weights:
        if variable.path.startswith("conv"):
            np.testing.assert_array_equal(variable.numpy(), before[variable.path])
    assert not np.array_equal(model.get_layer("fc").kernel.numpy(), before["fc/kernel"])


@pytest.mark.slow
def test_short_training_learns(reference, weights, small_data):
    """Does a short run on synthetic data beat chance clearly on unseen images?"""
    tf.keras.utils.set_random_seed(0)
    model = reference.build_model(weights)
    (x, y), (tx, ty) = small_data
    history = reference.train(model, reference.make_dataset(x, y, seed=0), steps=40)
    assert np.mean(history["loss"][-5:]) < np.mean(history["loss"][:5])
    accuracy = (model.predict(tx, verbose=0).argmax(1) == ty).mean()
    assert accuracy > 0.25, accuracy  # chance is 0.1


def test_checkpoint_round_trip_gives_identical_outputs(reference, weights, small_data, tmp_path):
    (x, y), (tx, _) = small_data
    model = reference.build_model(weights)
    reference.train(model, reference.make_dataset(x, y, seed=0), steps=4,
                    checkpoint_dir=str(tmp_path), checkpoint_every=2)
    fresh = reference.build_model(weights)
    assert reference.restore_checkpoint(fresh, str(tmp_path)) == 4
    np.testing.assert_array_equal(model.predict(tx[:16], verbose=0), fresh.predict(tx[:16], verbose=0))


def test_restore_from_empty_directory_returns_zero(reference, weights, tmp_path):
    model = reference.build_model(weights)
    assert reference.restore_checkpoint(model, str(tmp_path)) == 0


def test_resume_continues_step_count_with_optimizer_state(reference, weights, small_data, tmp_path):
    """Does a second run continue from the saved step, and equal one uninterrupted run?"""
    (x, y), (tx, _) = small_data
    batches = lambda: reference.make_dataset(x, y, shuffle=False)  # same batches every run
    straight = reference.build_model(weights)
    reference.train(straight, batches(), steps=6)

    first = reference.build_model(weights)
    reference.train(first, batches(), steps=3, checkpoint_dir=str(tmp_path), checkpoint_every=3)
    resumed = reference.build_model(weights)
    # The resumed run must skip the 3 batches already used to match: feed batches 4..6.
    history = reference.train(resumed, batches().skip(3), steps=6, checkpoint_dir=str(tmp_path),
                              checkpoint_every=3)
    assert history["step"] == [4, 5, 6] and history["final_step"] == 6
    # Equal outputs need Adam's moments restored too; a fresh optimizer would differ.
    np.testing.assert_allclose(resumed.predict(tx[:16], verbose=0),
                               straight.predict(tx[:16], verbose=0), rtol=1e-4, atol=1e-4)


def test_max_to_keep_is_honoured(reference, weights, small_data, tmp_path):
    (x, y), _ = small_data
    model = reference.build_model(weights)
    reference.train(model, reference.make_dataset(x, y), steps=6, checkpoint_dir=str(tmp_path),
                    checkpoint_every=1, max_to_keep=2)
    state = tf.train.get_checkpoint_state(str(tmp_path))
    assert [p.rsplit("-", 1)[1] for p in state.all_model_checkpoint_paths] == ["5", "6"]
    assert len(list(tmp_path.glob("ckpt-*.index"))) == 2


def test_tensorboard_scalars_are_written(reference, weights, small_data, tmp_path):
    (x, y), (tx, ty) = small_data
    model = reference.build_model(weights)
    reference.train(model, reference.make_dataset(x, y), reference.make_dataset(
        tx, ty, shuffle=False, repeat=False), steps=2, checkpoint_every=2, log_dir=str(tmp_path))
    from grader.events import scalar_tags
    assert scalar_tags(tmp_path / "train") >= {"loss", "accuracy"}
    assert scalar_tags(tmp_path / "validation") >= {"loss", "accuracy"}


def test_dataset_element_spec_and_batch_size(reference, small_data):
    (x, y), _ = small_data
    ds = reference.make_dataset(x, y, batch_size=32)
    images_spec, labels_spec = ds.element_spec
    assert images_spec.dtype == tf.uint8 and images_spec.shape.as_list()[1:] == [32, 32, 3]
    assert labels_spec.dtype.is_integer
    images, labels = next(iter(ds))
    assert images.shape[0] == 32 and labels.shape == (32,)


def test_one_epoch_covers_every_example_once_and_reshuffles(reference):
    images = np.zeros((50, 32, 32, 3), np.uint8)
    labels = np.arange(50)
    ds = reference.make_dataset(images, labels, batch_size=8, repeat=False, seed=1)
    first = np.concatenate([l.numpy() for _, l in ds])
    second = np.concatenate([l.numpy() for _, l in ds])
    assert sorted(first.tolist()) == list(range(50)) == sorted(second.tolist())
    assert first.tolist() != second.tolist() and first.tolist() != list(range(50))


def test_repeat_is_infinite_and_no_shuffle_keeps_order(reference):
    images = np.zeros((10, 32, 32, 3), np.uint8)
    ds = reference.make_dataset(images, np.arange(10), batch_size=4, shuffle=False)
    assert ds.cardinality().numpy() == tf.data.INFINITE_CARDINALITY
    labels = np.concatenate([l.numpy() for _, l in ds.take(9)])
    assert labels[:10].tolist() == list(range(10)) and len(labels) == 30  # 3 epochs of 4+4+2
