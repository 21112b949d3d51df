# The exercise's code, for you to complete and hand in.
# Fill in every '# YOUR CODE HERE'; keep the function names and signatures.
"""Transfer learning with a frozen VGG16 front end on CIFAR-10.

The five functions below are the whole exercise: preprocessing, the network (VGG16's
convolutions up to pool3, frozen, plus one trainable dense layer), a tf.data input
pipeline, a training loop that checkpoints and resumes, and checkpoint restoring.
The grader imports this module and calls these functions by name.

Approach: the network is a subclassed keras.Model; training is a hand-written loop
around a tf.function step with tf.GradientTape.
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

SHUFFLE_BUFFER = 10_000   # enough for a good shuffle of CIFAR-10, capped at the data size
LOG_EVERY = 5             # TensorBoard cadence for the training scalars (plus the last step)


def preprocess(images):
    """Turn uint8 RGB images into the input VGG16 was trained on.

    Args:
        images: uint8 tensor or array of shape [N, 32, 32, 3], RGB, values 0..255.

    Returns:
        float32 tensor of shape [N, 32, 32, 3]: pixel values on the 0..255 scale with the
        ImageNet mean colour (RGB order) subtracted from each pixel.
    """
    # convert_image_dtype gives 0..1; scale back up to 0..255
    x = tf.image.convert_image_dtype(tf.convert_to_tensor(images, dtype=tf.uint8), tf.float32)
    x = x * 255.0
    mean = tf.reshape(tf.constant(IMAGENET_MEAN_RGB, tf.float32), [1, 1, 1, 3])
    return x - mean


class Preprocess(keras.layers.Layer):
    """The preprocessing as a layer without weights."""

    def call(self, images):
        return preprocess(images)

    def compute_output_shape(self, input_shape):
        return input_shape


class TransferNet(keras.Model):
    """conv1_1 .. pool3 of VGG16 (frozen) -> flatten -> fc."""

    def __init__(self, num_classes=10, **kwargs):
        super().__init__(**kwargs)
        self.prep = Preprocess(name="preprocess")
        self.features = []
        for block, n_convs, channels in VGG_BLOCKS:
            for k in range(1, n_convs + 1):
                self.features.append(keras.layers.Conv2D(
                    channels, 3, padding="same", activation="relu",
                    name=f"conv{block}_{k}", trainable=False))
            self.features.append(keras.layers.MaxPool2D(2, strides=2, name=f"pool{block}"))
        self.flat = keras.layers.Flatten(name="flatten")
        self.fc = keras.layers.Dense(num_classes, name="fc")

    def call(self, images, training=False):
        x = self.prep(images)
        for layer in self.features:
            x = layer(x)
        return self.fc(self.flat(x))


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
    model = TransferNet(num_classes, name="vgg16_transfer")
    # a subclassed model makes its variables on the first call
    model(tf.zeros([1, 32, 32, 3], dtype=tf.uint8))
    for layer in model.features:
        if isinstance(layer, keras.layers.Conv2D):
            layer.kernel.assign(np.asarray(weights[f"{layer.name}_W"], np.float32))
            layer.bias.assign(np.asarray(weights[f"{layer.name}_b"], np.float32))
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
    options = tf.data.Options()
    options.autotune.enabled = False   # nothing to tune here, and it costs seconds on exit

    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).with_options(options)
    if shuffle:
        buffer = min(SHUFFLE_BUFFER, len(images))
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if repeat:                          # after shuffle+batch, so epochs stay whole
        dataset = dataset.repeat()
    return dataset.prefetch(2)


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


def _write_scalars(writer, step, loss, accuracy):
    if writer is None:
        return
    with writer.as_default(step=step):
        tf.summary.scalar("loss", loss)
        tf.summary.scalar("accuracy", accuracy)


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
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate, beta_1=0.9, beta_2=0.999,
                                      epsilon=1e-7)
    variables = model.trainable_variables
    optimizer.build(variables)
    counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="counter")

    manager = None
    if checkpoint_dir is not None:
        state = tf.train.Checkpoint(net=model, opt=optimizer, counter=counter)
        manager = tf.train.CheckpointManager(state, checkpoint_dir, max_to_keep=max_to_keep,
                                             checkpoint_name="ckpt")
        if manager.latest_checkpoint is not None:
            state.restore(manager.latest_checkpoint)
            if verbose:
                print(f"restored {manager.latest_checkpoint} at step {int(counter)}")

    train_writer = val_writer = None
    if log_dir is not None:
        train_writer = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
        val_writer = tf.summary.create_file_writer(os.path.join(log_dir, "validation"))

    @tf.function(reduce_retracing=True)
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss, accuracy = _loss_and_accuracy(logits, labels)
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        counter.assign_add(1)
        return loss, accuracy

    history = {key: [] for key in ("step", "loss", "accuracy",
                                   "val_step", "val_loss", "val_accuracy")}
    step = int(counter.numpy())
    data = iter(train_ds)
    while step < steps:
        images, labels = next(data)
        loss, accuracy = train_step(images, labels)
        step = int(counter.numpy())
        loss, accuracy = float(loss), float(accuracy)
        history["step"].append(step)
        history["loss"].append(loss)
        history["accuracy"].append(accuracy)
        if step % LOG_EVERY == 0 or step == steps:
            _write_scalars(train_writer, step, loss, accuracy)
            if verbose:
                print(f"step {step:5d}  loss {loss:.4f}  accuracy {accuracy:.3f}")

        if step % checkpoint_every == 0 or step == steps:
            if val_ds is not None:
                val_loss, val_accuracy = evaluate(model, val_ds)
                history["val_step"].append(step)
                history["val_loss"].append(val_loss)
                history["val_accuracy"].append(val_accuracy)
                _write_scalars(val_writer, step, val_loss, val_accuracy)
                if verbose:
                    print(f"step {step:5d}  validation loss {val_loss:.4f}  "
                          f"accuracy {val_accuracy:.3f}")
            if manager is not None:
                manager.save(checkpoint_number=step)

    for writer in (train_writer, val_writer):
        if writer is not None:
            writer.flush()
    history["final_step"] = int(counter.numpy())
    return history


def restore_checkpoint(model, checkpoint_dir):
    """Load the newest checkpoint in `checkpoint_dir` into `model`.

    Returns:
        The global step the checkpoint was saved at, or 0 when the directory holds none
        (the model is then left as it is).
    """
    counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="counter")
    state = tf.train.Checkpoint(net=model, counter=counter)
    manager = tf.train.CheckpointManager(state, checkpoint_dir, max_to_keep=None)
    if manager.latest_checkpoint is None:
        return 0
    state.restore(manager.latest_checkpoint).expect_partial()
    return int(counter.numpy())
