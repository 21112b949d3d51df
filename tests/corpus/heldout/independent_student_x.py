# The exercise's code, for you to complete and hand in.
# Fill in every '# YOUR CODE HERE'; keep the function names and signatures.
"""Transfer learning with a frozen VGG16 front end on CIFAR-10.

The five functions below are the whole exercise: preprocessing, the network (VGG16's
convolutions up to pool3, frozen, plus one trainable dense layer), a tf.data input
pipeline, a training loop that checkpoints and resumes, and checkpoint restoring.
The grader imports this module and calls these functions by name.

My version: a functional Keras model, and training through model.fit with two small
callbacks of my own (one records every batch and writes TensorBoard scalars, one
validates and saves checkpoints).
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import keras

# The mean RGB colour of ImageNet's training images, in the RGB order our images use.
IMAGENET_MEAN_RGB = [123.68, 116.779, 103.939]

# (block, number of 3x3 convolutions, output channels) for the part of VGG16 we keep.
VGG_BLOCKS = [(1, 2, 64), (2, 2, 128), (3, 3, 256)]


def preprocess(images):
    """Turn uint8 RGB images into the input VGG16 was trained on.

    Args:
        images: uint8 tensor or array of shape [N, 32, 32, 3], RGB, values 0..255.

    Returns:
        float32 tensor of shape [N, 32, 32, 3]: pixel values on the 0..255 scale with the
        ImageNet mean colour (RGB order) subtracted from each pixel.
    """
    # a plain cast keeps the 0..255 scale (convert_image_dtype would divide by 255)
    pixels = tf.cast(tf.convert_to_tensor(images), tf.float32)
    mean = tf.constant(IMAGENET_MEAN_RGB, dtype=tf.float32, shape=[1, 1, 1, 3])
    return pixels - mean


def _frozen_conv(weights, name):
    """A 3x3 'same' ReLU convolution named `name`, built from weights[name_W], weights[name_b]."""
    kernel = np.asarray(weights[name + "_W"], dtype=np.float32)
    bias = np.asarray(weights[name + "_b"], dtype=np.float32)
    layer = keras.layers.Conv2D(kernel.shape[-1], (3, 3), strides=(1, 1), padding="same",
                                activation="relu", name=name)
    layer.build((None, None, None, kernel.shape[2]))
    layer.set_weights([kernel, bias])
    layer.trainable = False
    return layer


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
    inputs = keras.Input(shape=(32, 32, 3), dtype="uint8", name="images")
    x = keras.layers.Lambda(preprocess, output_shape=(32, 32, 3), name="preprocess")(inputs)
    for block, convs, _channels in VGG_BLOCKS:
        for i in range(1, convs + 1):
            x = _frozen_conv(weights, f"conv{block}_{i}")(x)
        x = keras.layers.MaxPooling2D(pool_size=2, strides=2, name=f"pool{block}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    logits = keras.layers.Dense(num_classes, activation=None, name="fc")(x)
    return keras.Model(inputs, logits, name="vgg16_transfer")


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
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        # a buffer as big as the data set: a full, uniform shuffle, new every epoch
        ds = ds.shuffle(buffer_size=len(labels), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=False)
    if repeat:
        ds = ds.repeat()
    ds = ds.prefetch(1)
    options = tf.data.Options()
    options.autotune.enabled = False
    return ds.with_options(options)


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


class _StepRecorder(keras.callbacks.Callback):
    """Counts the global step and records every batch's own loss and accuracy.

    fit() reports running means over the epoch, so the metrics are reset before each
    batch: what on_train_batch_end then sees is that one batch.
    """

    def __init__(self, step, history, writer=None, verbose=False, target=None):
        super().__init__()
        self.step = step
        self.history = history
        self.writer = writer
        self.verbose = verbose
        self.target = target

    def on_train_batch_begin(self, batch, logs=None):
        self.model.reset_metrics()

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        self.step.assign_add(1)
        current = int(self.step.numpy())
        loss = float(logs["loss"])
        accuracy = float(logs["accuracy"])
        self.history["step"].append(current)
        self.history["loss"].append(loss)
        self.history["accuracy"].append(accuracy)
        if self.writer is not None:
            with self.writer.as_default():
                tf.summary.scalar("loss", loss, step=current)
                tf.summary.scalar("accuracy", accuracy, step=current)
        if self.verbose and (current % 10 == 0 or current == self.target):
            print(f"step {current}/{self.target}: loss {loss:.4f}, accuracy {accuracy:.4f}",
                  flush=True)


class _ValidateAndSave(keras.callbacks.Callback):
    """Every `every` global steps and at the last one: validate, then save a checkpoint."""

    def __init__(self, step, target, every, history, val_ds=None, manager=None,
                 writer=None, verbose=False):
        super().__init__()
        self.step = step
        self.target = target
        self.every = every
        self.history = history
        self.val_ds = val_ds
        self.manager = manager
        self.writer = writer
        self.verbose = verbose

    def on_train_batch_end(self, batch, logs=None):
        current = int(self.step.numpy())
        if current % self.every != 0 and current != self.target:
            return
        if self.val_ds is not None:
            val_loss, val_accuracy = evaluate(self.model, self.val_ds)
            self.history["val_step"].append(current)
            self.history["val_loss"].append(val_loss)
            self.history["val_accuracy"].append(val_accuracy)
            if self.writer is not None:
                with self.writer.as_default():
                    tf.summary.scalar("loss", val_loss, step=current)
                    tf.summary.scalar("accuracy", val_accuracy, step=current)
            if self.verbose:
                print(f"step {current}: validation loss {val_loss:.4f}, "
                      f"accuracy {val_accuracy:.4f}", flush=True)
        if self.manager is not None:
            path = self.manager.save(checkpoint_number=current)
            if self.verbose:
                print(f"saved {path}", flush=True)


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
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
                  jit_compile=False)
    # Adam's moments exist before any restore and before fit traces its step.
    optimizer.build(model.trainable_variables)
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")

    manager = None
    if checkpoint_dir is not None:
        ckpt = tf.train.Checkpoint(network=model, adam=optimizer, global_step=global_step)
        manager = tf.train.CheckpointManager(ckpt, checkpoint_dir, max_to_keep=max_to_keep)
        if manager.latest_checkpoint:
            ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            if verbose:
                print(f"resuming from {manager.latest_checkpoint} "
                      f"(step {int(global_step.numpy())})", flush=True)

    writers = {}
    if log_dir is not None:
        writers = {run: tf.summary.create_file_writer(f"{log_dir}/{run}")
                   for run in ("train", "validation")}

    history = {"step": [], "loss": [], "accuracy": [],
               "val_step": [], "val_loss": [], "val_accuracy": []}
    remaining = steps - int(global_step.numpy())
    if remaining > 0:
        callbacks = [
            _StepRecorder(global_step, history, writers.get("train"), verbose, steps),
            _ValidateAndSave(global_step, steps, checkpoint_every, history, val_ds, manager,
                             writers.get("validation"), verbose),
        ]
        # one "epoch" of exactly the steps still to do; the data set is endless
        model.fit(train_ds, epochs=1, steps_per_epoch=remaining, callbacks=callbacks,
                  shuffle=False, verbose=0)
    for writer in writers.values():
        writer.flush()
    history["final_step"] = int(global_step.numpy())
    return history


def restore_checkpoint(model, checkpoint_dir):
    """Load the newest checkpoint in `checkpoint_dir` into `model`.

    Returns:
        The global step the checkpoint was saved at, or 0 when the directory holds none
        (the model is then left as it is).
    """
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if latest is None:
        return 0
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    # the optimizer is left out on purpose, so expect_partial
    tf.train.Checkpoint(network=model, global_step=global_step).restore(latest).expect_partial()
    return int(global_step.numpy())
