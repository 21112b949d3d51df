"""
Homework 3 -- VGG16 transfer learning

keras.Sequential model; training with model.fit where every epoch is one batch,
so epoch number = global step and resuming uses initial_epoch.
"""

import os

import numpy as np
import tensorflow as tf
import keras

SEED = 1234  # not used anymore
PIXEL_MEAN = [123.68, 116.779, 103.939]
NETWORK = [
    ("conv1_1", 64), ("conv1_2", 64), ("pool1", None),
    ("conv2_1", 128), ("conv2_2", 128), ("pool2", None),
    ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), ("pool3", None),
]


def _checkpoint_object(model, optimizer=None, step=None):
    tracked = dict(model=model)
    if optimizer is not None:
        tracked["optimizer"] = optimizer
    if step is not None:
        tracked["step"] = step
    return tf.train.Checkpoint(**tracked)


def restore_checkpoint(model, checkpoint_dir):
    if not checkpoint_dir:
        return 0
    newest = tf.train.latest_checkpoint(checkpoint_dir)
    if newest is None:
        return 0
    restored_step = tf.Variable(0, dtype=tf.int64, trainable=False)
    status = _checkpoint_object(model, step=restored_step).restore(newest)
    status.expect_partial()
    return int(restored_step.numpy())


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        buffer = len(images)  # whole dataset
        ds = ds.shuffle(buffer_size=buffer, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=False)
    if repeat:
        ds = ds.repeat()
    return ds.prefetch(tf.data.AUTOTUNE)


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    adam = keras.optimizers.Adam(learning_rate=learning_rate)
    loss_obj = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    acc_metric = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(optimizer=adam, loss=loss_obj, metrics=[acc_metric])
    adam.build(model.trainable_variables)

    gstep = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    saver = None
    if checkpoint_dir:
        ckpt = _checkpoint_object(model, adam, gstep)
        saver = tf.train.CheckpointManager(ckpt, checkpoint_dir, max_to_keep=max_to_keep)
        latest = saver.latest_checkpoint
        if latest:
            ckpt.restore(latest).assert_existing_objects_matched()
            print("Restored %s (step %d)" % (latest, int(gstep.numpy())))

    initial = int(gstep.numpy())
    summary = {"final_step": initial, "loss": [], "accuracy": [],
               "val_loss": [], "val_accuracy": []}
    if initial >= steps:
        return summary
    assert steps > initial

    callbacks = [SaveEveryN(gstep, saver, checkpoint_every, steps)]
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch"))

    fit_result = model.fit(train_ds, epochs=steps, initial_epoch=initial, steps_per_epoch=1,
                           validation_data=val_ds, validation_freq=checkpoint_every,
                           callbacks=callbacks, shuffle=False, verbose=0)
    logged = fit_result.history

    for key in summary:
        if key in logged:
            summary[key] = list(map(float, logged[key]))
    summary["final_step"] = int(gstep.numpy())
    return summary


class SaveEveryN(keras.callbacks.Callback):
    def __init__(self, step, manager, every, last_step):
        super().__init__()
        self.step, self.manager = step, manager
        self.every, self.last_step = every, last_step
        self.saved = []  # debugging

    def on_train_batch_end(self, batch, logs=None):
        self.step.assign_add(1)

    def on_epoch_end(self, epoch, logs=None):
        if self.manager is None:
            return
        now = int(self.step.numpy())
        should_save = now % self.every == 0 or now >= self.last_step
        if should_save:
            self.manager.save(checkpoint_number=now)


def preprocess(images):
    mean = tf.constant(PIXEL_MEAN, dtype=tf.float32)
    return tf.cast(images, tf.float32) - mean


class PreprocessLayer(keras.layers.Layer):
    def call(self, inputs):
        return preprocess(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


def _describe(model):
    # prints the layer names, used while debugging
    for layer in model.layers:
        print(layer.name, layer.trainable)


def build_model(weights, num_classes=10):
    body = [keras.layers.MaxPooling2D(pool_size=2, strides=2, name=name) if filters is None
            else keras.layers.Conv2D(filters, 3, strides=1, padding="same",
                                     activation="relu", name=name)
            for name, filters in NETWORK]
    model = keras.Sequential(
        [keras.Input(shape=(32, 32, 3), dtype="uint8"), PreprocessLayer(name="preprocess")]
        + body
        + [keras.layers.Flatten(name="flatten"), keras.layers.Dense(num_classes, name="fc")],
        name="vgg_transfer")

    for name, filters in NETWORK:
        if filters is None:
            continue
        conv = model.get_layer(name)
        conv.set_weights([np.asarray(weights[name + "_W"], dtype=np.float32),
                          np.asarray(weights[name + "_b"], dtype=np.float32)])
        conv.trainable = False
    return model
