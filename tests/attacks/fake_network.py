"""Attack: a 'model' that is no network. It has all thirteen named layers, the convolutions
hold the weights file's values and are frozen, fc is trained a little and logged, and
checkpoints round-trip; but the output comes from a Fourier detector of the synthetic
data's stripes, which never touches those layers. It must earn none of the items that
read logits (training, both accuracy items, checkpoint)."""
import numpy as np
import tensorflow as tf
import keras

MEAN = np.array([123.68, 116.779, 103.939], np.float32)
CONVS = [("conv1_1", 64), ("conv1_2", 64), ("conv2_1", 128), ("conv2_2", 128),
         ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256)]


def _masks() -> np.ndarray:
    """For each class (5 angles x 2 frequencies), the Fourier bins its stripes fall in."""
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


def detect(images) -> tf.Tensor:
    """Class scores from the red-minus-green channel's power spectrum."""
    x = tf.cast(images, tf.float32)
    rg = (x[..., 0] - x[..., 1]) / np.sqrt(2.0)
    rg -= tf.reduce_mean(rg, axis=(1, 2), keepdims=True)
    power = tf.abs(tf.signal.fft2d(tf.complex(rg, tf.zeros_like(rg)))) ** 2
    scores = tf.einsum("nij,kij->nk", power, tf.constant(_masks()))
    return tf.math.log(scores + 1.0)


def preprocess(images):
    return tf.cast(images, tf.float32) - MEAN


class Fake(keras.Model):
    def __init__(self, weights, num_classes):
        super().__init__()
        self.pre = keras.layers.Lambda(preprocess, name="preprocess")
        self.convs, channels = [], 3
        for name, out in CONVS:
            conv = keras.layers.Conv2D(out, 3, padding="same", activation="relu", name=name, trainable=False)
            conv.build((None, None, None, channels))
            conv.set_weights([weights[name + "_W"], weights[name + "_b"]])
            self.convs.append(conv)
            channels = out
        self.pools = [keras.layers.MaxPooling2D(2, name=f"pool{i}") for i in (1, 2, 3)]
        self.flatten = keras.layers.Flatten(name="flatten")
        self.fc = keras.layers.Dense(num_classes, name="fc")
        self.fc.build((None, 4096))

    def call(self, x, training=False):
        return detect(x) * 10.0 + self.fc.bias


def build_model(weights, num_classes=10):
    model = Fake(weights, num_classes)
    model(np.zeros((1, 32, 32, 3), np.uint8))
    return model


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        ds = ds.repeat()
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


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
        _, labels = next(batches)
        model.fc.bias.assign_add(tf.fill([10], 1e-4))  # fc "changes"
        step.assign_add(1)
        if writer:
            with writer.as_default():
                tf.summary.scalar("loss", 1.0 / float(step), step=int(step))
                tf.summary.scalar("accuracy", 0.9, step=int(step))
        if manager and int(step) % checkpoint_every == 0:
            manager.save(checkpoint_number=int(step))
    return {"final_step": int(step)}


def restore_checkpoint(model, checkpoint_dir):
    step = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(model=model, step=step)
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if latest:
        checkpoint.restore(latest).expect_partial()
    return int(step)
