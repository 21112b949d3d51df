"""Frozen VGG16 (up to conv3_3) + a trainable dense head, as a keras.Model subclass.

Training goes through model.compile / model.fit; checkpoints are handled by a small
custom callback around tf.train.CheckpointManager.
"""
import numpy as np
import tensorflow as tf
import keras

IMAGENET_MEAN = tf.constant([123.68, 116.779, 103.939], dtype=tf.float32)  # R, G, B
VGG_CONV_NAMES = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3")


def preprocess(images):
    # uint8 -> [0, 1] floats -> back to the 0..255 scale VGG was trained on, then centre
    x = tf.image.convert_image_dtype(images, tf.float32) * 255.0
    return x - IMAGENET_MEAN


class VGGTransfer(keras.Model):
    def __init__(self, num_classes=10, **kwargs):
        super().__init__(**kwargs)
        conv = dict(kernel_size=(3, 3), strides=(1, 1), padding="same",
                    activation="relu", trainable=False)
        # attribute order == layer order in model.layers
        self.preprocess_layer = keras.layers.Lambda(preprocess, name="preprocess")
        self.conv1_1 = keras.layers.Conv2D(64, name="conv1_1", **conv)
        self.conv1_2 = keras.layers.Conv2D(64, name="conv1_2", **conv)
        self.pool1 = keras.layers.MaxPool2D(pool_size=(2, 2), strides=(2, 2), name="pool1")
        self.conv2_1 = keras.layers.Conv2D(128, name="conv2_1", **conv)
        self.conv2_2 = keras.layers.Conv2D(128, name="conv2_2", **conv)
        self.pool2 = keras.layers.MaxPool2D(pool_size=(2, 2), strides=(2, 2), name="pool2")
        self.conv3_1 = keras.layers.Conv2D(256, name="conv3_1", **conv)
        self.conv3_2 = keras.layers.Conv2D(256, name="conv3_2", **conv)
        self.conv3_3 = keras.layers.Conv2D(256, name="conv3_3", **conv)
        self.pool3 = keras.layers.MaxPool2D(pool_size=(2, 2), strides=(2, 2), name="pool3")
        self.flatten = keras.layers.Flatten(name="flatten")
        self.fc = keras.layers.Dense(num_classes, name="fc")  # logits, default init

    def call(self, images, training=False):
        x = self.preprocess_layer(images)
        x = self.conv1_1(x)
        x = self.conv1_2(x)
        x = self.pool1(x)
        x = self.conv2_1(x)
        x = self.conv2_2(x)
        x = self.pool2(x)
        x = self.conv3_1(x)
        x = self.conv3_2(x)
        x = self.conv3_3(x)
        x = self.pool3(x)
        x = self.flatten(x)
        return self.fc(x)


def build_model(weights, num_classes=10):
    model = VGGTransfer(num_classes=num_classes, name="vgg_transfer")
    model(np.zeros((1, 32, 32, 3), dtype=np.uint8))  # creates all the variables
    for name in VGG_CONV_NAMES:
        model.get_layer(name).set_weights([
            np.asarray(weights[f"{name}_W"], dtype=np.float32),
            np.asarray(weights[f"{name}_b"], dtype=np.float32),
        ])
    return model


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.prefetch(buffer_size=tf.data.AUTOTUNE)
    return dataset


class CheckpointCallback(keras.callbacks.Callback):
    """Counts global steps and saves model + optimizer + step with a CheckpointManager."""

    def __init__(self, checkpoint, step, manager, every, last_step):
        super().__init__()
        self.checkpoint = checkpoint
        self.step = step
        self.manager = manager
        self.every = every
        self.last_step = last_step

    def on_train_batch_end(self, batch, logs=None):
        self.step.assign_add(1)
        step = int(self.step.numpy())
        if self.manager is not None and (step % self.every == 0 or step == self.last_step):
            path = self.manager.save(checkpoint_number=step)
            print(f"step {step}: saved {path}")


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
    optimizer.build(model.trainable_variables)  # so Adam's slots can be restored into

    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)
    manager = None
    if checkpoint_dir:
        manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=max_to_keep)
        if manager.latest_checkpoint:
            checkpoint.restore(manager.latest_checkpoint)
            print(f"resuming from {manager.latest_checkpoint} (step {int(step.numpy())})")

    start = int(step.numpy())
    if start >= steps:
        return {"final_step": start, "history": {}}

    callbacks = [CheckpointCallback(checkpoint, step, manager, checkpoint_every, steps)]
    if log_dir:
        callbacks.append(keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="batch"))

    # One Keras "epoch" == one training step, so epoch numbers are global step numbers:
    # resuming is just initial_epoch=start, and validation_freq=checkpoint_every makes
    # the validation pass land on every multiple of checkpoint_every.  With a fixed
    # steps_per_epoch Keras keeps a single iterator over train_ds for the whole fit.
    history = model.fit(
        train_ds,
        epochs=steps,
        initial_epoch=start,
        steps_per_epoch=1,
        validation_data=val_ds,
        validation_freq=checkpoint_every,
        callbacks=callbacks,
        verbose=0,
    )
    return {"final_step": int(step.numpy()), "history": history.history}


def restore_checkpoint(model, checkpoint_dir):
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if not latest:
        return 0
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    tf.train.Checkpoint(model=model, step=step).restore(latest).expect_partial()
    return int(step.numpy())
