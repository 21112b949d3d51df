"""Transfer learning with a frozen VGG16 trunk (first three conv blocks).

Style: a plain ``keras.Sequential`` model, trained with ``compile`` + ``fit``.
Every "epoch" of ``fit`` is exactly one optimisation step, so the epoch index
*is* the global step: resuming is just ``initial_epoch=<restored step>``.
Checkpoints are written by a small custom callback around a
``tf.train.CheckpointManager``.
"""

import os

import numpy as np
import tensorflow as tf
import keras


IMAGENET_MEAN_RGB = [123.68, 116.779, 103.939]

# (name, filters) of the VGG16 conv layers we reuse; None marks a pooling layer.
VGG_BLOCKS = [
    ("conv1_1", 64), ("conv1_2", 64), ("pool1", None),
    ("conv2_1", 128), ("conv2_2", 128), ("pool2", None),
    ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), ("pool3", None),
]


# --------------------------------------------------------------------------
# preprocessing
# --------------------------------------------------------------------------
def preprocess(images):
    """uint8 RGB [N, 32, 32, 3] -> float32, 0..255 scale minus the ImageNet mean."""
    images = tf.cast(images, tf.float32)
    return images - tf.constant(IMAGENET_MEAN_RGB, dtype=tf.float32)


class Preprocess(keras.layers.Layer):
    """Tiny layer wrapper so preprocessing lives inside the model."""

    def call(self, inputs):
        return preprocess(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


# --------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------
def build_model(weights, num_classes=10):
    layers = [keras.Input(shape=(32, 32, 3), dtype="uint8"),
              Preprocess(name="preprocess")]
    for name, filters in VGG_BLOCKS:
        if filters is None:
            layers.append(keras.layers.MaxPooling2D(pool_size=2, strides=2, name=name))
        else:
            layers.append(keras.layers.Conv2D(filters, 3, strides=1, padding="same",
                                              activation="relu", name=name))
    layers.append(keras.layers.Flatten(name="flatten"))
    layers.append(keras.layers.Dense(num_classes, name="fc"))

    model = keras.Sequential(layers, name="vgg_transfer")

    # copy the pretrained weights into the conv layers and freeze them
    for name, filters in VGG_BLOCKS:
        if filters is None:
            continue
        layer = model.get_layer(name)
        kernel = np.asarray(weights[name + "_W"], dtype=np.float32)
        bias = np.asarray(weights[name + "_b"], dtype=np.float32)
        layer.set_weights([kernel, bias])
        layer.trainable = False
    return model


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------
def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        # buffer over the whole set -> a full shuffle, reshuffled every epoch
        ds = ds.shuffle(buffer_size=len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=False)
    if repeat:
        ds = ds.repeat()
    return ds.prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------
# checkpointing
# --------------------------------------------------------------------------
class CheckpointEverySteps(keras.callbacks.Callback):
    """Counts optimisation steps and saves a checkpoint every `every` steps
    and at the very last one."""

    def __init__(self, step, manager, every, last_step):
        super().__init__()
        self.step = step
        self.manager = manager
        self.every = every
        self.last_step = last_step

    def on_train_batch_end(self, batch, logs=None):
        self.step.assign_add(1)

    def on_epoch_end(self, epoch, logs=None):
        # runs after fit's validation for this epoch (= step)
        current = int(self.step.numpy())
        if self.manager is None:
            return
        if current % self.every == 0 or current >= self.last_step:
            self.manager.save(checkpoint_number=current)


def _make_checkpoint(model, optimizer=None, step=None):
    items = {"model": model}
    if optimizer is not None:
        items["optimizer"] = optimizer
    if step is not None:
        items["step"] = step
    return tf.train.Checkpoint(**items)


def restore_checkpoint(model, checkpoint_dir):
    latest = tf.train.latest_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if latest is None:
        return 0
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    ckpt = _make_checkpoint(model, step=step)
    # the optimizer slots in the file are not needed here
    ckpt.restore(latest).expect_partial()
    return int(step.numpy())


# --------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------
def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    # create the Adam slots now so that a restore can fill them in
    optimizer.build(model.trainable_variables)

    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    manager = None
    if checkpoint_dir:
        ckpt = _make_checkpoint(model, optimizer, step)
        manager = tf.train.CheckpointManager(ckpt, checkpoint_dir, max_to_keep=max_to_keep)
        if manager.latest_checkpoint:
            ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            print(f"Restored {manager.latest_checkpoint} (step {int(step.numpy())})")

    start = int(step.numpy())
    result = {"final_step": start, "loss": [], "accuracy": [],
              "val_loss": [], "val_accuracy": []}
    if start >= steps:
        return result

    callbacks = [CheckpointEverySteps(step, manager, checkpoint_every, steps)]
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"))

    # one step per epoch: epoch number == global step number
    history = model.fit(
        train_ds,
        epochs=steps,
        initial_epoch=start,
        steps_per_epoch=1,
        validation_data=val_ds,
        validation_freq=checkpoint_every,
        callbacks=callbacks,
        shuffle=False,  # make_dataset already shuffles
        verbose=0,
    )

    for key in result:
        if key in history.history:
            result[key] = [float(v) for v in history.history[key]]
    result["final_step"] = int(step.numpy())
    return result
