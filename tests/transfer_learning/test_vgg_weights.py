"""Loading, validating, standing in for and converting the VGG16 weights."""
from __future__ import annotations

import numpy as np
import pytest

from grader.exercises.transfer_learning import vgg_weights
from grader.errors import WeightsError


def _save(path, weights):
    np.savez(path, **weights)
    return path


def test_stand_in_is_deterministic_and_complete(weights):
    """Do the stand-in weights have every key with the course shapes, the same every time?"""
    again = vgg_weights.stand_in()
    assert set(weights) == set(vgg_weights.expected_shapes()) and len(weights) == 26
    for key, shape in vgg_weights.expected_shapes().items():
        assert weights[key].shape == shape and weights[key].dtype == np.float32
        np.testing.assert_array_equal(weights[key], again[key])


def test_file_round_trip(weights, tmp_path):
    path = tmp_path / "w.npz"
    vgg_weights.save(weights, path)
    loaded = vgg_weights.load(path)
    for key in weights:
        np.testing.assert_array_equal(loaded[key], weights[key])


def test_full_vgg16_file_is_accepted(weights, tmp_path):
    """Is the full vgg16_weights.npz (with fc6..fc8) accepted and the classifier ignored?"""
    full = dict(weights, fc6_W=np.zeros((4, 4), np.float32), fc8_b=np.zeros(10, np.float32))
    loaded = vgg_weights.load(_save(tmp_path / "full.npz", full))
    assert "fc6_W" not in loaded and len(loaded) == 26


@pytest.mark.parametrize("change, message", [
    (lambda w: w.pop("conv2_1_b"), "missing keys conv2_1_b"),
    (lambda w: w.update(conv3_1_W=np.zeros((3, 3, 64, 256), np.float32)),
     r"conv3_1_W has shape \[3, 3, 64, 256\], expected \[3, 3, 128, 256\]"),
    (lambda w: w.update(conv1_1_b=w["conv1_1_b"].astype(np.float64)),
     "conv1_1_b has dtype float64, expected float32"),
    (lambda w: w.update(block1_conv1=np.zeros(3, np.float32)), "unexpected keys block1_conv1"),
])
def test_wrong_files_name_exactly_what_is_wrong(weights, tmp_path, change, message):
    bad = dict(weights)
    change(bad)
    with pytest.raises(WeightsError, match=message):
        vgg_weights.load(_save(tmp_path / "bad.npz", bad))


def test_unreadable_and_missing_files(tmp_path):
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(WeightsError, match="expected an .npz archive"):
        vgg_weights.load(junk)
    with pytest.raises(WeightsError, match="no such weights file"):
        vgg_weights.load(tmp_path / "absent.npz")


def test_save_refuses_invalid_weights_and_leaves_nothing(weights, tmp_path):
    bad = dict(weights)
    del bad["conv5_3_W"]
    with pytest.raises(WeightsError):
        vgg_weights.save(bad, tmp_path / "out.npz")
    assert list(tmp_path.iterdir()) == []


def test_keras_conversion_turns_bgr_weights_into_rgb_ones():
    """Do the converted weights on an RGB image give what Keras' VGG16 gives on the BGR one?"""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(3)
    original = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    converted = vgg_weights.from_keras_vgg16(original)

    rgb = np.random.default_rng(0).uniform(-120, 130, (2, 32, 32, 3)).astype(np.float32)
    keras_out = keras.Model(original.input, original.get_layer("block3_pool").output)(rgb[..., ::-1])

    x = tf.constant(rgb)
    for block, n, _ in vgg_weights.VGG16_BLOCKS[:3]:
        for i in range(1, n + 1):
            name = f"conv{block}_{i}"
            x = tf.nn.relu(tf.nn.conv2d(x, converted[f"{name}_W"], 1, "SAME") + converted[f"{name}_b"])
        x = tf.nn.max_pool2d(x, 2, 2, "VALID")
    np.testing.assert_allclose(x.numpy(), np.asarray(keras_out), rtol=1e-4, atol=1e-3)
    # Without reversing the channels the results would differ: the test can fail.
    assert not np.allclose(converted["conv1_1_W"], original.get_layer("block1_conv1").get_weights()[0])
