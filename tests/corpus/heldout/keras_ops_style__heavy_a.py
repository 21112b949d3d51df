import os

import numpy as np
import tensorflow as tf
import keras
from keras import initializers, layers, losses, optimizers

_AVG_PIXEL = np.array([123.68, 116.779, 103.939], dtype="float32")  # RGB
_CONV_COUNTS = {1: 2, 2: 2, 3: 3}  # block -> number of 3x3 convolutions
_LOG_STEPS = False


def preprocess(images):
    as_float = tf.cast(tf.convert_to_tensor(images), "float32")
    return tf.subtract(as_float, tf.convert_to_tensor(_AVG_PIXEL))


def _pretrained_conv(name, weights):
    k = np.asarray(weights[f"{name}_W"], dtype="float32")
    b = np.asarray(weights[f"{name}_b"], dtype="float32")
    shapes_ok = k.ndim == 4 and k.shape[:2] == (3, 3) and b.shape == (k.shape[-1],)
    if not shapes_ok:
        raise ValueError("unexpected shapes for %s: %s, %s" % (name, k.shape, b.shape))
    return layers.Conv2D(
        name=name,
        trainable=False,
        bias_initializer=initializers.Constant(b),
        kernel_initializer=initializers.Constant(k),
        activation="relu",
        padding="same",
        strides=(1, 1),
        kernel_size=(3, 3),
        filters=k.shape[-1],
    )


def build_model(weights, num_classes=10):
    net = keras.Sequential(name="vgg16_frozen_fc")
    net.add(keras.Input(dtype="uint8", shape=(32, 32, 3), name="image"))
    net.add(layers.Lambda(preprocess, name="preprocess"))
    for block in sorted(_CONV_COUNTS):
        idx = 1
        while idx <= _CONV_COUNTS[block]:
            net.add(_pretrained_conv(f"conv{block}_{idx}", weights))
            idx += 1
        net.add(layers.MaxPooling2D(name=f"pool{block}", strides=(2, 2), pool_size=(2, 2)))
    net.add(layers.Flatten(name="flatten"))
    net.add(layers.Dense(num_classes, name="fc"))
    return net


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    count = len(images)
    pipe = tf.data.Dataset.from_tensor_slices((np.asarray(images), np.asarray(labels)))
    if shuffle:
        pipe = pipe.shuffle(seed=seed, buffer_size=count, reshuffle_each_iteration=True)
    pipe = pipe.batch(batch_size)
    if repeat:
        pipe = pipe.repeat()
    return pipe.prefetch(buffer_size=tf.data.AUTOTUNE)


def _objective(labels, logits):
    y = tf.cast(labels, "int32")
    xent = losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    right = tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), y)
    return tf.reduce_mean(xent), tf.reduce_mean(tf.cast(right, "float32"))


def _score(net, data):
    totals = np.zeros(2)
    seen = 0
    for x, y in data:
        l, a = _objective(y, net(x, training=False))
        n = int(tf.shape(y)[0])
        totals += (float(l) * n, float(a) * n)
        seen += n
    d = max(seen, 1)
    return float(totals[0]) / d, float(totals[1]) / d


def restore_checkpoint(model, checkpoint_dir):
    if not checkpoint_dir:
        return 0
    found = tf.train.latest_checkpoint(checkpoint_dir)
    if not found:
        return 0
    gs = tf.Variable(0, name="global_step", trainable=False, dtype=tf.int64)
    tf.train.Checkpoint(step=gs, model=model).restore(found).expect_partial()
    return int(gs.numpy())


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4, checkpoint_dir=None,
          checkpoint_every=100, max_to_keep=5, log_dir=None):
    nadam = optimizers.Nadam(learning_rate=learning_rate)
    nadam.build(model.trainable_variables)
    gs = tf.Variable(0, name="global_step", trainable=False, dtype=tf.int64)

    keeper = None
    if checkpoint_dir:
        snapshot = tf.train.Checkpoint(step=gs, optimizer=nadam, model=model)
        keeper = tf.train.CheckpointManager(snapshot, checkpoint_dir, max_to_keep=max_to_keep)
        if keeper.latest_checkpoint:
            snapshot.restore(keeper.latest_checkpoint).assert_existing_objects_matched()

    sinks = {}
    if log_dir:
        wanted = ["train"] + (["validation"] if val_ds is not None else [])
        sinks = {run: tf.summary.create_file_writer(os.path.join(log_dir, run)) for run in wanted}

    def _step_fn(x, y):
        with tf.GradientTape() as tape:
            l, a = _objective(y, model(x, training=True))
        tv = model.trainable_variables
        grads = tape.gradient(l, tv)
        nadam.apply_gradients(zip(grads, tv))
        return l, a

    step_fn = tf.function(_step_fn, jit_compile=False)

    def _write(run, at, l, a):
        sink = sinks.get(run)
        if sink is None:
            return
        with sink.as_default():
            tf.summary.scalar("loss", l, step=at)
            tf.summary.scalar("accuracy", a, step=at)

    at = int(gs.numpy())
    first = at
    every = max(int(checkpoint_every), 1)
    out = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    stream = iter(train_ds)
    while at < steps:
        x, y = next(stream)
        l, a = step_fn(x, y)
        gs.assign_add(1)
        at = at + 1
        l, a = float(l), float(a)
        out["loss"].append(l)
        out["accuracy"].append(a)
        _write("train", at, l, a)
        if _LOG_STEPS:
            print(at, l, a)

        boundary = at % every == 0
        if boundary and val_ds is not None:
            vl, va = _score(model, val_ds)
            out["val_loss"].append((at, vl))
            out["val_accuracy"].append((at, va))
            _write("validation", at, vl, va)
        if keeper is not None and (boundary or at == steps):
            keeper.save(checkpoint_number=at)

    for sink in sinks.values():
        sink.flush()
    out["final_step"] = at
    out["start_step"] = first
    return out
