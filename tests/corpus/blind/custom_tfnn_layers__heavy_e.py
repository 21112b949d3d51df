"""Frozen VGG16 feature extractor (stages 1-3) + a learned linear classifier, CIFAR-10.

Instead of the stock Keras conv / pool layers I wrote three little layer
classes on top of raw ``tf.nn`` kernels.  The ImageNet filters live in
plain ``tf.Variable``s created with ``trainable=False`` which means the
optimizer never sees them: the only thing that learns is ``fc``.
The network itself is stacked with ``keras.Sequential``.
"""
import functools
import operator

import numpy as np
import tensorflow as tf
import keras
from keras import layers as kl

IMAGENET_MEAN_RGB = [123.68, 116.779, 103.939]

# (stage, number of 3x3 convolutions, channels); every stage ends in a 2x2 max-pool
VGG_BLOCKS = [(1, 2, 64), (2, 2, 128), (3, 3, 256)]

VERBOSE_SHAPES = False


def preprocess(images):
    """uint8 RGB batch -> float32 on the 0..255 scale, ImageNet mean colour removed."""
    as_float = tf.cast(tf.convert_to_tensor(images), dtype=tf.float32)
    return tf.subtract(as_float, tf.constant(IMAGENET_MEAN_RGB, dtype=tf.float32))


# ---------------------------------------------------------------- building blocks

class MeanShift(kl.Layer):
    """Runs :func:`preprocess` as a proper layer of the network."""

    def call(self, inputs):
        return preprocess(inputs)


class LockedConvRelu(kl.Layer):
    """SAME-padded, stride-1 3x3 convolution, plus bias, then ReLU; weights never change.

    Keras 3 only tracks its own variable type, so the two plain tf.Variables are
    reported through overridden ``weights`` / ``variables`` (filter, then bias);
    everything else Keras derives (get_weights, parameter counts) follows from that.
    """

    def __init__(self, filt, shift, **options):
        options.setdefault("trainable", False)
        super().__init__(**options)
        filt = np.asarray(filt, dtype=np.float32)
        shift = np.asarray(shift, dtype=np.float32)
        assert filt.ndim == 4, f"{self.name}: need a rank-4 filter, got {filt.shape}"
        if tuple(filt.shape[:2]) != (3, 3):
            raise ValueError(f"{self.name}: filter must be 3x3, got {filt.shape}")
        if shift.shape != (filt.shape[-1],):
            raise ValueError(f"{self.name}: bias {shift.shape} vs filter {filt.shape}")
        self.kernel = tf.Variable(filt, name="kernel", trainable=False)
        self.bias = tf.Variable(shift, name="bias", trainable=False)

    def _pair(self):
        return [self.kernel, self.bias]

    weights = property(_pair)
    variables = property(_pair)

    def call(self, inputs):
        return tf.nn.relu(tf.nn.bias_add(
            tf.nn.conv2d(inputs, filters=self.kernel, padding="SAME", strides=1),
            self.bias))


class HalveMax(kl.Layer):
    """Non-overlapping 2x2 max pooling."""

    def call(self, inputs):
        return tf.nn.max_pool2d(inputs, ksize=2, padding="VALID", strides=2)


class ToVector(kl.Layer):
    """Collapse [B, H, W, C] into [B, H*W*C] with a reshape (static width kept)."""

    def call(self, inputs):
        width = functools.reduce(operator.mul, map(int, inputs.shape[1:]), 1)
        return tf.reshape(inputs, (-1, width))


def _trunk(weights):
    """Generate the frozen VGG layers in order."""
    for stage, n_convs, _channels in VGG_BLOCKS:
        for k in range(1, n_convs + 1):
            tag = f"conv{stage}_{k}"
            yield LockedConvRelu(weights[tag + "_W"], weights[tag + "_b"], name=tag)
        yield HalveMax(name=f"pool{stage}")


def build_model(weights, num_classes=10):
    stack = [keras.Input(dtype="uint8", shape=(32, 32, 3), name="images"),
             MeanShift(name="preprocess")]
    stack.extend(_trunk(weights))
    stack.append(ToVector(name="flatten"))
    # VGG activations are big (tens..hundreds): a random read-out would start with
    # enormous logits. A zero start means uniform predictions, loss log(num_classes).
    stack.append(kl.Dense(num_classes, name="fc",
                          bias_initializer="zeros", kernel_initializer="zeros"))
    net = keras.Sequential(stack, name="frozen_vgg_linear_probe")
    if VERBOSE_SHAPES:
        net.summary()
    return net


# ---------------------------------------------------------------- input pipeline

def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    pipe = tf.data.Dataset.from_tensor_slices((images, labels))
    pipe = (pipe.shuffle(len(images), reshuffle_each_iteration=True, seed=seed)
            if shuffle else pipe)  # full-size buffer -> complete reshuffle every pass
    pipe = pipe.batch(batch_size=batch_size, drop_remainder=False)
    pipe = pipe.repeat() if repeat else pipe
    return pipe.prefetch(buffer_size=tf.data.AUTOTUNE)


# ---------------------------------------------------------------- checkpoints

def _saver_for(model, counter, opt=None):
    things = {"model": model, "step": counter}
    if opt is not None:
        things["optimizer"] = opt
    return tf.train.Checkpoint(**things)


def restore_checkpoint(model, checkpoint_dir):
    if not checkpoint_dir:
        return 0
    newest = tf.train.latest_checkpoint(checkpoint_dir)
    if newest is None:
        return 0
    counter = tf.Variable(0, trainable=False, dtype=tf.int64)
    _saver_for(model, counter).restore(newest).expect_partial()
    return int(counter.numpy())


# ---------------------------------------------------------------- training

def _xent_and_hits(logits, labels):
    """Per-example cross-entropy and 0/1 correctness (float32)."""
    targets = tf.cast(labels, tf.int32)
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(logits=logits, labels=targets)
    guess = tf.math.argmax(logits, axis=1, output_type=tf.int32)
    return xent, tf.cast(tf.math.equal(guess, targets), tf.float32)


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    # Adam copes with the uneven feature scales; RMSprop at 1e-4 jumps too far early on.
    opt = keras.optimizers.Adam(learning_rate=learning_rate)
    counter = tf.Variable(0, trainable=False, dtype=tf.int64, name="global_step")
    # make the moment slots exist before any restore
    opt.build(model.trainable_variables)

    keeper = None
    if checkpoint_dir is not None:
        snap = _saver_for(model, counter, opt)
        keeper = tf.train.CheckpointManager(snap, checkpoint_dir, max_to_keep=max_to_keep)
        if keeper.latest_checkpoint:
            snap.restore(keeper.latest_checkpoint).assert_existing_objects_matched()
            print(f"picked up {keeper.latest_checkpoint}, global step "
                  f"{int(counter.numpy())}")

    sink = None if log_dir is None else tf.summary.create_file_writer(log_dir)

    def _log(prefix, at, **values):
        if sink is None:
            return
        with sink.as_default():
            for tag, value in values.items():
                tf.summary.scalar(f"{prefix}/{tag}", value, step=at)

    @tf.function
    def fit_batch(x, y):
        trainables = model.trainable_variables
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            xent, hits = _xent_and_hits(out, y)
            objective = tf.math.reduce_mean(xent)
        opt.apply_gradients(zip(tape.gradient(objective, trainables), trainables))
        counter.assign_add(1)
        return objective, tf.math.reduce_mean(hits)

    @tf.function
    def score_batch(x, y):
        xent, hits = _xent_and_hits(model(x, training=False), y)
        return tf.math.reduce_sum(xent), tf.math.reduce_sum(hits)

    def validate():
        parts = [(float(a), float(b), int(tf.shape(y)[0]))
                 for a, b, y in ((*score_batch(x, y), y) for x, y in val_ds)]
        seen = max(sum(p[2] for p in parts), 1)
        return sum(p[0] for p in parts) / seen, sum(p[1] for p in parts) / seen

    log = {k: [] for k in ("step", "loss", "accuracy", "val_step", "val_loss", "val_accuracy")}
    at = int(counter.numpy())
    last_saved = at

    batches = iter(train_ds)
    while at < steps:
        pair = next(batches, None)
        if pair is None:  # a finite training set simply ends the run early
            break
        x, y = pair
        batch_loss, batch_acc = fit_batch(x, y)
        at = int(counter.numpy())
        batch_loss, batch_acc = float(batch_loss), float(batch_acc)
        for key, val in (("step", at), ("loss", batch_loss), ("accuracy", batch_acc)):
            log[key].append(val)
        _log("train", at, loss=batch_loss, accuracy=batch_acc)

        if at % checkpoint_every:
            continue
        if val_ds is not None:
            v_loss, v_acc = validate()
            for key, val in (("val_step", at), ("val_loss", v_loss), ("val_accuracy", v_acc)):
                log[key].append(val)
            print(f"[{at}] train {batch_loss:.4f}/{batch_acc:.3f}  "
                  f"val {v_loss:.4f}/{v_acc:.3f}")
            _log("validation", at, loss=v_loss, accuracy=v_acc)
        if keeper is not None:
            keeper.save(checkpoint_number=at)
            last_saved = at

    # the final step gets a checkpoint even off the regular schedule
    if keeper is not None and last_saved != at:
        keeper.save(checkpoint_number=at)

    if sink is not None:
        sink.flush()
        sink.close()

    log["final_step"] = at
    return log
