"""CIFAR-10 transfer learning: the first three VGG16 stages (weights fixed) and a
trainable linear read-out.

Network code is written against keras / keras.ops only, so nothing in the model is
tied to TensorFlow; tf is used where the assignment requires it (input pipeline,
checkpoints, TensorBoard summaries, the compiled update step).
"""
import os.path as osp

import numpy as np
import tensorflow as tf
import keras
from keras import ops as K
from keras.layers import Dense, Flatten, MaxPooling2D, Conv2D, Layer
from keras.initializers import Constant

SANITY_CHECKS = True

_AVG_PIXEL = np.array([123.68, 116.779, 103.939], dtype="float32")  # ImageNet, RGB order

# stage id -> how many 3x3 convolutions it has (the widths come from the weights file)
_STAGE_DEPTH = {1: 2, 2: 2, 3: 3}


def preprocess(images):
    """Map uint8 pixels [N, 32, 32, 3] to float32 minus the ImageNet RGB mean."""
    pix = K.convert_to_tensor(images)
    return K.subtract(K.cast(pix, "float32"), K.convert_to_tensor(_AVG_PIXEL))


class Centre(Layer):
    """Puts `preprocess` inside the network as a layer of its own."""

    def call(self, inputs):
        return preprocess(inputs)


def _pretrained_conv(name, kernel, bias):
    return Conv2D(
        name=name,
        trainable=False,
        bias_initializer=Constant(bias),
        kernel_initializer=Constant(kernel),
        activation="relu",
        padding="same",
        strides=(1, 1),
        kernel_size=(3, 3),
        filters=kernel.shape[-1],
    )


def _check(name, kernel, bias):
    ok = kernel.ndim == 4 and kernel.shape[:2] == (3, 3) and bias.shape == (kernel.shape[-1],)
    if not ok:
        raise ValueError("bad weight shapes for %s: %s / %s" % (name, kernel.shape, bias.shape))


def _feature_layers(weights):
    """Generate the frozen VGG layers in order, pools included."""
    for stage in sorted(_STAGE_DEPTH):
        for idx in range(_STAGE_DEPTH[stage]):
            tag = "conv{}_{}".format(stage, idx + 1)
            w = np.asarray(weights[tag + "_W"], dtype="float32")
            b = np.asarray(weights[tag + "_b"], dtype="float32")
            if SANITY_CHECKS:
                _check(tag, w, b)
            yield _pretrained_conv(tag, w, b)
        yield MaxPooling2D(strides=(2, 2), pool_size=(2, 2), name="pool%d" % stage)


def build_model(weights, num_classes=10):
    stack = [keras.Input(dtype="uint8", shape=(32, 32, 3), name="image"), Centre(name="preprocess")]
    stack.extend(_feature_layers(weights))
    stack += [Flatten(name="flatten"), Dense(num_classes, name="fc")]
    return keras.Sequential(stack, name="vgg16_frozen_fc")


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    x, y = np.asarray(images), np.asarray(labels)
    data = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        data = data.shuffle(seed=seed, buffer_size=len(images), reshuffle_each_iteration=True)
    data = data.batch(batch_size)  # last, shorter batch is kept
    if repeat:
        data = data.repeat()
    return data.prefetch(buffer_size=tf.data.AUTOTUNE)


def _objective(logits, targets):
    targets = K.cast(targets, "int32")
    xent = keras.losses.sparse_categorical_crossentropy(targets, logits, from_logits=True)
    guess = K.cast(K.argmax(logits, axis=-1), "int32")
    return K.mean(xent), K.mean(K.cast(K.equal(guess, targets), "float32"))


def _validate(model, val_ds):
    acc_loss = acc_hits = 0.0
    n_seen = 0
    for xb, yb in val_ds:
        l, a = _objective(model(xb, training=False), yb)
        m = int(K.shape(yb)[0])
        acc_loss, acc_hits, n_seen = acc_loss + float(l) * m, acc_hits + float(a) * m, n_seen + m
    denom = max(n_seen, 1)
    return acc_loss / denom, acc_hits / denom


def _open_writers(log_dir, with_validation):
    if not log_dir:
        return {}
    names = ["train"] + (["validation"] if with_validation else [])
    return {n: tf.summary.create_file_writer(osp.join(log_dir, n)) for n in names}


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4, checkpoint_dir=None,
          checkpoint_every=100, max_to_keep=5, log_dir=None):
    step_var = tf.Variable(0, name="global_step", trainable=False, dtype=tf.int64)
    opt = keras.optimizers.Nadam(learning_rate=learning_rate)
    opt.build(model.trainable_variables)  # restore needs the slot variables to exist

    mgr = None
    if checkpoint_dir:
        ckpt = tf.train.Checkpoint(step=step_var, optimizer=opt, model=model)
        mgr = tf.train.CheckpointManager(ckpt, checkpoint_dir, max_to_keep=max_to_keep)
        if mgr.latest_checkpoint:
            ckpt.restore(mgr.latest_checkpoint).assert_existing_objects_matched()

    sinks = _open_writers(log_dir, val_ds is not None)

    def record(which, at, loss_value, acc_value):
        sink = sinks.get(which)
        if sink is None:
            return
        with sink.as_default():
            tf.summary.scalar("loss", loss_value, step=at)
            tf.summary.scalar("accuracy", acc_value, step=at)

    @tf.function(jit_compile=False)
    def update(xb, yb):
        with tf.GradientTape() as tape:
            l, a = _objective(model(xb, training=True), yb)
        params = model.trainable_variables
        grads = tape.gradient(l, params)
        opt.apply_gradients(zip(grads, params))
        return l, a

    first = int(step_var.numpy())
    every = max(int(checkpoint_every), 1)
    out = dict(loss=[], accuracy=[], val_loss=[], val_accuracy=[])
    feed = iter(train_ds)

    for at in range(first + 1, steps + 1):
        l, a = update(*next(feed))
        step_var.assign_add(1)
        l, a = float(l), float(a)
        out["loss"].append(l)
        out["accuracy"].append(a)
        record("train", at, l, a)

        on_period = at % every == 0
        if on_period and val_ds is not None:
            vl, va = _validate(model, val_ds)
            out["val_loss"].append((at, vl))
            out["val_accuracy"].append((at, va))
            record("validation", at, vl, va)
        if mgr is not None and (on_period or at == steps):
            mgr.save(checkpoint_number=at)

    list(map(lambda s: s.flush(), sinks.values()))
    out["final_step"] = max(first, steps)
    out["start_step"] = first
    return out


def restore_checkpoint(model, checkpoint_dir):
    if not checkpoint_dir:
        return 0
    newest = tf.train.latest_checkpoint(checkpoint_dir)
    if not newest:
        return 0
    found = tf.Variable(0, name="global_step", trainable=False, dtype=tf.int64)
    tf.train.Checkpoint(step=found, model=model).restore(newest).expect_partial()
    return int(found.numpy())
