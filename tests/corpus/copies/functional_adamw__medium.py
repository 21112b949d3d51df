"""Assignment: transfer learning with a frozen VGG16 front end.

Functional keras model. Mean subtraction in a Lambda layer, pretrained conv layers
(frozen), one Dense layer that is trained with AdamW. I use optimizer.iterations as
the global step because it is saved in the checkpoint anyway.
"""

import os

import numpy as np
import tensorflow as tf
import keras


LOG_EVERY = 10  # TODO use this
MEAN = np.array([123.68, 116.779, 103.939], dtype=np.float32)
SPEC = [
    ("conv1_1", 64, 3), ("conv1_2", 64, 64), None,
    ("conv2_1", 128, 64), ("conv2_2", 128, 128), None,
    ("conv3_1", 256, 128), ("conv3_2", 256, 256), ("conv3_3", 256, 256), None,
]


def restore_checkpoint(model, checkpoint_dir):
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if latest is None:
        return 0
    tmp_optimizer = keras.optimizers.AdamW()
    checkpoint = tf.train.Checkpoint(model=model, optimizer=tmp_optimizer)
    checkpoint.restore(latest).expect_partial()
    restored = int(tmp_optimizer.iterations.numpy())
    return restored


def _per_example_loss(labels, logits):
    int_labels = tf.cast(labels, tf.int64)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=int_labels, logits=logits)


def _correct_count(labels, logits):
    is_right = tf.equal(tf.argmax(logits, axis=-1), tf.cast(labels, tf.int64))
    return tf.reduce_sum(tf.cast(is_right, tf.float32))


def _accuracy_from_preds(preds, labels):
    # old version, replaced by _correct_count
    return np.mean(np.asarray(preds) == np.asarray(labels))


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    dataset = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        dataset = dataset.shuffle(buffer_size=len(labels), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    dataset = dataset.repeat() if repeat else dataset
    return dataset.prefetch(buffer_size=tf.data.AUTOTUNE)


def preprocess(images):
    as_float = tf.cast(tf.convert_to_tensor(images), tf.float32)
    return as_float - MEAN


def build_model(weights, num_classes=10):
    inputs = keras.Input(shape=(32, 32, 3), dtype="uint8", name="image")
    x = keras.layers.Lambda(preprocess, name="preprocess")(inputs)

    pools_done = 0
    idx = 0
    while idx < len(SPEC):
        entry = SPEC[idx]
        idx += 1
        if entry is None:
            pools_done += 1
            x = keras.layers.MaxPooling2D(pool_size=2, strides=2, name="pool" + str(pools_done))(x)
            continue
        x = _pretrained_conv(entry[0], entry[1], entry[2], weights)(x)

    x = keras.layers.Flatten(name="flatten")(x)
    fc = keras.layers.Dense(num_classes, activation=None, kernel_initializer="he_normal", name="fc")
    return keras.Model(inputs=inputs, outputs=fc(x), name="vgg_transfer")


def _pretrained_conv(name, filters, in_channels, weights):
    layer = keras.layers.Conv2D(filters, kernel_size=3, strides=1, padding="same",
                                activation="relu", use_bias=True, name=name)
    layer.build((None, None, None, in_channels))
    kernel = np.asarray(weights[name + "_W"], np.float32)
    bias = np.asarray(weights[name + "_b"], np.float32)
    layer.set_weights([kernel, bias])
    layer.trainable = False
    return layer


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    optimizer = keras.optimizers.AdamW(learning_rate=learning_rate)
    optimizer.build(model.trainable_variables)
    ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer)

    ckpt_manager = None
    if checkpoint_dir:
        ckpt_manager = tf.train.CheckpointManager(ckpt, checkpoint_dir, max_to_keep=max_to_keep)
        if ckpt_manager.latest_checkpoint is not None:
            ckpt.restore(ckpt_manager.latest_checkpoint)
    first = int(optimizer.iterations.numpy())

    writer_train, writer_val = None, None
    if log_dir:
        writer_train = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
        if val_ds is not None:
            writer_val = tf.summary.create_file_writer(os.path.join(log_dir, "validation"))

    @tf.function
    def do_train_step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(_per_example_loss(y, logits))
        trainable = model.trainable_variables
        grads = tape.gradient(loss, trainable)
        optimizer.apply_gradients(zip(grads, trainable))
        batch_size = tf.cast(tf.shape(logits)[0], tf.float32)
        return loss, _correct_count(y, logits) / batch_size

    @tf.function
    def do_val_step(x, y):
        logits = model(x, training=False)
        return (tf.reduce_sum(_per_example_loss(y, logits)), _correct_count(y, logits),
                tf.shape(logits)[0])

    def validate():
        parts = [do_val_step(x, y) for x, y in val_ds]
        loss_sum, n_correct, n_seen = 0.0, 0.0, 0
        for part_loss, part_correct, part_n in parts:
            loss_sum += part_loss.numpy()
            n_correct += part_correct.numpy()
            n_seen += int(part_n)
        return loss_sum / n_seen, n_correct / n_seen

    history = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    data = iter(train_ds)
    step = first
    while step < steps:
        x, y = next(data)
        loss, accuracy = do_train_step(x, y)
        step = int(optimizer.iterations.numpy())
        history["loss"].append(float(loss))
        history["accuracy"].append(float(accuracy))
        if writer_train is not None:
            with writer_train.as_default(step=step):
                tf.summary.scalar("loss", loss)
                tf.summary.scalar("accuracy", accuracy)

        at_checkpoint = step % checkpoint_every == 0
        if at_checkpoint and val_ds is not None:
            v_loss, v_acc = validate()
            history["val_loss"].append((step, float(v_loss)))
            history["val_accuracy"].append((step, float(v_acc)))
            print("[%d/%d] train loss=%.4f val loss=%.4f val acc=%.3f"
                  % (step, steps, float(loss), v_loss, v_acc))
            if writer_val is not None:
                with writer_val.as_default(step=step):
                    tf.summary.scalar("loss", v_loss)
                    tf.summary.scalar("accuracy", v_acc)
        if ckpt_manager is not None and (at_checkpoint or step == steps):
            ckpt_manager.save(checkpoint_number=step)

    for writer in [writer_train, writer_val]:
        if writer is not None:
            writer.flush()
    result = {"final_step": step, "start_step": first}
    result.update(history)
    return result
