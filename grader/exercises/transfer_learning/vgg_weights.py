"""The VGG16 convolution weights: load and validate the course file, make stand-in
weights for offline use, and convert Keras' ImageNet VGG16 into the course format.

Course format: an .npz with `conv{b}_{i}_W` kernels [3, 3, in, out] float32 (for RGB
input with the ImageNet mean subtracted) and `conv{b}_{i}_b` biases [out] float32, for
the 13 convolutions conv1_1 .. conv5_3.
"""
from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np

from ...errors import WeightsError
from ...fsutil import write_bytes_atomic

# (block, convolutions, output channels) for all of VGG16's convolutional blocks.
VGG16_BLOCKS = [(1, 2, 64), (2, 2, 128), (3, 3, 256), (4, 3, 512), (5, 3, 512)]
STAND_IN_SEED = 1604


def conv_layers() -> list[tuple[str, int, int]]:
    """[(name, input channels, output channels)] for conv1_1 .. conv5_3."""
    layers, channels_in = [], 3
    for block, n, channels_out in VGG16_BLOCKS:
        for i in range(1, n + 1):
            layers.append((f"conv{block}_{i}", channels_in, channels_out))
            channels_in = channels_out
    return layers


def expected_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for name, cin, cout in conv_layers():
        shapes[f"{name}_W"] = (3, 3, cin, cout)
        shapes[f"{name}_b"] = (cout,)
    return shapes


# The full VGG16 file also carries the classifier; those keys are allowed and ignored.
_IGNORED_PREFIXES = ("fc6_", "fc7_", "fc8_")


def validate(weights: dict, source: str = "weights") -> dict[str, np.ndarray]:
    """Check keys, shapes and dtypes; return only the convolution arrays."""
    shapes = expected_shapes()
    missing = [k for k in shapes if k not in weights]
    unknown = sorted(k for k in weights if k not in shapes and not k.startswith(_IGNORED_PREFIXES))
    problems = []
    if missing:
        problems.append(f"missing keys {', '.join(missing[:6])}{' ...' if len(missing) > 6 else ''}")
    if unknown:
        problems.append(f"unexpected keys {', '.join(unknown[:6])}{' ...' if len(unknown) > 6 else ''}")
    for key, shape in shapes.items():
        if key not in weights:
            continue
        value = np.asarray(weights[key])
        if value.shape != shape:
            problems.append(f"{key} has shape {list(value.shape)}, expected {list(shape)}")
        elif value.dtype != np.float32:
            problems.append(f"{key} has dtype {value.dtype}, expected float32")
        elif not np.all(np.isfinite(value)):
            problems.append(f"{key} contains NaN or infinite values")
    if problems:
        raise WeightsError(
            f"{source}: not a VGG16 convolution weights file: {'; '.join(problems[:4])}. "
            "Expected conv1_1_W .. conv5_3_b as in vgg16-conv-weights.npz; "
            "`grader convert-weights` writes one from Keras' VGG16.")
    return {k: np.asarray(weights[k]) for k in shapes}


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read and validate a course weights file (or the full vgg16_weights.npz)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file. Pass the path of "
                           "vgg16-conv-weights.npz, or leave --weights out to use stand-in weights.")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            weights = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
        raise WeightsError(f"{path}: expected an .npz archive of VGG16 weights but could not "
                           f"read it ({exc}). Re-download the file or convert it again.") from None
    return validate(weights, source=str(path))


def stand_in() -> dict[str, np.ndarray]:
    """Deterministic weights with the right keys and shapes; NOT ImageNet-trained.

    conv1_1 is a fixed bank of oriented and colour-opponent filters that ignore the
    red+green direction of colour space, as real first-layer filters are tuned to some
    colour directions and not others; deeper kernels are He-scaled random numbers. The
    scales keep activations in a range like real VGG16's for inputs on the 0..255 scale.
    """
    rng = np.random.default_rng(STAND_IN_SEED)
    weights = {}
    for name, cin, cout in conv_layers():
        if name == "conv1_1":
            kernel = _first_layer_bank(rng, cout)
        else:
            kernel = rng.normal(0.0, np.sqrt(2.0 / (9 * cin)), size=(3, 3, cin, cout))
        weights[f"{name}_W"] = kernel.astype(np.float32)
        weights[f"{name}_b"] = rng.normal(0.0, 0.5, size=cout).astype(np.float32)
    return weights


def _first_layer_bank(rng: np.random.Generator, cout: int) -> np.ndarray:
    # Colour directions orthogonal to (1, 1, 0): blue alone and red minus green.
    directions = np.array([[0.0, 0.0, 1.0], [1.0, -1.0, 0.0]])
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    spatial = rng.normal(0.0, 1.0, size=(cout, 3, 3))
    spatial -= spatial.mean(axis=(1, 2), keepdims=True) * (np.arange(cout) % 4 != 0)[:, None, None]
    mix = rng.normal(0.0, 1.0, size=(cout, 2)) @ directions  # [cout, 3]
    kernel = np.einsum("oyx,oc->yxco", spatial, mix)
    kernel /= np.sqrt((kernel ** 2).sum(axis=(0, 1, 2), keepdims=True)) + 1e-8
    return kernel * np.sqrt(2.0)


def save(weights: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write a course weights file atomically (validated first)."""
    weights = validate(weights, source="weights to save")
    buffer = io.BytesIO()
    np.savez(buffer, **weights)
    write_bytes_atomic(path, buffer.getvalue())


def from_keras_vgg16(model) -> dict[str, np.ndarray]:
    """Course-format weights from a Keras `VGG16(include_top=False)` model.

    Keras' ImageNet VGG16 came from Caffe and expects BGR input; the course format is
    for RGB input, so conv1_1's input-channel axis is reversed. With that, the converted
    network on an RGB image computes what the Keras one computes on the BGR image.
    """
    weights = {}
    for name, _, _ in conv_layers():
        block, index = name[4], name[6]
        kernel, bias = model.get_layer(f"block{block}_conv{index}").get_weights()
        if name == "conv1_1":
            kernel = kernel[:, :, ::-1, :]
        weights[f"{name}_W"] = np.ascontiguousarray(kernel, dtype=np.float32)
        weights[f"{name}_b"] = np.asarray(bias, dtype=np.float32)
    return validate(weights, source="converted Keras VGG16")


def resolve(path: str | os.PathLike | None) -> tuple[dict[str, np.ndarray], str]:
    """The weights to use and a description: the file at `path`, else $GRADER_WEIGHTS,
    else the stand-in weights."""
    path = path or os.environ.get("GRADER_WEIGHTS")
    if path:
        return load(path), str(path)
    return stand_in(), "stand-in weights (NOT ImageNet-trained)"
