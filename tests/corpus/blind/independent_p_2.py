# The exercise's code, for you to complete and hand in.
# Fill in every '# YOUR CODE HERE'; keep the function names and signatures.
"""Transfer learning with a frozen VGG16 front end on CIFAR-10.

The five functions below are the whole exercise: preprocessing, the network (VGG16's
convolutions up to pool3, frozen, plus one trainable dense layer), a tf.data input
pipeline, a training loop that checkpoints and resumes, and checkpoint restoring.
The grader imports this module and calls these functions by name.
"""
from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
import keras

# The mean RGB colour of ImageNet's training images, in the RGB order our images use.
IMAGENET_MEAN_RGB = [123.68, 116.779, 103.939]

# (block, number of 3x3 convolutions, output channels) for the part of VGG16 we keep.
VGG_BLOCKS = [(1, 2, 64), (2, 2, 128), (3, 3, 256)]

SHUFFLE_BUFFER = 10_000


def preprocess(images):
    """Turn uint8 RGB images into the input VGG16 was trained on.

    Args:
        images: uint8 tensor or array of shape [N, 32, 32, 3], RGB, values 0..255.

    Returns:
        float32 tensor of shape [N, 32, 32, 3]: pixel values on the 0..255 scale with the
        ImageNet mean colour (RGB order) subtracted from each pixel.
    """
    pixels = tf.cast(tf.convert_to_tensor(images), tf.float32)  # uint8 -> 0..255 floats
    return pixels - np.asarray(IMAGENET_MEAN_RGB, dtype=np.float32)  # broadcasts over N, H, W


def _frozen_conv(weights, name):
    kernel = np.asarray(weights[f"{name}_W"], dtype=np.float32)
    bias = np.asarray(weights[f"{name}_b"], dtype=np.float32)
    return keras.layers.Conv2D(
        filters=kernel.shape[-1], kernel_size=kernel.shape[:2], padding="same",
        activation="relu", name=name, trainable=False,
        kernel_initializer=keras.initializers.Constant(kernel),
        bias_initializer=keras.initializers.Constant(bias))


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
    for block, n_convs, _channels in VGG_BLOCKS:
        stack += [_frozen_conv(weights, f"conv{block}_{k}") for k in range(1, n_convs + 1)]
        stack.append(keras.layers.MaxPool2D(2, 2, name=f"pool{block}"))
    stack += [keras.layers.Flatten(name="flatten"),
              keras.layers.Dense(num_classes, kernel_initializer="zeros", name="fc")]
    return keras.Sequential(stack, name="vgg16_transfer")


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
    n = len(labels)
    pipeline = tf.data.Dataset.from_tensor_slices((np.asarray(images), np.asarray(labels)))
    if shuffle:
        # shuffle inside the epoch, before repeat, so epochs stay whole
        pipeline = pipeline.shuffle(min(n, SHUFFLE_BUFFER), seed=seed,
                                    reshuffle_each_iteration=True)
    pipeline = pipeline.batch(batch_size, drop_remainder=False)
    if repeat:
        pipeline = pipeline.repeat()
    pipeline = pipeline.prefetch(2)
    opts = tf.data.Options()
    opts.autotune.enabled = False
    return pipeline.with_options(opts)


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


def _log_scalars(writer, step, **values):
    if writer is None:
        return
    with writer.as_default(step=step):
        for name, value in values.items():
            tf.summary.scalar(name, value)


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4, checkpoint_dir=None,
          checkpoint_every=100, max_to_keep=5, log_dir=None, verbose=False):
    """Train `model` on `train_ds` up to global step `steps`, checkpointing as it goes.

    The loss is softmax cross-entropy on the logits. The optimizer is Adam.
    Every `checkpoint_every` steps (and at the last step) the model is validated on one
    pass of `val_ds` when given, and a checkpoint of the model, the optimizer and the
    step counter is saved in `checkpoint_dir`, keeping the newest `max_to_keep`. If
    `checkpoint_dir` already holds a checkpoint, training restores it and carries on
    from its step. TensorBoard scalars "loss" and "accuracy" go to `log_dir`/train and
    `log_dir`/validation.

    Returns:
        A dict with per-step lists "step", "loss" and "accuracy", the validation results
        "val_step", "val_loss" and "val_accuracy", and "final_step".
    """
    params = model.trainable_variables
    adam = keras.optimizers.Adam(learning_rate=learning_rate)
    adam.build(params)
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")

    manager = None
    if checkpoint_dir:
        state = tf.train.Checkpoint(model=model, optimizer=adam, step=global_step)
        manager = tf.train.CheckpointManager(state, checkpoint_dir, max_to_keep=max_to_keep)
        restored_from = manager.restore_or_initialize()
        if verbose and restored_from:
            print(f"resuming from {restored_from} at step {int(global_step.numpy())}")

    train_writer = val_writer = None
    if log_dir:
        train_writer = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
        val_writer = tf.summary.create_file_writer(os.path.join(log_dir, "validation"))

    @tf.function(input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.uint8),
                                  tf.TensorSpec([None], tf.int64)])
    def update(x, y):
        with tf.GradientTape() as tape:
            loss, acc = _loss_and_accuracy(model(x, training=True), y)
        adam.apply_gradients(zip(tape.gradient(loss, params), params))
        return loss, acc

    log = {key: [] for key in ("step", "loss", "accuracy", "val_step", "val_loss", "val_accuracy")}
    data = iter(train_ds)
    for current in range(int(global_step.numpy()) + 1, steps + 1):
        x, y = next(data)
        loss, acc = update(tf.cast(x, tf.uint8), tf.cast(y, tf.int64))
        global_step.assign(current)
        loss, acc = float(loss), float(acc)
        log["step"].append(current)
        log["loss"].append(loss)
        log["accuracy"].append(acc)
        _log_scalars(train_writer, current, loss=loss, accuracy=acc)
        if verbose and current % 10 == 0:
            print(f"step {current}/{steps}: loss {loss:.4f}, accuracy {acc:.4f}", flush=True)

        if current % checkpoint_every != 0 and current != steps:
            continue
        if val_ds is not None:
            v_loss, v_acc = evaluate(model, val_ds)
            log["val_step"].append(current)
            log["val_loss"].append(v_loss)
            log["val_accuracy"].append(v_acc)
            _log_scalars(val_writer, current, loss=v_loss, accuracy=v_acc)
            if verbose:
                print(f"step {current}: validation loss {v_loss:.4f}, accuracy {v_acc:.4f}",
                      flush=True)
        if manager is not None:
            manager.save(checkpoint_number=current)

    for writer in (train_writer, val_writer):
        if writer is not None:
            writer.flush()
    log["final_step"] = int(global_step.numpy())
    return log


def restore_checkpoint(model, checkpoint_dir):
    """Load the newest checkpoint in `checkpoint_dir` into `model`.

    Returns:
        The global step the checkpoint was saved at, or 0 when the directory holds none
        (the model is then left as it is).
    """
    path = tf.train.latest_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if not path:
        return 0
    saved_step = tf.Variable(0, dtype=tf.int64, trainable=False)
    tf.train.Checkpoint(model=model, step=saved_step).restore(path).expect_partial()
    return int(saved_step.numpy())
