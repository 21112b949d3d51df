"""A frozen VGG16 trunk (three conv blocks) with a learnable soft-max read-out.

Everything inside the network is written with Keras-3 ops so the model is not tied to
one backend; the input pipeline, checkpoints and summaries are TensorFlow-specific.
"""

import os.path as osp

import numpy as np
import tensorflow as tf
import keras
from keras import ops as K
from keras.losses import sparse_categorical_crossentropy as _xent

# RGB average of the ImageNet training set.
PIXEL_MEAN = np.array([123.68, 116.779, 103.939], dtype="float32")

# stage id -> (convs in stage, channels)
TRUNK = {1: (2, 64), 2: (2, 128), 3: (3, 256)}

CHECK_SHAPES = True


def preprocess(images):
    """Map uint8 RGB batches to mean-subtracted float32 on the 0..255 scale."""
    floats = K.cast(K.convert_to_tensor(images), "float32")
    return K.subtract(floats, K.convert_to_tensor(PIXEL_MEAN))


class MeanShift(keras.layers.Layer):
    """Makes `preprocess` a proper layer of the network."""

    def call(self, inputs):
        return preprocess(inputs)


def _pretrained(weights, label):
    w = np.asarray(weights[label + "_W"], dtype="float32")
    b = np.asarray(weights[label + "_b"], dtype="float32")
    if CHECK_SHAPES:
        ok = w.ndim == 4 and w.shape[:2] == (3, 3) and b.shape == (w.shape[-1],)
        if not ok:
            raise ValueError("bad shapes for %s: %s / %s" % (label, w.shape, b.shape))
    return w, b


def _trunk_layers(weights):
    for stage, (count, _channels) in sorted(TRUNK.items()):
        for idx in range(count):
            label = "conv{}_{}".format(stage, idx + 1)
            w, b = _pretrained(weights, label)
            yield keras.layers.Conv2D(
                name=label,
                trainable=False,
                bias_initializer=keras.initializers.Constant(b),
                kernel_initializer=keras.initializers.Constant(w),
                activation="relu",
                padding="same",
                strides=(1, 1),
                kernel_size=(3, 3),
                filters=w.shape[-1],
            )
        yield keras.layers.MaxPooling2D(name="pool{}".format(stage),
                                        strides=(2, 2), pool_size=(2, 2))


def build_model(weights, num_classes=10):
    stack = [keras.Input(name="image", dtype="uint8", shape=(32, 32, 3)),
             MeanShift(name="preprocess")]
    stack.extend(_trunk_layers(weights))
    stack.append(keras.layers.Flatten(name="flatten"))
    stack.append(keras.layers.Dense(num_classes, name="fc"))
    return keras.Sequential(stack, name="vgg16_trunk_readout")


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    xs, ys = np.asarray(images), np.asarray(labels)
    out = tf.data.Dataset.from_tensor_slices((xs, ys))
    if shuffle:
        out = out.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    out = out.batch(batch_size)  # the short final batch is kept
    if repeat:
        out = out.repeat()
    return out.prefetch(buffer_size=tf.data.AUTOTUNE)


def _metrics(labels, logits):
    y = K.cast(labels, "int32")
    mean_loss = K.mean(_xent(y, logits, from_logits=True))
    predicted = K.cast(K.argmax(logits, axis=-1), "int32")
    mean_acc = K.mean(K.cast(K.equal(predicted, y), "float32"))
    return mean_loss, mean_acc


def _validate(model, val_ds):
    acc_total = loss_total = 0.0
    n_total = 0
    for xb, yb in val_ds:
        l, a = _metrics(yb, model(xb, training=False))
        n = int(K.shape(yb)[0])
        loss_total, acc_total, n_total = loss_total + float(l) * n, acc_total + float(a) * n, n_total + n
    denom = max(n_total, 1)
    return loss_total / denom, acc_total / denom


class _Summaries:
    """Thin wrapper over tf.summary writers, silently skipping runs it does not have."""

    def __init__(self, root, with_validation):
        self.files = {}
        if root:
            self.files["train"] = tf.summary.create_file_writer(osp.join(root, "train"))
            if with_validation:
                self.files["validation"] = tf.summary.create_file_writer(
                    osp.join(root, "validation"))

    def write(self, run, step, loss, accuracy):
        target = self.files.get(run)
        if target is None:
            return
        with target.as_default(step=step):
            tf.summary.scalar("loss", loss)
            tf.summary.scalar("accuracy", accuracy)

    def close(self):
        for f in self.files.values():
            f.flush()


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4, checkpoint_dir=None,
          checkpoint_every=100, max_to_keep=5, log_dir=None):
    counter = tf.Variable(0, name="global_step", trainable=False, dtype=tf.int64)
    opt = keras.optimizers.Nadam(learning_rate=learning_rate)
    opt.build(model.trainable_variables)  # create the slots before any restore

    saver = None
    if checkpoint_dir:
        state = tf.train.Checkpoint(step=counter, model=model, optimizer=opt)
        saver = tf.train.CheckpointManager(state, checkpoint_dir, max_to_keep=max_to_keep)
        if saver.latest_checkpoint:
            state.restore(saver.latest_checkpoint).assert_existing_objects_matched()

    board = _Summaries(log_dir, val_ds is not None)

    @tf.function(jit_compile=False)
    def one_update(xb, yb):
        with tf.GradientTape() as tape:
            loss, acc = _metrics(yb, model(xb, training=True))
        params = model.trainable_variables
        grads = tape.gradient(loss, params)
        opt.apply_gradients(zip(grads, params))
        return loss, acc

    period = max(1, int(checkpoint_every))
    cur = begin = int(counter.numpy())
    log = dict(loss=[], accuracy=[], val_loss=[], val_accuracy=[])
    feed = iter(train_ds)
    while cur < steps:
        loss, acc = (float(t) for t in one_update(*next(feed)))
        counter.assign_add(1)
        cur += 1
        log["loss"].append(loss)
        log["accuracy"].append(acc)
        board.write("train", cur, loss, acc)

        # cur moves up one at a time, so "hit the next multiple" == "divisible".
        scheduled = cur % period == 0
        if scheduled and val_ds is not None:
            v_loss, v_acc = _validate(model, val_ds)
            log["val_loss"].append((cur, v_loss))
            log["val_accuracy"].append((cur, v_acc))
            board.write("validation", cur, v_loss, v_acc)
        if saver is not None and (scheduled or cur == steps):
            saver.save(checkpoint_number=cur)

    board.close()
    log.update(final_step=cur, start_step=begin)
    return log


def restore_checkpoint(model, checkpoint_dir):
    newest = tf.train.latest_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if not newest:
        return 0
    at = tf.Variable(0, name="global_step", trainable=False, dtype=tf.int64)
    tf.train.Checkpoint(step=at, model=model).restore(newest).expect_partial()
    return int(at.numpy())
