"""Frozen VGG16 (blocks 1-3) feature extractor + trainable linear classifier.

Functional Keras model: a Lambda layer does the ImageNet mean subtraction,
stock Conv2D layers are built up front and loaded with the VGG weights, and
only the final Dense layer is trained (AdamW).  The global step is the
optimizer's own `iterations` counter, which is checkpointed with it.
"""

import os

import numpy as np
import tensorflow as tf
import keras

VGG_MEAN = np.array([123.68, 116.779, 103.939], dtype=np.float32)  # RGB

# (layer name, filters, input channels) in model order; None marks a 2x2 max pool
ARCHITECTURE = [
    ("conv1_1", 64, 3), ("conv1_2", 64, 64), None,
    ("conv2_1", 128, 64), ("conv2_2", 128, 128), None,
    ("conv3_1", 256, 128), ("conv3_2", 256, 256), ("conv3_3", 256, 256), None,
]


def preprocess(images):
    images = tf.convert_to_tensor(images)
    return tf.cast(images, tf.float32) - VGG_MEAN


def _frozen_conv(name, filters, in_channels, weights):
    conv = keras.layers.Conv2D(filters, kernel_size=3, strides=1, padding="same",
                               activation="relu", use_bias=True, name=name)
    conv.build((None, None, None, in_channels))
    conv.set_weights([np.asarray(weights[name + "_W"], np.float32),
                      np.asarray(weights[name + "_b"], np.float32)])
    conv.trainable = False
    return conv


def build_model(weights, num_classes=10):
    images = keras.Input(shape=(32, 32, 3), dtype="uint8", name="image")
    net = keras.layers.Lambda(preprocess, name="preprocess")(images)

    pool_count = 0
    for spec in ARCHITECTURE:
        if spec is None:
            pool_count += 1
            net = keras.layers.MaxPooling2D(pool_size=2, strides=2,
                                            name=f"pool{pool_count}")(net)
        else:
            net = _frozen_conv(*spec, weights)(net)

    net = keras.layers.Flatten(name="flatten")(net)
    logits = keras.layers.Dense(num_classes, activation=None,
                                kernel_initializer="he_normal", name="fc")(net)
    return keras.Model(inputs=images, outputs=logits, name="vgg_transfer")


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        dataset = dataset.shuffle(buffer_size=len(labels), seed=seed,
                                  reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if repeat:
        dataset = dataset.repeat()
    return dataset.prefetch(buffer_size=tf.data.AUTOTUNE)


def _loss_fn(labels, logits):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(labels, tf.int64), logits=logits)


def _n_correct(labels, logits):
    predictions = tf.argmax(logits, axis=-1)
    return tf.reduce_sum(tf.cast(tf.equal(predictions, tf.cast(labels, tf.int64)), tf.float32))


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    optimizer = keras.optimizers.AdamW(learning_rate=learning_rate)
    optimizer.build(model.trainable_variables)

    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    manager = None
    if checkpoint_dir:
        manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir,
                                             max_to_keep=max_to_keep)
        if manager.latest_checkpoint is not None:
            checkpoint.restore(manager.latest_checkpoint)
    start = int(optimizer.iterations.numpy())

    train_writer = val_writer = None
    if log_dir:
        train_writer = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
        if val_ds is not None:
            val_writer = tf.summary.create_file_writer(os.path.join(log_dir, "validation"))

    @tf.function
    def train_step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(_loss_fn(y, logits))
        variables = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        accuracy = _n_correct(y, logits) / tf.cast(tf.shape(logits)[0], tf.float32)
        return loss, accuracy

    @tf.function
    def val_step(x, y):
        logits = model(x, training=False)
        return tf.reduce_sum(_loss_fn(y, logits)), _n_correct(y, logits), tf.shape(logits)[0]

    def run_validation():
        loss_sum, correct, seen = 0.0, 0.0, 0
        for x, y in val_ds:
            l, c, n = val_step(x, y)
            loss_sum += l.numpy()
            correct += c.numpy()
            seen += int(n)
        return loss_sum / seen, correct / seen

    history = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    batches = iter(train_ds)
    step = start
    while step < steps:
        x, y = next(batches)
        loss, accuracy = train_step(x, y)
        step = int(optimizer.iterations.numpy())
        history["loss"].append(float(loss))
        history["accuracy"].append(float(accuracy))
        if train_writer is not None:
            with train_writer.as_default(step=step):
                tf.summary.scalar("loss", loss)
                tf.summary.scalar("accuracy", accuracy)

        if step % checkpoint_every == 0 and val_ds is not None:
            val_loss, val_accuracy = run_validation()
            history["val_loss"].append((step, float(val_loss)))
            history["val_accuracy"].append((step, float(val_accuracy)))
            print(f"[{step}/{steps}] train loss={float(loss):.4f} "
                  f"val loss={val_loss:.4f} val acc={val_accuracy:.3f}")
            if val_writer is not None:
                with val_writer.as_default(step=step):
                    tf.summary.scalar("loss", val_loss)
                    tf.summary.scalar("accuracy", val_accuracy)
        if manager is not None and (step % checkpoint_every == 0 or step == steps):
            manager.save(checkpoint_number=step)

    for writer in (train_writer, val_writer):
        if writer is not None:
            writer.flush()

    return {"final_step": step, "start_step": start, **history}


def restore_checkpoint(model, checkpoint_dir):
    path = tf.train.latest_checkpoint(checkpoint_dir)
    if path is None:
        return 0
    optimizer = keras.optimizers.AdamW()
    tf.train.Checkpoint(model=model, optimizer=optimizer).restore(path).expect_partial()
    return int(optimizer.iterations.numpy())
