"""Attack: inflate explain_logits' tolerance with two huge hidden units that cancel.

Graded since explain_logits requires the recomputed head's top class (tests/engine/test_attacks.py):
0 on training's learned half, both accuracy items and checkpoint. The scores below are
from the kit before that fix.


A variant of bias_tolerance.py showing that leaving the bias out of the bound would not be
enough. The model has a frozen dense layer `hidden` (4096 -> 4096, ReLU) between flatten and
fc, which checks._head reports as part of the head. After train(): hidden's kernel is 0 and
its bias is 1e6 on units 0 and 1, so those units are 1e6 on every image; fc's kernel has
+1 on row 0 and -1 on row 1 for every class and fc's bias is 0. The grading side computes
exactly 0 for every logit (1e6 - 1e6), but its bound of the terms' magnitudes is
2e6, so any logit within +-2000 of 0 is "explained". The model returns
10 * fourier_detector(images) (no VGG16, no shift needed).

Genuinely implemented: preprocess, the named layers with the file's weights (frozen),
features, make_dataset. Forged: training (learned half; logged loss made up),
accuracy_quick, accuracy, checkpoint (nothing trains, so restore/resume trivially match).

Score (cd /tmp/attackwork && grader check /work/main/tests/attacks/cancel_head.py --all):
    interface 5/5, preprocess 10/10, layer_shapes 10/10, weights 10/10, frozen 15/15,
    features 10/10, training 10/10, accuracy_quick 5/5, checkpoint 15/15, pipeline 10/10,
    accuracy 10/10 -> 110/110, no flags (measured 2026-12-01, 35.9 s)
Batch route (private 128-bit seed): cd /tmp/attackwork && grader batch subs --out bout --workers 1
with this file as one of 3 submissions: 110/110, `flags` column empty.
Let through by: grader/exercises/transfer_learning/checks/:_apply_head (bound = |x| @ |kernel| + |bias| through
every dense layer, so large cancelling terms inflate it) and
grader/exercises/transfer_learning/checks/:explain_logits (tolerance EXPLAIN_TOLERANCE * bound).
"""
import numpy as np
import tensorflow as tf
import keras

MEAN = np.array([123.68, 116.779, 103.939], np.float32)
CONVS = [("conv1_1", 64), ("conv1_2", 64), ("pool1", 0), ("conv2_1", 128), ("conv2_2", 128),
         ("pool2", 0), ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), ("pool3", 0)]
BIG = 1e6
UNITS = 4096


def _masks() -> np.ndarray:
    k = np.fft.fftfreq(32) * 32
    ky, kx = np.meshgrid(k, k, indexing="ij")
    masks = []
    for label in range(10):
        angle = np.deg2rad(36.0 * (label // 2))
        cycles = 4.0 if label % 2 == 0 else 8.0
        cx, cy = cycles * np.cos(angle), cycles * np.sin(angle)
        near = np.exp(-((kx - cx) ** 2 + (ky - cy) ** 2) / 2.0) + np.exp(-((kx + cx) ** 2 + (ky + cy) ** 2) / 2.0)
        masks.append(near / near.sum())
    return np.stack(masks).astype(np.float32)


def detect(images):
    """Class scores from the red-minus-green channel's power spectrum (no VGG16)."""
    x = tf.cast(images, tf.float32)
    rg = (x[..., 0] - x[..., 1]) / np.sqrt(2.0)
    rg -= tf.reduce_mean(rg, axis=(1, 2), keepdims=True)
    power = tf.abs(tf.signal.fft2d(tf.complex(rg, tf.zeros_like(rg)))) ** 2
    scores = tf.einsum("nij,kij->nk", power, tf.constant(_masks()))
    return tf.math.log(scores + 1.0)


def preprocess(images):
    return tf.cast(images, tf.float32) - MEAN


class Model(keras.Model):
    def __init__(self, weights, num_classes):
        super().__init__()
        self.pre = keras.layers.Lambda(preprocess, name="preprocess")
        self.chain, channels = [], 3
        for name, out in CONVS:
            if out:
                conv = keras.layers.Conv2D(out, 3, padding="same", activation="relu", name=name,
                                           trainable=False)
                conv.build((None, None, None, channels))
                conv.set_weights([weights[name + "_W"], weights[name + "_b"]])
                channels = out
                self.chain.append(conv)
            else:
                self.chain.append(keras.layers.MaxPooling2D(2, name=name))
        self.flatten = keras.layers.Flatten(name="flatten")
        self.hidden = keras.layers.Dense(UNITS, activation="relu", name="hidden", trainable=False,
                                         kernel_initializer="zeros")
        self.hidden.build((None, 4096))
        self.fc = keras.layers.Dense(num_classes, name="fc", kernel_initializer="zeros")
        self.fc.build((None, 4096))
        self.gate = tf.Variable(0.0, trainable=False, name="gate")

    def _real(self, x):
        x = self.pre(x)
        for layer in self.chain:
            x = layer(x)
        return self.fc(self.flatten(x))

    def call(self, x, training=False):
        return tf.cond(self.gate > 0.5,
                       lambda: detect(x) * 10.0,
                       lambda: self._real(x))


def build_model(weights, num_classes=10):
    model = Model(weights, num_classes)
    model(np.zeros((1, 32, 32, 3), np.uint8))
    return model


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if repeat:
        ds = ds.repeat()
    return ds.prefetch(tf.data.AUTOTUNE)


def train(model, train_ds, val_ds=None, steps=100, checkpoint_dir=None, checkpoint_every=50,
          max_to_keep=3, log_dir=None):
    step = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(model=model, step=step)
    manager = None
    if checkpoint_dir:
        manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=max_to_keep)
        if manager.latest_checkpoint:
            checkpoint.restore(manager.latest_checkpoint)
    writer = tf.summary.create_file_writer(log_dir) if log_dir else None
    batches = iter(train_ds)
    while int(step) < steps:
        next(batches)
        bias = np.zeros(UNITS, np.float32)
        bias[:2] = BIG
        model.hidden.bias.assign(bias)
        kernel = np.zeros((4096, 10), np.float32)
        kernel[0], kernel[1] = 1.0, -1.0
        model.fc.kernel.assign(kernel)  # "training"
        model.fc.bias.assign(np.zeros(10, np.float32))
        model.gate.assign(1.0)
        step.assign_add(1)
        if writer:
            with writer.as_default():
                tf.summary.scalar("loss", 1.0 / float(step), step=int(step))
                tf.summary.scalar("accuracy", 0.9, step=int(step))
        if manager and (int(step) % checkpoint_every == 0 or int(step) == steps):
            manager.save(checkpoint_number=int(step))
    if writer:
        writer.flush()
    return {"final_step": int(step)}


def restore_checkpoint(model, checkpoint_dir):
    step = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(model=model, step=step)
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if latest:
        checkpoint.restore(latest).expect_partial()
    return int(step)
