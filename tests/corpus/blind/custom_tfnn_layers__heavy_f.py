"""Frozen VGG16 features (three blocks) + a learned linear read-out, for CIFAR-10.

Instead of the stock Keras convolution layers, this module defines its own
minimal layers that call ``tf.nn`` directly.  The VGG parameters live in
plain ``tf.Variable``s created with ``trainable=False`` so no optimizer can
ever change them -- the single Dense layer at the end is the only thing that
is fitted.  Training is a hand-written GradientTape loop.
"""
import functools
import operator

import numpy as np
import tensorflow as tf
import keras
from keras import layers as kl

VERBOSE_CHECKS = True

IMAGENET_MEAN_RGB = [123.68, 116.779, 103.939]

# (block number, conv count) -- each block closes with a 2x2 max pool
VGG_BLOCKS = [(1, 2), (2, 2), (3, 3)]

_TRAIN_TAGS = ("train/loss", "train/accuracy")
_VAL_TAGS = ("validation/loss", "validation/accuracy")


def preprocess(images):
    """uint8 RGB batch -> float32 on the 0..255 scale with the ImageNet mean taken off."""
    as_float = tf.cast(tf.convert_to_tensor(images), dtype=tf.float32)
    return tf.math.subtract(as_float, tf.constant(IMAGENET_MEAN_RGB, dtype=tf.float32))


# ---------------------------------------------------------------- layers ----

class CenterPixels(kl.Layer):
    def call(self, inputs):
        return preprocess(inputs)


class LockedConv3x3(kl.Layer):
    """Fixed 3x3 convolution (stride 1, SAME) followed by bias and ReLU.

    Keras 3 only tracks ``keras.Variable``s on its own, so the two raw
    ``tf.Variable``s are reported through overridden ``weights``/``variables``
    (filter first, bias second); everything else Keras derives from those.
    """

    def __init__(self, filt, shift, **kw):
        kw.setdefault("trainable", False)
        super().__init__(**kw)
        filt = np.asarray(filt, dtype=np.float32)
        shift = np.asarray(shift, dtype=np.float32)
        self._validate(filt, shift)
        self.kernel = tf.Variable(filt, name="kernel", trainable=False)
        self.bias = tf.Variable(shift, name="bias", trainable=False)

    def _validate(self, filt, shift):
        if filt.ndim != 4 or tuple(filt.shape[:2]) != (3, 3):
            raise ValueError(f"{self.name}: need a 3x3 filter bank, got {filt.shape}")
        if shift.shape != (filt.shape[-1],):
            raise ValueError(f"{self.name}: bias {shift.shape} vs filters {filt.shape}")

    def _pair(self):
        return [self.kernel, self.bias]

    weights = property(_pair)
    variables = property(_pair)

    def call(self, inputs):
        out = tf.nn.conv2d(input=inputs, filters=self.kernel,
                           padding="SAME", strides=[1, 1, 1, 1])
        return tf.nn.relu(tf.nn.bias_add(out, self.bias))


class HalvePool(kl.Layer):
    def call(self, inputs):
        return tf.nn.max_pool2d(inputs, padding="VALID", strides=2, ksize=2)


class ToVector(kl.Layer):
    def call(self, inputs):
        width = functools.reduce(operator.mul, [int(d) for d in inputs.shape[1:]], 1)
        return tf.reshape(inputs, [-1, width])


def _trunk(weights):
    for blk, reps in VGG_BLOCKS:
        for j in range(1, reps + 1):
            tag = "conv%d_%d" % (blk, j)
            yield LockedConv3x3(weights[tag + "_W"], weights[tag + "_b"], name=tag)
        yield HalvePool(name="pool%d" % blk)


def build_model(weights, num_classes=10):
    stack = [keras.Input(shape=(32, 32, 3), name="images", dtype="uint8"),
             CenterPixels(name="preprocess")]
    stack.extend(_trunk(weights))
    stack.append(ToVector(name="flatten"))
    # VGG activations are big; a zero-initialised read-out starts from uniform
    # class probabilities (loss log(num_classes)) rather than wild logits.
    stack.append(kl.Dense(num_classes, bias_initializer="zeros",
                          kernel_initializer="zeros", name="fc"))
    return keras.Sequential(stack, name="locked_vgg_readout")


# ------------------------------------------------------------------ data ----

def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    stages = []
    if shuffle:
        # buffer as big as the data: every epoch is a fresh full permutation
        n = len(images)
        stages.append(lambda d: d.shuffle(n, seed=seed, reshuffle_each_iteration=True))
    stages.append(lambda d: d.batch(batch_size, drop_remainder=False))
    if repeat:
        stages.append(lambda d: d.repeat())
    stages.append(lambda d: d.prefetch(tf.data.AUTOTUNE))
    return functools.reduce(lambda d, f: f(d),
                            stages, tf.data.Dataset.from_tensor_slices((images, labels)))


# -------------------------------------------------------------- training ----

def _ckpt(model, counter, opt=None):
    if opt is not None:
        return tf.train.Checkpoint(model=model, optimizer=opt, step=counter)
    return tf.train.Checkpoint(model=model, step=counter)


def restore_checkpoint(model, checkpoint_dir):
    found = tf.train.latest_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if found is None:
        return 0
    counter = tf.Variable(0, trainable=False, dtype=tf.int64)
    _ckpt(model, counter).restore(found).expect_partial()
    return int(counter.numpy())


class _Stepper:
    """Bundles the compiled update and evaluation functions."""

    def __init__(self, model, opt, counter):
        self.model, self.opt, self.counter = model, opt, counter

    @staticmethod
    def _hits(logits, y):
        guess = tf.argmax(logits, axis=1, output_type=tf.int32)
        return tf.cast(tf.equal(guess, y), tf.float32)

    @tf.function
    def update(self, x, y):
        y = tf.cast(y, tf.int32)
        params = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.model(x, training=True)
            xent = tf.math.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(logits=logits, labels=y))
        self.opt.apply_gradients(zip(tape.gradient(xent, params), params))
        self.counter.assign_add(1)
        return xent, tf.math.reduce_mean(self._hits(logits, y))

    @tf.function
    def score(self, x, y):
        y = tf.cast(y, tf.int32)
        logits = self.model(x, training=False)
        per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(logits=logits, labels=y)
        return tf.math.reduce_sum(per_example), tf.math.reduce_sum(self._hits(logits, y))

    def sweep(self, dataset):
        parts = [(float(a), float(b), int(tf.shape(y)[0]))
                 for a, b, y in ((*self.score(x, y), y) for x, y in dataset)]
        seen = sum(p[2] for p in parts)
        denom = max(seen, 1)
        return sum(p[0] for p in parts) / denom, sum(p[1] for p in parts) / denom


def _log(writer, tags, values, at):
    if writer is None:
        return
    with writer.as_default():
        for tag, value in zip(tags, values):
            tf.summary.scalar(tag, value, step=at)


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    # Adam copes with the uneven scale of the frozen features; RMSprop at 1e-4
    # overshoots in the first few updates.
    opt = keras.optimizers.Adam(learning_rate=learning_rate)
    opt.build(model.trainable_variables)  # slots exist before any restore
    counter = tf.Variable(0, trainable=False, dtype=tf.int64, name="global_step")

    mgr = None
    if checkpoint_dir is not None:
        bundle = _ckpt(model, counter, opt)
        mgr = tf.train.CheckpointManager(bundle, checkpoint_dir, max_to_keep=max_to_keep)
        last = mgr.latest_checkpoint
        if last:
            bundle.restore(last).assert_existing_objects_matched()
            print(f"resuming from {last}, step {int(counter.numpy())}")

    writer = None if log_dir is None else tf.summary.create_file_writer(log_dir)
    runner = _Stepper(model, opt, counter)

    log = {key: [] for key in ("step", "loss", "accuracy",
                               "val_step", "val_loss", "val_accuracy")}
    now = int(counter.numpy())
    last_saved = now

    if now < steps:
        batches = iter(train_ds)
        while True:
            nxt = next(batches, None)
            if nxt is None:
                break
            xent, acc = runner.update(*nxt)
            now = int(counter.numpy())
            xent = float(xent)
            acc = float(acc)
            for key, val in (("step", now), ("loss", xent), ("accuracy", acc)):
                log[key].append(val)
            _log(writer, _TRAIN_TAGS, (xent, acc), now)

            if now % checkpoint_every == 0:
                if val_ds is not None:
                    v_loss, v_acc = runner.sweep(val_ds)
                    for key, val in (("val_step", now), ("val_loss", v_loss),
                                     ("val_accuracy", v_acc)):
                        log[key].append(val)
                    print(f"[{now}] train {xent:.4f}/{acc:.3f}  "
                          f"val {v_loss:.4f}/{v_acc:.3f}")
                    _log(writer, _VAL_TAGS, (v_loss, v_acc), now)
                if mgr is not None:
                    mgr.save(checkpoint_number=now)
                    last_saved = now

            if now >= steps:
                break

        if mgr is not None and last_saved != now:
            mgr.save(checkpoint_number=now)

    if writer is not None:
        writer.flush()
        writer.close()

    if VERBOSE_CHECKS:
        assert now == int(counter.numpy())
    log["final_step"] = now
    return log
