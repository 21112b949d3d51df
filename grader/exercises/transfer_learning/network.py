"""The exercise's network and module contract, declared once.

The checks, the handout's layer table, the generator and the tests all read these
tables; nothing else lists layer names, shapes, weight keys or function parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

from .vgg_weights import conv_layers

IMAGE_SHAPE = (32, 32, 3)
NUM_CLASSES = 10
IMAGENET_MEAN_RGB = (123.68, 116.779, 103.939)
KEPT_BLOCKS = 3  # VGG16's blocks conv1 .. conv3, up to and including pool3


@dataclass(frozen=True)
class Layer:
    name: str
    kind: str
    """preprocess, conv (3x3, stride 1, same padding, bias, ReLU), pool (2x2 max, stride 2),
    flatten or dense"""
    output: tuple[int, ...]
    """output shape without the batch dimension"""
    params: tuple[tuple[int, ...], ...] = ()
    """kernel and bias shapes, for layers that have them"""

    @property
    def weight_keys(self) -> tuple[str, ...]:
        """Keys of the weights file this layer is initialised from."""
        return (f"{self.name}_W", f"{self.name}_b") if self.kind == "conv" else ()


def _layers() -> list[Layer]:
    height, width, channels = IMAGE_SHAPE
    layers = [Layer("preprocess", "preprocess", IMAGE_SHAPE)]
    block = 0
    for name, cin, cout in conv_layers():
        current = int(name[4])
        if current > KEPT_BLOCKS:
            break
        if block and current != block:
            height, width = height // 2, width // 2
            layers.append(Layer(f"pool{block}", "pool", (height, width, channels)))
        block, channels = current, cout
        layers.append(Layer(name, "conv", (height, width, cout), ((3, 3, cin, cout), (cout,))))
    height, width = height // 2, width // 2
    layers.append(Layer(f"pool{block}", "pool", (height, width, channels)))
    features = height * width * channels
    layers.append(Layer("flatten", "flatten", (features,)))
    layers.append(Layer("fc", "dense", (NUM_CLASSES,), ((features, NUM_CLASSES), (NUM_CLASSES,))))
    return layers


LAYERS: list[Layer] = _layers()
LAYER_ORDER = [layer.name for layer in LAYERS]
LAYER_SHAPES = {layer.name: layer.output for layer in LAYERS}
CONV_LAYERS = [layer.name for layer in LAYERS if layer.kind == "conv"]
FEATURE_LAYERS = LAYER_ORDER[1:LAYER_ORDER.index(f"pool{KEPT_BLOCKS}") + 1]
"""conv1_1 .. pool3: the frozen part whose outputs the grader computes itself"""
FC = LAYERS[-1]
FC_PARAMS = FC.params[0][0] * FC.params[0][1] + FC.params[1][0]
WEIGHT_KEYS = [key for layer in LAYERS for key in layer.weight_keys]

# The five functions a submission defines: name -> parameters the grader passes by name.
CONTRACT = {
    "preprocess": ["images"],
    "build_model": ["weights", "num_classes"],
    "make_dataset": ["images", "labels", "batch_size", "shuffle", "repeat", "seed"],
    "train": ["model", "train_ds", "val_ds", "steps", "checkpoint_dir", "checkpoint_every",
              "max_to_keep", "log_dir"],
    "restore_checkpoint": ["model", "checkpoint_dir"],
}
DEFAULT_LEARNING_RATE = 1e-4
"""train()'s default learning rate, which every training item uses"""


def layer_table_markdown() -> str:
    """The handout's table of the layers a submission builds."""
    rows = ["| layer | what it is | output shape | kernel, bias |", "|---|---|---|---|"]
    what = {"preprocess": "pixels as float32 on 0..255, minus the ImageNet mean (RGB)",
            "conv": "3x3 convolution, stride 1, padding same, ReLU; frozen",
            "pool": "2x2 max pool, stride 2", "flatten": "flatten",
            "dense": "dense, no activation (logits); the only trainable layer"}
    for layer in LAYERS:
        params = ", ".join("[" + ", ".join(map(str, p)) + "]" for p in layer.params) or "none"
        shape = "[" + ", ".join(map(str, layer.output)) + "]"
        rows.append(f"| `{layer.name}` | {what[layer.kind]} | {shape} | {params} |")
    return "\n".join(rows)
