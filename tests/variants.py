"""Deliberately broken copies of the reference: one common student mistake each.

Each variant is (name, [(old text, new text)], items it must lose, items it may lose).
"""
from __future__ import annotations

from pathlib import Path

from grader.paths import SOLUTION

VARIANTS = [
    ("forgot_trainable_false", [("activation=\"relu\", trainable=False,", "activation=\"relu\",")],
     {"frozen"}, {"accuracy_quick", "training"}),
    ("mean_in_bgr_order", [("IMAGENET_MEAN_RGB, dtype=tf.float32", "IMAGENET_MEAN_RGB[::-1], dtype=tf.float32")],
     {"preprocess", "features"}, {"accuracy_quick"}),
    ("no_times_255", [("tf.image.convert_image_dtype(images, tf.float32) * 255.0",
                       "tf.image.convert_image_dtype(images, tf.float32)")],
     {"preprocess", "features"}, {"accuracy_quick", "training"}),
    ("pool_stride_1", [("MaxPooling2D(pool_size=2, strides=2,", "MaxPooling2D(pool_size=2, strides=1, padding=\"same\",")],
     {"layer_shapes", "features", "frozen"}, {"accuracy_quick", "training", "checkpoint"}),
    # 'valid' shrinks 32 pixels below zero before pool3: the model cannot even be built.
    ("valid_padding", [("strides=1, padding=\"same\",", "strides=1, padding=\"valid\",")],
     {"layer_shapes", "weights", "frozen", "features", "training", "accuracy_quick", "checkpoint"}, set()),
    ("extra_dense_layer", [("logits = keras.layers.Dense(num_classes,",
                            "x = keras.layers.Dense(64, activation=\"relu\")(x)\n    logits = keras.layers.Dense(num_classes,")],
     {"layer_shapes", "frozen"}, {"accuracy_quick", "training", "checkpoint"}),
    ("saves_but_never_restores", [("            checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()\n",
                                   "            pass\n")],
     {"checkpoint"}, set()),
    ("restarts_step_count", [("tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)",
                              "tf.train.Checkpoint(model=model, optimizer=optimizer)"),
                             (".assert_existing_objects_matched()", "")],
     {"checkpoint"}, set()),
    ("ignores_max_to_keep", [("max_to_keep=max_to_keep)", "max_to_keep=5)")], {"checkpoint"}, set()),
    ("no_shuffle", [("    if shuffle:\n        ds = ds.shuffle", "    if False:\n        ds = ds.shuffle")],
     {"pipeline"}, set()),
    ("no_repeat", [("        ds = ds.repeat()\n", "        pass\n")], {"pipeline"}, {"accuracy_quick"}),
    ("no_prefetch", [("return ds.prefetch(tf.data.AUTOTUNE)", "return ds")], {"pipeline"}, set()),
    ("no_summaries", [("tf.summary.scalar(\"loss\", loss, step=current)", "pass"),
                      ("tf.summary.scalar(\"accuracy\", accuracy, step=current)", "pass")],
     {"training"}, set()),
]


def write_variant(name: str, dest: Path) -> Path:
    source = SOLUTION.read_text()
    for entry in VARIANTS:
        if entry[0] == name:
            for old, new in entry[1]:
                assert old in source, f"variant {name}: {old!r} is not in the reference"
                source = source.replace(old, new)
    path = dest / f"{name}.py"
    path.write_text(source)
    return path
