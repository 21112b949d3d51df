# The exercise's code, for you to complete and hand in.
# Fill in every '# YOUR CODE HERE'; keep the function names and signatures.
"""Transfer learning with a frozen VGG16 front end on CIFAR-10.

The five functions below are the whole exercise: preprocessing, the network (VGG16's
convolutions up to pool3, frozen, plus one trainable dense layer), a tf.data input
pipeline, a training loop that checkpoints and resumes, and checkpoint restoring.
The grader imports this module and calls these functions by name.
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
    # scale to 0..255 floats, then subtract IMAGENET_MEAN_RGB (shape [1, 1, 1, 3]).
    images = tf.cast(images, tf.float32)
    mean = tf.reshape(tf.constant(IMAGENET_MEAN_RGB, dtype=tf.float32), [1, 1, 1, 3])
    return images - mean


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
    # for each block of VGG_BLOCKS: frozen 3x3 convs named conv{block}_{i} set from
    # `weights`, then a 2x2 max pool named pool{block}; then flatten and a dense fc.
    for block, num_convs, channels in VGG_BLOCKS:
        for i in range(1, num_convs + 1):
            name = f"conv{block}_{i}"
            conv = keras.layers.Conv2D(channels, 3, strides=1, padding="same",
                                       activation="relu", name=name)
            x = conv(x)
            conv.set_weights([weights[f"{name}_W"], weights[f"{name}_b"]])
            conv.trainable = False
        x = keras.layers.MaxPooling2D(pool_size=2, strides=2, name=f"pool{block}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    logits = keras.layers.Dense(num_classes, name="fc")(x)
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
    # from_tensor_slices, then shuffle (when asked), batch, repeat (when asked), prefetch;
    # switch tf.data's autotuning off (see the handout).
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.prefetch(1)
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


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
    # the optimizer's variables built up front (optimizer.build), a step counter; when
    # checkpoint_dir is given, a tf.train.Checkpoint of the model, the optimizer and the
    # step, a CheckpointManager, and a restore of the newest one.
    optimizer.build(model.trainable_variables)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    manager = None
    if checkpoint_dir is not None:
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
        manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir,
                                             max_to_keep=max_to_keep)
        if manager.latest_checkpoint:
            checkpoint.restore(manager.latest_checkpoint)

    writers = {}
    if log_dir is not None:
        writers = {run: tf.summary.create_file_writer(f"{log_dir}/{run}")
                   for run in ("train", "validation")}

    # reduce_retracing: the smaller last batch of an epoch must not cost a new graph each time.
    @tf.function(reduce_retracing=True)
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss, accuracy = _loss_and_accuracy(logits, labels)
        # apply the gradients of the loss to the trainable variables.
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss, accuracy

    history = {"step": [], "loss": [], "accuracy": [],
               "val_step": [], "val_loss": [], "val_accuracy": []}
    start = int(step.numpy())
    progress = (keras.utils.Progbar(steps, interval=0.5, stateful_metrics=["loss", "accuracy"])
                if verbose and start < steps else None)
    batches = iter(train_ds)
    while int(step.numpy()) < steps:
        images, labels = next(batches)
        loss, accuracy = train_step(images, labels)
        step.assign_add(1)
        current = int(step.numpy())
        history["step"].append(current)
        history["loss"].append(float(loss))
        history["accuracy"].append(float(accuracy))
        if "train" in writers:
            with writers["train"].as_default():
                tf.summary.scalar("loss", loss, step=current)
                tf.summary.scalar("accuracy", accuracy, step=current)
        if progress is not None:
            progress.update(current, [("loss", float(loss)), ("accuracy", float(accuracy))])
        if current % checkpoint_every == 0 or current == steps:
            if val_ds is not None:
                val_loss, val_accuracy = evaluate(model, val_ds)
                history["val_step"].append(current)
                history["val_loss"].append(val_loss)
                history["val_accuracy"].append(val_accuracy)
                if "validation" in writers:
                    with writers["validation"].as_default():
                        tf.summary.scalar("loss", val_loss, step=current)
                        tf.summary.scalar("accuracy", val_accuracy, step=current)
                if verbose:
                    print(f"\nstep {current}: validation loss {val_loss:.4f}, "
                          f"accuracy {val_accuracy:.4f}", flush=True)
            # save a checkpoint numbered with the current step.
            if manager is not None:
                manager.save(checkpoint_number=current)
    for writer in writers.values():
        writer.flush()
    history["final_step"] = int(step.numpy())
    return history


def restore_checkpoint(model, checkpoint_dir):
    """Load the newest checkpoint in `checkpoint_dir` into `model`.

    Returns:
        The global step the checkpoint was saved at, or 0 when the directory holds none
        (the model is then left as it is).
    """
    # restore the newest checkpoint (model and step only); return its step, or 0.
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    checkpoint = tf.train.Checkpoint(model=model, step=step)
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if latest is None:
        return 0
    checkpoint.restore(latest).expect_partial()
    return int(step.numpy())
