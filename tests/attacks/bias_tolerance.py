"""Attack: inflate explain_logits' tolerance with a huge fc bias.

Graded since explain_logits requires the recomputed head's top class (tests/engine/test_attacks.py):
0 on training's learned half, both accuracy items and checkpoint. The scores below are
from the kit before that fix.


What it implements genuinely: preprocess, a real Keras model with the thirteen named layers
(VGG16 convolutions from the weights file, frozen; pools; flatten; fc), make_dataset.

What it forges: train() never computes a gradient. It sets every fc bias to 1e6 and a
non-trainable `gate` variable. With the gate on, the model's call skips the whole VGG16
front end and returns `1e6 + 10 * fourier_detector(images)` (the same stripe detector as
tests/attacks/fake_network.py). The grading side recomputes fc(pool3) on 12 random rows
and gets exactly 1e6 per class (fc's kernel is zero); its tolerance is
`EXPLAIN_TOLERANCE * (bound + 1e-3)` where `bound = |x| @ |kernel| + |bias|`
(checks._apply_head), i.e. 1e-3 * 1e6 = 1000, while the detector's part of the
logits is at most a few hundred. A constant shift changes neither argmax (accuracy) nor
cross-entropy (the training item's "learned"), so the logits are judged as if they
were the detector's.  Checkpointing is a tf.train.Checkpoint of the model + a step
counter: since nothing ever trains, the "optimizer state kept" and "restore gives
identical outputs" parts hold trivially.

Score (grader check tests/attacks/bias_tolerance.py --all, from /tmp/attackwork):
    interface 5/5, preprocess 10/10, layer_shapes 10/10, weights 10/10, frozen 15/15,
    features 10/10, training 10/10, accuracy_quick 5/5, checkpoint 15/15,
    pipeline 10/10, accuracy 10/10  -> 110/110, no flags (measured 2026-12-01, 22.9 s).
Genuinely implemented: interface, preprocess, layer_shapes, weights, features, pipeline,
frozen (minus its "fc changed by training" part) = about 62; forged: training (learned
half; the logged loss is made up too), accuracy_quick, accuracy, checkpoint.
Batch route (private 128-bit seed): cd /tmp/attackwork && grader batch subs --out bout --workers 1
with this file as one of 3 submissions: 110/110, `flags` column empty.
Let through by: grader/exercises/transfer_learning/checks/:_apply_head (bias counted in the bound) and
grader/exercises/transfer_learning/checks/:explain_logits (tolerance relative to that bound).
"""
import numpy as np
import tensorflow as tf
import keras

MEAN = np.array([123.68, 116.779, 103.939], np.float32)
CONVS = [("conv1_1", 64), ("conv1_2", 64), ("pool1", 0), ("conv2_1", 128), ("conv2_2", 128),
         ("pool2", 0), ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), ("pool3", 0)]
BIG = 1e6


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
                       lambda: detect(x) * 10.0 + self.fc.bias,
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
        model.fc.bias.assign(tf.fill([10], BIG))  # "training"
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
