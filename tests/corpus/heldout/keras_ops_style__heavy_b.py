"""VGG16 conv1..conv3 as a fixed feature extractor, with a small trainable head."""
import os
import functools
from functools import reduce

import keras
import numpy as np
import tensorflow as tf
from keras import ops as K

AVG_COLOUR = np.array([123.68, 116.779, 103.939], dtype="float32")
LAYOUT = ((1, 2), (2, 2), (3, 3))  # (block, convs in block); widths come from the weights
ZERO_STEP_OK = True


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    count = len(images)
    steps_ = [("batch", dict(batch_size=batch_size))]
    if shuffle:
        steps_.insert(0, ("shuffle", dict(seed=seed, reshuffle_each_iteration=True,
                                          buffer_size=count)))
    if repeat:
        steps_.append(("repeat", {}))
    steps_.append(("prefetch", dict(buffer_size=tf.data.AUTOTUNE)))
    feed = tf.data.Dataset.from_tensor_slices((np.asarray(images), np.asarray(labels)))
    for method, kwargs in steps_:
        feed = getattr(feed, method)(**kwargs)
    return feed


def preprocess(images):
    floats = tf.cast(tf.convert_to_tensor(images), "float32")
    return tf.subtract(floats, tf.convert_to_tensor(AVG_COLOUR))


def _pretrained_conv(name, weights):
    w = np.asarray(weights[f"{name}_W"], dtype="float32")
    b = np.asarray(weights[f"{name}_b"], dtype="float32")
    ok = w.ndim == 4 and w.shape[:2] == (3, 3) and b.shape == (w.shape[-1],)
    if not ok:
        raise ValueError("unexpected shapes for %s: %s, %s" % (name, w.shape, b.shape))
    init = keras.initializers.Constant
    return keras.layers.Conv2D(
        name=name,
        trainable=False,
        bias_initializer=init(b),
        kernel_initializer=init(w),
        activation="relu",
        padding="same",
        strides=(1, 1),
        kernel_size=(3, 3),
        filters=w.shape[-1],
    )


class _FrozenVGG(keras.Model):
    """Functional network wrapped in a class; only `fc` has trainable weights."""

    def __init__(self, weights, num_classes):
        entry = keras.Input(name="image", dtype="uint8", shape=(32, 32, 3))
        chain = [keras.layers.Lambda(preprocess, name="preprocess")]
        for blk, n in LAYOUT:
            chain.extend(_pretrained_conv(f"conv{blk}_{i + 1}", weights) for i in range(n))
            chain.append(keras.layers.MaxPooling2D(strides=(2, 2), pool_size=(2, 2),
                                                   name=f"pool{blk}"))
        chain.append(keras.layers.Flatten(name="flatten"))
        chain.append(keras.layers.Dense(num_classes, name="fc"))
        exit_ = reduce(lambda t, layer: layer(t), chain, entry)
        super().__init__(inputs=entry, outputs=exit_, name="vgg16_frozen_fc")


def build_model(weights, num_classes=10):
    return _FrozenVGG(weights, num_classes)


def _metrics(labels, logits):
    y = tf.cast(labels, tf.int32)
    per_example = keras.losses.sparse_categorical_crossentropy(y, logits, from_logits=True)
    top = K.cast(K.argmax(logits, axis=-1), "int32")  # K.argmax guards against -0.0 ties
    return K.mean(per_example), K.mean(K.cast(tf.equal(top, y), "float32"))


def restore_checkpoint(model, checkpoint_dir):
    if not checkpoint_dir:
        return 0
    newest = tf.train.latest_checkpoint(checkpoint_dir)
    if not newest:
        return 0
    step_var = tf.Variable(0, trainable=False, dtype=tf.int64, name="global_step")
    tf.train.Checkpoint(step=step_var, model=model).restore(newest).expect_partial()
    return int(step_var.numpy())


def _over(model, val_ds):
    rows = []
    for xb, yb in val_ds:
        l, a = _metrics(yb, model(xb, training=False))
        rows.append((int(K.shape(yb)[0]), float(l), float(a)))
    n = sum(r[0] for r in rows)
    weighted_loss = sum((r[0] * r[1] for r in rows), 0.0)
    weighted_acc = sum((r[0] * r[2] for r in rows), 0.0)
    return weighted_loss / max(n, 1), weighted_acc / max(n, 1)


def _batches(one_step, train_ds, counter, start, stop):
    """Run the optimisation steps start+1 .. stop, yielding (step, loss, accuracy)."""
    stream = iter(train_ds)
    t = start
    while t < stop:
        l, a = one_step(*next(stream))
        counter.assign_add(1)
        t += 1
        yield t, float(l), float(a)


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4, checkpoint_dir=None,
          checkpoint_every=100, max_to_keep=5, log_dir=None):
    nadam = keras.optimizers.Nadam(learning_rate=learning_rate)
    nadam.build(model.trainable_variables)
    g = tf.Variable(0, name="global_step", trainable=False, dtype=tf.int64)

    keeper = None
    if checkpoint_dir:
        snap = tf.train.Checkpoint(optimizer=nadam, step=g, model=model)
        keeper = tf.train.CheckpointManager(snap, checkpoint_dir, max_to_keep=max_to_keep)
        previous = keeper.latest_checkpoint
        if previous:
            snap.restore(previous).assert_existing_objects_matched()

    runs = []
    if log_dir:
        runs = ["train"] + (["validation"] if val_ds is not None else [])
    sinks = {r: tf.summary.create_file_writer(os.path.join(log_dir, r)) for r in runs}

    def write(run, t, pair):
        if run not in sinks:
            return
        with sinks[run].as_default(step=t):
            for tag, value in zip(("loss", "accuracy"), pair):
                tf.summary.scalar(tag, value)

    @functools.partial(tf.function, jit_compile=False)
    def one_step(xb, yb):
        with tf.GradientTape() as tape:
            pair = _metrics(yb, model(xb, training=True))
        vs = model.trainable_variables
        nadam.apply_gradients(zip(tape.gradient(pair[0], vs), vs))
        return pair

    period = max(int(checkpoint_every), 1)
    begin = t = int(g.numpy())
    out = dict(loss=[], accuracy=[], val_loss=[], val_accuracy=[])
    for t, l, a in _batches(one_step, train_ds, g, begin, steps):
        out["loss"] += [l]
        out["accuracy"] += [a]
        write("train", t, (l, a))
        hit = not t % period
        if val_ds is not None and hit:
            vl, va = _over(model, val_ds)
            out["val_loss"] += [(t, vl)]
            out["val_accuracy"] += [(t, va)]
            write("validation", t, (vl, va))
        if keeper is not None and (t == steps or hit):
            keeper.save(checkpoint_number=t)

    for s in sinks.values():
        s.flush()
    out.update(final_step=t, start_step=begin)
    return out
