"""Transfer learning with a frozen VGG16 front end (conv1_1 .. conv3_3).

Style: a keras.Sequential model whose layers are listed inline, and a plain
eager training loop (no graph compilation) written with tf.GradientTape.
"""
import os

import numpy as np
import tensorflow as tf
import keras
from keras import layers

# ImageNet mean colour, RGB order, on the 0..255 scale.
VGG_MEAN_RGB = [123.68, 116.779, 103.939]

CONV_SPECS = [  # (layer name, number of filters)
    ("conv1_1", 64), ("conv1_2", 64),
    ("conv2_1", 128), ("conv2_2", 128),
    ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256),
]

FC_SEED = 1


def preprocess(images):
    """uint8 RGB [N, 32, 32, 3] -> float32 [N, 32, 32, 3], 0..255 scale minus the mean."""
    images = tf.convert_to_tensor(images)
    pixels = tf.cast(images, tf.float32)
    return pixels - tf.constant(VGG_MEAN_RGB, dtype=tf.float32)


class Preprocess(layers.Layer):
    """Thin layer around the module-level `preprocess` function."""

    def call(self, inputs):
        return preprocess(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


def build_model(weights, num_classes=10):
    def frozen_conv(name, filters):
        return layers.Conv2D(filters, 3, strides=1, padding="same",
                             activation="relu", use_bias=True,
                             trainable=False, name=name)

    model = keras.Sequential([
        keras.Input(shape=(32, 32, 3), dtype="uint8"),
        Preprocess(name="preprocess"),
        frozen_conv("conv1_1", 64),
        frozen_conv("conv1_2", 64),
        layers.MaxPooling2D(pool_size=2, strides=2, name="pool1"),
        frozen_conv("conv2_1", 128),
        frozen_conv("conv2_2", 128),
        layers.MaxPooling2D(pool_size=2, strides=2, name="pool2"),
        frozen_conv("conv3_1", 256),
        frozen_conv("conv3_2", 256),
        frozen_conv("conv3_3", 256),
        layers.MaxPooling2D(pool_size=2, strides=2, name="pool3"),
        layers.Flatten(name="flatten"),
        layers.Dense(num_classes, activation=None,
                     kernel_initializer=keras.initializers.GlorotUniform(seed=FC_SEED),
                     bias_initializer="zeros", name="fc"),
    ], name="vgg16_transfer")

    # The Input layer builds every layer, so the weights can be copied in right away.
    for name, _ in CONV_SPECS:
        kernel = np.asarray(weights[name + "_W"], dtype=np.float32)
        bias = np.asarray(weights[name + "_b"], dtype=np.float32)
        model.get_layer(name).set_weights([kernel, bias])
    return model


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        # buffer = whole set -> a full shuffle of the examples, redone every epoch
        ds = ds.shuffle(buffer_size=len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=False)
    if repeat:
        ds = ds.repeat()
    return ds.prefetch(tf.data.AUTOTUNE)


def _loss_and_accuracy(logits, labels):
    labels = tf.cast(labels, tf.int64)
    loss = tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
    correct = tf.equal(tf.argmax(logits, axis=1), labels)
    accuracy = tf.reduce_mean(tf.cast(correct, tf.float32))
    return loss, accuracy


def _evaluate(model, val_ds):
    total_loss, total_correct, total_count = 0.0, 0.0, 0
    for images, labels in val_ds:
        logits = model(images, training=False)
        loss, acc = _loss_and_accuracy(logits, labels)
        n = int(tf.shape(labels)[0])
        total_loss += float(loss) * n
        total_correct += float(acc) * n
        total_count += n
    if total_count == 0:
        return float("nan"), float("nan")
    return total_loss / total_count, total_correct / total_count


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    # create Adam's slots now so a checkpoint restores straight into them
    optimizer.build(model.trainable_variables)
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")

    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, step=global_step)
    manager = None
    if checkpoint_dir is not None:
        manager = tf.train.CheckpointManager(ckpt, checkpoint_dir, max_to_keep=max_to_keep)
        if manager.latest_checkpoint:
            ckpt.restore(manager.latest_checkpoint)
            print(f"restored {manager.latest_checkpoint} at step {int(global_step)}")

    train_writer = val_writer = None
    if log_dir is not None:
        train_writer = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
        val_writer = tf.summary.create_file_writer(os.path.join(log_dir, "val"))

    history = {"step": [], "loss": [], "accuracy": [],
               "val_step": [], "val_loss": [], "val_accuracy": []}

    batches = iter(train_ds)
    while int(global_step) < steps:
        images, labels = next(batches)
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss, accuracy = _loss_and_accuracy(logits, labels)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        global_step.assign_add(1)
        step = int(global_step)

        history["step"].append(step)
        history["loss"].append(float(loss))
        history["accuracy"].append(float(accuracy))
        if train_writer is not None:
            with train_writer.as_default():
                tf.summary.scalar("loss", loss, step=step)
                tf.summary.scalar("accuracy", accuracy, step=step)

        if step % checkpoint_every == 0:
            msg = f"step {step}: loss {float(loss):.4f} acc {float(accuracy):.3f}"
            if val_ds is not None:
                val_loss, val_acc = _evaluate(model, val_ds)
                history["val_step"].append(step)
                history["val_loss"].append(val_loss)
                history["val_accuracy"].append(val_acc)
                msg += f" | val loss {val_loss:.4f} val acc {val_acc:.3f}"
                if val_writer is not None:
                    with val_writer.as_default():
                        tf.summary.scalar("loss", val_loss, step=step)
                        tf.summary.scalar("accuracy", val_acc, step=step)
            print(msg)

        if manager is not None and (step % checkpoint_every == 0 or step == steps):
            manager.save(checkpoint_number=step)

    for writer in (train_writer, val_writer):
        if writer is not None:
            writer.flush()

    history["final_step"] = int(global_step)
    return history


def restore_checkpoint(model, checkpoint_dir):
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if latest is None:
        return 0
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    # optimizer slots are in the file too; we only want the weights and the step
    tf.train.Checkpoint(model=model, step=step).restore(latest).expect_partial()
    return int(step)
