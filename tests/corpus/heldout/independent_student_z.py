# The exercise's code, for you to complete and hand in.
# Fill in every '# YOUR CODE HERE'; keep the function names and signatures.
"""Transfer learning with a frozen VGG16 front end on CIFAR-10.

The five functions below are the whole exercise: preprocessing, the network (VGG16's
convolutions up to pool3, frozen, plus one trainable dense layer), a tf.data input
pipeline, a training loop that checkpoints and resumes, and checkpoint restoring.
The grader imports this module and calls these functions by name.

(keras.Sequential built from a layer table; preprocessing with keras.ops; Nadam, i.e.
Adam with Nesterov momentum; a training step with a fixed input signature.)
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import keras
from keras import ops

# The mean RGB colour of ImageNet's training images, in the RGB order our images use.
IMAGENET_MEAN_RGB = [123.68, 116.779, 103.939]

# (block, number of 3x3 convolutions, output channels) for the part of VGG16 we keep.
VGG_BLOCKS = [(1, 2, 64), (2, 2, 128), (3, 3, 256)]


def _layer_table():
    """[(name, kind, channels)] for conv1_1 .. pool3, in order, from VGG_BLOCKS."""
    table = []
    for block, n_conv, channels in VGG_BLOCKS:
        table += [(f"conv{block}_{j + 1}", "conv", channels) for j in range(n_conv)]
        table.append((f"pool{block}", "pool", None))
    return table


def preprocess(images):
    """Turn uint8 RGB images into the input VGG16 was trained on.

    Args:
        images: uint8 tensor or array of shape [N, 32, 32, 3], RGB, values 0..255.

    Returns:
        float32 tensor of shape [N, 32, 32, 3]: pixel values on the 0..255 scale with the
        ImageNet mean colour (RGB order) subtracted from each pixel.
    """
    mean = ops.reshape(ops.convert_to_tensor(IMAGENET_MEAN_RGB, dtype="float32"), (1, 1, 1, 3))
    return ops.subtract(ops.cast(images, "float32"), mean)


def build_model(weights, num_classes=10):
    """Build VGG16's layers conv1_1 .. pool3, frozen and initialised from `weights`,
    followed by a trainable dense layer.

    Args:
        weights: mapping from the weights file's keys (e.g. "conv1_1_W" with shape
            [3, 3, 3, 64] float32, "conv1_1_b" with shape [64]) to arrays.
        num_classes: number of output units of the dense layer.

    Returns:
        A keras.Model taking uint8 images [None, 32, 32, 3] and returning float32 logits
        [None, num_classes]. Its layers are named preprocess, conv1_1, conv1_2, pool1,
        conv2_1, conv2_2, pool2, conv3_1, conv3_2, conv3_3, pool3, flatten and fc; only
        fc is trainable.
    """
    stack = [keras.Input(shape=(32, 32, 3), dtype="uint8", name="images"),
             keras.layers.Lambda(preprocess, output_shape=(32, 32, 3), name="preprocess")]
    for name, kind, channels in _layer_table():
        if kind == "conv":
            stack.append(keras.layers.Conv2D(channels, kernel_size=3, strides=1,
                                             padding="same", activation="relu", name=name))
        else:
            stack.append(keras.layers.MaxPooling2D(pool_size=2, strides=2, name=name))
    stack += [keras.layers.Flatten(name="flatten"),
              keras.layers.Dense(num_classes, name="fc")]
    model = keras.Sequential(stack, name="vgg16_transfer")

    # copy the VGG16 values in, then freeze everything but fc
    for name, kind, _ in _layer_table():
        if kind == "conv":
            layer = model.get_layer(name)
            layer.set_weights([np.asarray(weights[name + "_W"], dtype="float32"),
                               np.asarray(weights[name + "_b"], dtype="float32")])
    for layer in model.layers:
        layer.trainable = layer.name == "fc"
    return model


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    """Build the tf.data input pipeline.

    Args:
        images: uint8 array [N, 32, 32, 3].
        labels: integer array [N].
        batch_size: examples per batch (the last batch of an epoch may be smaller).
        shuffle: draw a new random order every epoch.
        repeat: go on for ever instead of stopping after one epoch.
        seed: makes the shuffling repeatable.

    Returns:
        A tf.data.Dataset of (images uint8 [B, 32, 32, 3], labels int [B]) batches,
        prefetched so the next batch is ready while the current one trains.
    """
    ds = tf.data.Dataset.from_tensor_slices((np.asarray(images), np.asarray(labels)))
    steps = []
    if shuffle:
        steps.append(lambda d: d.shuffle(4096, seed=seed, reshuffle_each_iteration=True))
    steps.append(lambda d: d.batch(batch_size))
    if repeat:
        steps.append(lambda d: d.repeat())
    steps.append(lambda d: d.prefetch(buffer_size=1))
    for stage in steps:
        ds = stage(ds)

    no_autotune = tf.data.Options()
    no_autotune.autotune.enabled = False
    return ds.with_options(no_autotune)


def _loss_and_accuracy(logits, labels):
    labels = tf.cast(labels, tf.int64)
    loss = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    accuracy = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, axis=1), labels), tf.float32))
    return loss, accuracy


def evaluate(model, dataset):
    """Mean loss and accuracy of `model` over one pass of a finite `dataset`."""
    total_loss, total_correct, total = 0.0, 0.0, 0
    for images, labels in dataset:
        logits = model(images, training=False)
        loss, accuracy = _loss_and_accuracy(logits, labels)
        n = int(tf.shape(labels)[0])
        total_loss += float(loss) * n
        total_correct += float(accuracy) * n
        total += n
    return total_loss / max(total, 1), total_correct / max(total, 1)


def _checkpoint(model, step, optimizer=None):
    """The one place the checkpoint's layout is defined, for train and restore alike."""
    parts = {"model": model, "step": step}
    if optimizer is not None:
        parts["optimizer"] = optimizer
    return tf.train.Checkpoint(**parts)


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4, checkpoint_dir=None,
          checkpoint_every=100, max_to_keep=5, log_dir=None, verbose=False):
    """Train `model` on `train_ds` up to global step `steps`, checkpointing as it goes.

    The loss is softmax cross-entropy on the logits. The optimizer is Adam: the frozen
    VGG features are on a large, uneven scale (hundreds for some channels, near zero for
    others), and Adam's per-parameter step sizes cope with that where plain gradient
    descent at one learning rate either crawls or diverges. With batches of 64, a
    learning rate of 1e-4 learns within a few hundred steps; a rate a hundred times
    smaller (1e-6) needs about a hundred times as many, and 1e-3 overshoots in the first
    steps.

    Every `checkpoint_every` steps (and at the last step) the model is validated on one
    pass of `val_ds` when given, and a checkpoint of the model, the optimizer and the
    step counter is saved in `checkpoint_dir`, keeping the newest `max_to_keep`. If
    `checkpoint_dir` already holds a checkpoint, training restores it and carries on
    from its step. TensorBoard scalars "loss" and "accuracy" go to `log_dir`/train and
    `log_dir`/validation.

    Args:
        model: the model from build_model.
        train_ds: an endless dataset of (images, labels) batches.
        val_ds: an optional finite dataset of (images, labels) batches.
        steps: the global step to train up to (not a number of further steps).

    Returns:
        A dict with per-step lists "step", "loss" and "accuracy", the validation results
        "val_step", "val_loss" and "val_accuracy", and "final_step".
    """
    # Nadam: Adam's per-weight step sizes, with a Nesterov look-ahead on the momentum
    optimizer = keras.optimizers.Nadam(learning_rate=learning_rate)
    optimizer.build(model.trainable_variables)
    step = tf.Variable(0, dtype=tf.int64, trainable=False)

    manager = None
    if checkpoint_dir is not None:
        manager = tf.train.CheckpointManager(_checkpoint(model, step, optimizer),
                                             directory=checkpoint_dir, max_to_keep=max_to_keep)
        manager.restore_or_initialize()

    logs = None
    if log_dir is not None:
        logs = {"train": tf.summary.create_file_writer(log_dir + "/train"),
                "validation": tf.summary.create_file_writer(log_dir + "/validation")}

    def log(run, at, loss, accuracy):
        if logs is not None:
            with logs[run].as_default():
                tf.summary.scalar("loss", loss, step=at)
                tf.summary.scalar("accuracy", accuracy, step=at)

    # a fixed signature with a free batch size: one graph, whatever the batch
    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.uint8),
                                  tf.TensorSpec([None], tf.int64)])
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            loss, accuracy = _loss_and_accuracy(model(images, training=True), labels)
        trainable = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, trainable), trainable))
        step.assign_add(1)
        return loss, accuracy

    history = {"step": [], "loss": [], "accuracy": [],
               "val_step": [], "val_loss": [], "val_accuracy": []}
    first = int(step.numpy())
    if first < steps:
        for images, labels in train_ds.take(steps - first):
            loss, accuracy = train_step(images, tf.cast(labels, tf.int64))
            now = int(step.numpy())
            history["step"].append(now)
            history["loss"].append(float(loss))
            history["accuracy"].append(float(accuracy))
            log("train", now, loss, accuracy)

            if now % checkpoint_every and now != steps:
                continue
            if val_ds is not None:
                val_loss, val_accuracy = evaluate(model, val_ds)
                history["val_step"].append(now)
                history["val_loss"].append(val_loss)
                history["val_accuracy"].append(val_accuracy)
                log("validation", now, val_loss, val_accuracy)
            if manager is not None:
                saved = manager.save(checkpoint_number=now)
            if verbose:
                print(f"[{now}/{steps}] loss={float(loss):.4f} acc={float(accuracy):.3f}"
                      + (f" val_loss={history['val_loss'][-1]:.4f}"
                         f" val_acc={history['val_accuracy'][-1]:.3f}" if val_ds is not None else "")
                      + (f" -> {saved}" if manager is not None else ""), flush=True)

    if logs is not None:
        for writer in logs.values():
            writer.flush()
    history["final_step"] = int(step.numpy())
    return history


def restore_checkpoint(model, checkpoint_dir):
    """Load the newest checkpoint in `checkpoint_dir` into `model`.

    Returns:
        The global step the checkpoint was saved at, or 0 when the directory holds none
        (the model is then left as it is).
    """
    path = tf.train.latest_checkpoint(checkpoint_dir)
    if not path:
        return 0
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    _checkpoint(model, step).restore(path).expect_partial()
    return int(step.numpy())
