"""Transfer learning: frozen VGG16 conv blocks 1-3 + a trainable linear classifier.

Style: the network is a subclass of keras.Model (layers built in __init__,
chained in call) and training is a hand-written eager loop with
tf.GradientTape, SGD with momentum and tf.summary scalars.
"""

import os

import numpy as np
import tensorflow as tf
import keras


# The frozen VGG features are large (0..255 inputs, no normalisation: feature
# vectors have an L2 norm of a few thousand), so the loss is very sharp in the
# fc weights. Plain SGD+momentum at lr=1e-4 overshoots and the loss blows up
# (60 -> several hundred in the first 20 steps). Two standard remedies keep the
# optimizer and the default learning rate unchanged:
#   * clip the global gradient norm, which bounds the size of every update;
#   * start the linear head at zero, so the first predictions are uniform
#     (loss = ln 10) instead of confidently wrong (glorot init on such large
#     features gives logits with a std of ~40).
GRAD_CLIP_NORM = 10.0

VGG_MEAN = tf.constant([123.68, 116.779, 103.939], dtype=tf.float32)  # RGB


def preprocess(images):
    # convert_image_dtype maps uint8 -> [0, 1]; scale back up to 0..255
    images = tf.image.convert_image_dtype(images, tf.float32) * 255.0
    return images - VGG_MEAN


def _conv(filters, name):
    return keras.layers.Conv2D(filters, kernel_size=(3, 3), strides=(1, 1),
                               padding="same", use_bias=True, activation="relu",
                               trainable=False, name=name)


def _pool(name):
    return keras.layers.MaxPooling2D(pool_size=(2, 2), strides=(2, 2), name=name)


class TransferVGG(keras.Model):

    CONV_NAMES = ("conv1_1", "conv1_2", "conv2_1", "conv2_2",
                  "conv3_1", "conv3_2", "conv3_3")

    def __init__(self, num_classes=10, **kwargs):
        super().__init__(**kwargs)
        self.preprocess_layer = keras.layers.Lambda(preprocess, name="preprocess")
        # block 1
        self.conv1_1 = _conv(64, "conv1_1")
        self.conv1_2 = _conv(64, "conv1_2")
        self.pool1 = _pool("pool1")
        # block 2
        self.conv2_1 = _conv(128, "conv2_1")
        self.conv2_2 = _conv(128, "conv2_2")
        self.pool2 = _pool("pool2")
        # block 3
        self.conv3_1 = _conv(256, "conv3_1")
        self.conv3_2 = _conv(256, "conv3_2")
        self.conv3_3 = _conv(256, "conv3_3")
        self.pool3 = _pool("pool3")
        # classifier
        self.flatten = keras.layers.Flatten(name="flatten")
        self.fc = keras.layers.Dense(num_classes, activation=None,
                                     kernel_initializer="zeros", name="fc")

    def call(self, inputs, training=False):
        x = self.preprocess_layer(inputs)
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

    def load_vgg_weights(self, weights):
        for name in self.CONV_NAMES:
            layer = getattr(self, name)
            layer.kernel.assign(np.asarray(weights[name + "_W"], dtype=np.float32))
            layer.bias.assign(np.asarray(weights[name + "_b"], dtype=np.float32))


def build_model(weights, num_classes=10):
    model = TransferVGG(num_classes=num_classes, name="transfer_vgg")
    # run one dummy batch through it so that all variables exist
    model(np.zeros((1, 32, 32, 3), dtype=np.uint8))
    model.load_vgg_weights(weights)
    return model


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.prefetch(tf.data.experimental.AUTOTUNE)
    return dataset


def restore_checkpoint(model, checkpoint_dir):
    step = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(model=model, step=step)
    path = tf.train.latest_checkpoint(checkpoint_dir)
    if path is None:
        return 0
    checkpoint.restore(path).expect_partial()
    return int(step.numpy())


def _evaluate(model, dataset, loss_fn):
    total_loss, total_correct, total_count = 0.0, 0, 0
    for images, labels in dataset:
        logits = model(images, training=False)
        n = int(tf.shape(labels)[0])
        total_loss += float(loss_fn(labels, logits)) * n
        predictions = tf.argmax(logits, axis=1, output_type=labels.dtype)
        total_correct += int(tf.reduce_sum(tf.cast(predictions == labels, tf.int32)))
        total_count += n
    return total_loss / max(total_count, 1), total_correct / max(total_count, 1)


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    optimizer = keras.optimizers.SGD(learning_rate, momentum=0.9,
                                     global_clipnorm=GRAD_CLIP_NORM)
    # create the momentum slots up front so that restore can fill them
    optimizer.build(model.trainable_variables)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    global_step = tf.Variable(0, dtype=tf.int64)
    manager = None
    if checkpoint_dir is not None:
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, step=global_step)
        manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=max_to_keep)
        if manager.latest_checkpoint is not None:
            checkpoint.restore(manager.latest_checkpoint)
            print("resuming from", manager.latest_checkpoint, "at step", int(global_step.numpy()))

    train_writer = val_writer = None
    if log_dir is not None:
        train_writer = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
        if val_ds is not None:
            val_writer = tf.summary.create_file_writer(os.path.join(log_dir, "val"))

    history = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    batches = iter(train_ds)
    while int(global_step.numpy()) < steps:
        images, labels = next(batches)

        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = loss_fn(labels, logits)
        variables = model.trainable_variables
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        global_step.assign_add(1)

        step = int(global_step.numpy())
        predictions = tf.argmax(logits, axis=1, output_type=labels.dtype)
        accuracy = tf.reduce_mean(tf.cast(predictions == labels, tf.float32))
        history["loss"].append(float(loss))
        history["accuracy"].append(float(accuracy))
        if train_writer is not None:
            with train_writer.as_default():
                tf.summary.scalar("loss", loss, step=step)
                tf.summary.scalar("accuracy", accuracy, step=step)

        if step % checkpoint_every == 0:
            msg = f"step {step}: loss {float(loss):.4f} acc {float(accuracy):.3f}"
            if val_ds is not None:
                val_loss, val_acc = _evaluate(model, val_ds, loss_fn)
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

    return {"final_step": int(global_step.numpy()), **history}
