"""Transfer learning on top of a frozen VGG16 (blocks 1-3), Keras-3 style.

The model itself only uses ``keras`` / ``keras.ops`` (no TensorFlow calls),
so it is as backend-agnostic as the exercise allows.  The pieces that are
TensorFlow by contract -- tf.data, tf.train.Checkpoint, tf.summary -- live
in make_dataset / train / restore_checkpoint.
"""

import os

import numpy as np
import keras
from keras import ops
import tensorflow as tf


MEAN_RGB = np.array([123.68, 116.779, 103.939], dtype="float32")

VGG_BLOCKS = (
    # (block number, convolutions in the block, filters)
    (1, 2, 64),
    (2, 2, 128),
    (3, 3, 256),
)


def preprocess(images):
    """uint8 images [N, 32, 32, 3] -> float32 [N, 32, 32, 3] minus the ImageNet RGB mean."""
    x = ops.cast(ops.convert_to_tensor(images), "float32")
    return ops.subtract(x, ops.convert_to_tensor(MEAN_RGB))


class Preprocess(keras.layers.Layer):
    """Layer wrapper around ``preprocess`` so it is part of the model graph."""

    def call(self, inputs):
        return preprocess(inputs)


def _frozen_conv(weights, name):
    kernel = np.asarray(weights[name + "_W"], dtype="float32")
    bias = np.asarray(weights[name + "_b"], dtype="float32")
    if kernel.ndim != 4 or kernel.shape[:2] != (3, 3) or bias.shape != (kernel.shape[-1],):
        raise ValueError(f"unexpected shapes for {name}: {kernel.shape}, {bias.shape}")
    return keras.layers.Conv2D(
        filters=kernel.shape[-1],
        kernel_size=(3, 3),
        strides=(1, 1),
        padding="same",
        activation="relu",
        kernel_initializer=keras.initializers.Constant(kernel),
        bias_initializer=keras.initializers.Constant(bias),
        trainable=False,
        name=name,
    )


def build_model(weights, num_classes=10):
    inputs = keras.Input(shape=(32, 32, 3), dtype="uint8", name="image")
    x = Preprocess(name="preprocess")(inputs)
    for block, n_convs, _filters in VGG_BLOCKS:
        for i in range(1, n_convs + 1):
            x = _frozen_conv(weights, f"conv{block}_{i}")(x)
        x = keras.layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2), name=f"pool{block}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    logits = keras.layers.Dense(num_classes, name="fc")(x)
    return keras.Model(inputs=inputs, outputs=logits, name="vgg16_frozen_fc")


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    n = len(images)
    ds = tf.data.Dataset.from_tensor_slices((np.asarray(images), np.asarray(labels)))
    if shuffle:
        ds = ds.shuffle(buffer_size=n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)  # keep the (possibly smaller) last batch
    if repeat:
        ds = ds.repeat()
    ds = ds.prefetch(buffer_size=tf.data.AUTOTUNE)
    return ds


def _loss_and_accuracy(labels, logits):
    labels = ops.cast(labels, "int32")
    loss = ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    hits = ops.equal(ops.cast(ops.argmax(logits, axis=-1), "int32"), labels)
    accuracy = ops.mean(ops.cast(hits, "float32"))
    return loss, accuracy


def _validate(model, val_ds):
    loss_sum, hit_sum, count = 0.0, 0.0, 0
    for images, labels in val_ds:
        loss, accuracy = _loss_and_accuracy(labels, model(images, training=False))
        b = int(ops.shape(labels)[0])
        loss_sum += float(loss) * b
        hit_sum += float(accuracy) * b
        count += b
    return loss_sum / max(count, 1), hit_sum / max(count, 1)


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4, checkpoint_dir=None,
          checkpoint_every=100, max_to_keep=5, log_dir=None):
    optimizer = keras.optimizers.Nadam(learning_rate=learning_rate)
    optimizer.build(model.trainable_variables)  # slots must exist before a restore
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")

    manager = None
    if checkpoint_dir:
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=global_step)
        manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=max_to_keep)
        if manager.latest_checkpoint:
            checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()

    writers = {}
    if log_dir:
        writers["train"] = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
        if val_ds is not None:
            writers["validation"] = tf.summary.create_file_writer(os.path.join(log_dir, "validation"))

    @tf.function(jit_compile=False)
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss, accuracy = _loss_and_accuracy(labels, logits)
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss, accuracy

    def log(kind, step, loss, accuracy):
        if kind in writers:
            with writers[kind].as_default(step=step):
                tf.summary.scalar("loss", loss)
                tf.summary.scalar("accuracy", accuracy)

    step = int(global_step.numpy())
    start_step = step
    # Own interval logic: the next multiple of checkpoint_every after where we start.
    interval = max(int(checkpoint_every), 1)
    next_event = (step // interval + 1) * interval

    history = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    batches = iter(train_ds)
    while step < steps:
        images, labels = next(batches)
        loss, accuracy = train_step(images, labels)
        global_step.assign_add(1)
        step += 1
        loss, accuracy = float(loss), float(accuracy)
        history["loss"].append(loss)
        history["accuracy"].append(accuracy)
        log("train", step, loss, accuracy)

        periodic = step == next_event
        if periodic:
            next_event += interval
            if val_ds is not None:
                val_loss, val_accuracy = _validate(model, val_ds)
                history["val_loss"].append((step, val_loss))
                history["val_accuracy"].append((step, val_accuracy))
                log("validation", step, val_loss, val_accuracy)
        if manager is not None and (periodic or step == steps):
            manager.save(checkpoint_number=step)

    for writer in writers.values():
        writer.flush()
    history["final_step"] = step
    history["start_step"] = start_step
    return history


def restore_checkpoint(model, checkpoint_dir):
    latest = tf.train.latest_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if not latest:
        return 0
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    tf.train.Checkpoint(model=model, step=step).restore(latest).expect_partial()
    return int(step.numpy())
