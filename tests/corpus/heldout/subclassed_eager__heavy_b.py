from functools import reduce
from os import path as _p

import keras
import numpy as np
import tensorflow as tf

# -- settings -----------------------------------------------------------------
MAX_GRAD_NORM = 10.0          # global norm clip for SGD (the frozen features are huge)
MOMENTUM = 0.9
CHANNEL_MEANS = tf.constant([123.68, 116.779, 103.939], dtype=tf.float32)
VERBOSE_RESTORE = True

# attribute name -> ("c", width) for a frozen conv, ("p",) for a pool
_ARCH = [
    ("conv1_1", ("c", 64)), ("conv1_2", ("c", 64)), ("pool1", ("p",)),
    ("conv2_1", ("c", 128)), ("conv2_2", ("c", 128)), ("pool2", ("p",)),
    ("conv3_1", ("c", 256)), ("conv3_2", ("c", 256)), ("conv3_3", ("c", 256)),
    ("pool3", ("p",)),
]
_FORWARD = ["preprocess_layer"] + [a for a, _ in _ARCH] + ["flatten", "fc"]


def preprocess(images):
    # [0,1] floats first, then back onto the 0..255 range, then centre on ImageNet
    unit = tf.image.convert_image_dtype(images, dtype=tf.float32)
    return tf.subtract(unit * 255.0, CHANNEL_MEANS)


def restore_checkpoint(model, checkpoint_dir):
    newest = tf.train.latest_checkpoint(checkpoint_dir)
    at = tf.Variable(0, dtype=tf.int64)
    if newest is not None:
        tf.train.Checkpoint(step=at, model=model).restore(newest).expect_partial()
        return int(at.numpy())
    return 0


def _make_layer(attr, spec):
    kind = spec[0]
    if kind == "c":
        return keras.layers.Conv2D(spec[1], (3, 3), (1, 1), "same", activation="relu",
                                   use_bias=True, trainable=False, name=attr)
    return keras.layers.MaxPooling2D(name=attr, strides=(2, 2), pool_size=(2, 2))


class FrozenFront(keras.Model):
    """VGG16 conv1_1..pool3 (not trained) + one linear layer (trained)."""

    def __init__(self, num_classes=10, **kw):
        super().__init__(**kw)
        setattr(self, _FORWARD[0], keras.layers.Lambda(preprocess, name="preprocess"))
        for attr, spec in _ARCH:
            setattr(self, attr, _make_layer(attr, spec))
        self.flatten = keras.layers.Flatten(name="flatten")
        self.fc = keras.layers.Dense(units=num_classes, name="fc", activation=None,
                                     kernel_initializer="zeros")

    def call(self, inputs, training=False):
        return reduce(lambda h, attr: getattr(self, attr)(h), _FORWARD, inputs)


def build_model(weights, num_classes=10):
    net = FrozenFront(name="transfer_vgg", num_classes=num_classes)
    _ = net(tf.zeros([1, 32, 32, 3], dtype=tf.uint8))
    for attr, spec in _ARCH:
        if spec[0] != "c":
            continue
        target = getattr(net, attr)
        for var, tail in ((target.kernel, "_W"), (target.bias, "_b")):
            var.assign(np.asarray(weights[attr + tail], dtype=np.float32))
    return net


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    d = tf.data.Dataset.from_tensor_slices((images, labels))
    d = d.shuffle(len(images), reshuffle_each_iteration=True, seed=seed) if shuffle else d
    d = d.batch(batch_size)
    return (d.repeat() if repeat else d).prefetch(tf.data.AUTOTUNE)


def _hits(logits, labels):
    return tf.cast(labels == tf.argmax(logits, output_type=labels.dtype, axis=1), tf.float32)


def _validation_pass(net, data, criterion):
    sizes, losses, rights = [], [], []
    for xb, yb in data:
        pred = net(xb, training=False)
        sizes.append(int(tf.shape(yb)[0]))
        losses.append(float(criterion(yb, pred)) * sizes[-1])
        rights.append(int(tf.reduce_sum(tf.cast(_hits(pred, yb), tf.int32))))
    denom = max(sum(sizes), 1)
    return sum(losses, 0.0) / denom, sum(rights) / denom


def _emit(writer, at, loss, acc):
    if writer is None:
        return
    with writer.as_default(step=at):
        tf.summary.scalar("loss", loss)
        tf.summary.scalar("accuracy", acc)


def _descend(model, opt, criterion, xb, yb):
    with tf.GradientTape() as tape:
        pred = model(xb, training=True)
        cost = criterion(yb, pred)
    params = model.trainable_variables
    opt.apply_gradients(list(zip(tape.gradient(cost, params), params)))
    return cost, pred


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    sgd = keras.optimizers.SGD(global_clipnorm=MAX_GRAD_NORM, learning_rate=learning_rate,
                               nesterov=False, momentum=MOMENTUM)
    sgd.build(model.trainable_variables)
    criterion = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    counter = tf.Variable(0, dtype=tf.int64)
    now = lambda: int(counter.numpy())

    saver = None
    if checkpoint_dir is not None:
        snapshot = tf.train.Checkpoint(optimizer=sgd, model=model, step=counter)
        saver = tf.train.CheckpointManager(snapshot, directory=checkpoint_dir,
                                           max_to_keep=max_to_keep)
        if saver.latest_checkpoint is not None:
            snapshot.restore(saver.latest_checkpoint)
            if VERBOSE_RESTORE:
                print("resuming from", saver.latest_checkpoint, "at step", now())

    tb = {}
    if log_dir is not None:
        tb["train"] = tf.summary.create_file_writer(_p.join(log_dir, "train"))
        if val_ds is not None:
            tb["val"] = tf.summary.create_file_writer(_p.join(log_dir, "val"))

    curves = dict(loss=[], accuracy=[], val_loss=[], val_accuracy=[])
    source = iter(train_ds)
    left = steps - now()
    while left > 0:
        left -= 1
        xb, yb = next(source)
        cost, pred = _descend(model, sgd, criterion, xb, yb)
        counter.assign_add(1)
        t = now()
        acc = tf.reduce_mean(_hits(pred, yb))
        curves["loss"].append(float(cost))
        curves["accuracy"].append(float(acc))
        _emit(tb.get("train"), t, cost, acc)

        boundary = not t % checkpoint_every
        if boundary:
            text = "step {}: loss {:.4f} acc {:.3f}".format(t, float(cost), float(acc))
            if val_ds is not None:
                v_loss, v_acc = _validation_pass(model, val_ds, criterion)
                curves["val_loss"] += [v_loss]
                curves["val_accuracy"] += [v_acc]
                text = "%s | val loss %.4f val acc %.3f" % (text, v_loss, v_acc)
                _emit(tb.get("val"), t, v_loss, v_acc)
            print(text)
        if saver is not None and (boundary or t == steps):
            saver.save(checkpoint_number=t)

    for w in tb.values():
        w.flush()
    return {"final_step": now(), **curves}
