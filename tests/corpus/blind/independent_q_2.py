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
    pixels = tf.image.convert_image_dtype(tf.convert_to_tensor(images), tf.float32) * 255.0
    return pixels - tf.constant(IMAGENET_MEAN_RGB, tf.float32)[None, None, None, :]


def _frozen_conv(weights, name, channels):
    """A 3x3 ReLU convolution whose kernel and bias come from the weights file."""
    return keras.layers.Conv2D(
        filters=channels, kernel_size=(3, 3), padding="same", activation="relu",
        kernel_initializer=keras.initializers.Constant(np.asarray(weights[name + "_W"])),
        bias_initializer=keras.initializers.Constant(np.asarray(weights[name + "_b"])),
        trainable=False, name=name)


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
    for block, depth, channels in VGG_BLOCKS:
        stack += [_frozen_conv(weights, f"conv{block}_{k}", channels)
                  for k in range(1, depth + 1)]
        stack.append(keras.layers.MaxPool2D(pool_size=(2, 2), strides=(2, 2),
                                            name=f"pool{block}"))
    stack.append(keras.layers.Flatten(name="flatten"))
    stack.append(keras.layers.Dense(num_classes, activation=None, name="fc"))
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
    count = int(np.shape(images)[0])
    pipeline = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        # A buffer as large as the data set: a full permutation, new every epoch.
        pipeline = pipeline.shuffle(buffer_size=max(count, 1), seed=seed,
                                    reshuffle_each_iteration=True)
    pipeline = pipeline.batch(batch_size, drop_remainder=False)
    if repeat:
        pipeline = pipeline.repeat()
    pipeline = pipeline.prefetch(buffer_size=2)
    no_tuning = tf.data.Options()
    no_tuning.autotune.enabled = False
    return pipeline.with_options(no_tuning)


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
        for tag, value in values.items():
            tf.summary.scalar(tag, value)


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
    adam = keras.optimizers.Adam(learning_rate=learning_rate)
    params = model.trainable_variables
    adam.build(params)
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")

    saver = None
    if checkpoint_dir is not None:
        ckpt = tf.train.Checkpoint(model=model, optimizer=adam, step=global_step)
        saver = tf.train.CheckpointManager(ckpt, directory=checkpoint_dir,
                                           max_to_keep=max_to_keep)
        restored_from = saver.restore_or_initialize()
        if verbose and restored_from:
            print(f"resumed from {restored_from} at step {int(global_step.numpy())}")

    train_writer = val_writer = None
    if log_dir is not None:
        train_writer = tf.summary.create_file_writer(f"{log_dir}/train")
        val_writer = tf.summary.create_file_writer(f"{log_dir}/validation")

    @tf.function(reduce_retracing=True)
    def one_step(x, y):
        with tf.GradientTape() as tape:
            loss, acc = _loss_and_accuracy(model(x, training=True), y)
        adam.apply_gradients(zip(tape.gradient(loss, params), params))
        global_step.assign_add(1)
        return loss, acc

    log = {key: [] for key in
           ("step", "loss", "accuracy", "val_step", "val_loss", "val_accuracy")}
    first = int(global_step.numpy())
    remaining = max(steps - first, 0)
    for x, y in train_ds.take(remaining):
        loss, acc = one_step(x, y)
        now = int(global_step.numpy())
        loss, acc = float(loss), float(acc)
        log["step"].append(now)
        log["loss"].append(loss)
        log["accuracy"].append(acc)
        _log_scalars(train_writer, now, loss=loss, accuracy=acc)
        if verbose and now % 10 == 0:
            print(f"step {now}/{steps}: loss {loss:.4f}, accuracy {acc:.4f}", flush=True)

        if now % checkpoint_every != 0 and now != steps:
            continue
        if val_ds is not None:
            val_loss, val_acc = evaluate(model, val_ds)
            log["val_step"].append(now)
            log["val_loss"].append(val_loss)
            log["val_accuracy"].append(val_acc)
            _log_scalars(val_writer, now, loss=val_loss, accuracy=val_acc)
            if verbose:
                print(f"step {now}: validation loss {val_loss:.4f}, "
                      f"accuracy {val_acc:.4f}", flush=True)
        if saver is not None:
            saver.save(checkpoint_number=now)

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
    saved_step = tf.Variable(0, dtype=tf.int64, trainable=False)
    reader = tf.train.Checkpoint(model=model, step=saved_step)
    newest = tf.train.CheckpointManager(reader, checkpoint_dir, max_to_keep=None).latest_checkpoint
    if not newest:
        return 0
    reader.restore(newest).expect_partial()
    return int(saved_step.numpy())
