"""A linear classifier on top of VGG16's first three (frozen) stages, CIFAR-10 sized.

The network is a keras.Model subclass whose layers come from a small table; training
uses Keras' own compile()/fit() machinery, and a LambdaCallback does the step counting
and checkpoint writing.
"""
from functools import reduce

import numpy as np
import tensorflow as tf
import keras
from keras import layers as kl
from keras.callbacks import LambdaCallback, TensorBoard
from keras.losses import SparseCategoricalCrossentropy as SparseXent
from keras.metrics import SparseCategoricalAccuracy as SparseAcc

VERBOSE_BUILD = False

# red, green, blue averages of ImageNet
_RGB_CENTRE = tf.constant([123.68, 116.779, 103.939], dtype=tf.float32)

# layer table in network order; "c" = frozen 3x3 conv (with width), "p" = 2x2 max pool
_PLAN = [
    ("c", "conv1_1", 64), ("c", "conv1_2", 64), ("p", "pool1", None),
    ("c", "conv2_1", 128), ("c", "conv2_2", 128), ("p", "pool2", None),
    ("c", "conv3_1", 256), ("c", "conv3_2", 256), ("c", "conv3_3", 256), ("p", "pool3", None),
]
_PRETRAINED = tuple(name for kind, name, _ in _PLAN if kind == "c")


def preprocess(images):
    # to floats in [0, 1], stretched back to 0..255, then mean-centred per channel
    rescaled = tf.multiply(tf.image.convert_image_dtype(images, dtype=tf.float32), 255.0)
    return tf.subtract(rescaled, _RGB_CENTRE)


def _make(kind, name, width):
    if kind == "p":
        return kl.MaxPool2D(name=name, strides=(2, 2), pool_size=(2, 2))
    return kl.Conv2D(width, name=name, trainable=False, activation="relu",
                     padding="same", strides=(1, 1), kernel_size=(3, 3))


class FrozenVGGHead(keras.Model):
    """preprocess -> VGG16 conv1_1..pool3 (not trained) -> flatten -> fc."""

    def __init__(self, num_classes=10, **kw):
        super().__init__(**kw)
        # creation order matters: it is also the order of model.layers
        self.mean_shift = kl.Lambda(preprocess, name="preprocess")
        self.trunk = [_make(*row) for row in _PLAN]
        self.squash = kl.Flatten(name="flatten")
        self.classifier = kl.Dense(num_classes, name="fc")

    def call(self, images, training=False):
        feats = reduce(lambda acc, layer: layer(acc), self.trunk, self.mean_shift(images))
        return self.classifier(self.squash(feats))


def build_model(weights, num_classes=10):
    net = FrozenVGGHead(name="vgg_transfer", num_classes=num_classes)
    # one forward pass on a dummy image creates every variable
    net(np.zeros(shape=(1, 32, 32, 3), dtype=np.uint8))
    for lname in _PRETRAINED:
        w = np.asarray(weights[lname + "_W"], dtype=np.float32)
        b = np.asarray(weights[lname + "_b"], dtype=np.float32)
        net.get_layer(lname).set_weights([w, b])
    if VERBOSE_BUILD:
        print([layer.name for layer in net.layers])
    return net


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    stages = []
    if shuffle:
        stages.append(lambda d: d.shuffle(len(images), reshuffle_each_iteration=True, seed=seed))
    stages.append(lambda d: d.batch(batch_size))
    if repeat:
        stages.append(lambda d: d.repeat())
    stages.append(lambda d: d.prefetch(buffer_size=tf.data.AUTOTUNE))
    return reduce(lambda d, f: f(d), stages, tf.data.Dataset.from_tensor_slices((images, labels)))


def _saver_callback(state, counter, manager, period, final):
    """Bump the global step after every batch; save on the period and at the end."""

    def after_batch(batch, logs=None):
        counter.assign_add(1)
        now = int(counter.numpy())
        due = now % period == 0 or now == final
        if manager is not None and due:
            where = manager.save(checkpoint_number=now)
            print("step %d: saved %s" % (now, where))

    return LambdaCallback(on_train_batch_end=after_batch)


def restore_checkpoint(model, checkpoint_dir):
    newest = tf.train.latest_checkpoint(checkpoint_dir)
    if not newest:
        return 0
    found = tf.Variable(0, trainable=False, dtype=tf.int64)
    tf.train.Checkpoint(step=found, model=model).restore(newest).expect_partial()
    return int(found.numpy())


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    adam = keras.optimizers.Adam(learning_rate=learning_rate)
    model.compile(optimizer=adam,
                  metrics=[SparseAcc(name="accuracy")],
                  loss=SparseXent(from_logits=True))
    adam.build(model.trainable_variables)  # slots first, so a restore has a target

    counter = tf.Variable(0, trainable=False, dtype=tf.int64)
    state = tf.train.Checkpoint(step=counter, optimizer=adam, model=model)
    manager = None
    if checkpoint_dir:
        manager = tf.train.CheckpointManager(state, checkpoint_dir, max_to_keep=max_to_keep)
        newest = manager.latest_checkpoint
        if newest:
            state.restore(newest)
            print("picking up %s at step %d" % (newest, int(counter.numpy())))

    begin = int(counter.numpy())
    if not begin < steps:
        return {"history": {}, "final_step": begin}

    hooks = [_saver_callback(state, counter, manager, checkpoint_every, steps)]
    if log_dir:
        hooks += [TensorBoard(update_freq="batch", log_dir=log_dir)]

    # Each Keras epoch is exactly one batch, so the epoch index *is* the global step:
    # resuming means initial_epoch=begin, and validating every checkpoint_every epochs
    # lines validation up with the checkpoints. A fixed steps_per_epoch keeps one
    # iterator over train_ds alive for the whole call.
    run = model.fit(train_ds, verbose=0, callbacks=hooks,
                    epochs=steps, initial_epoch=begin, steps_per_epoch=1,
                    validation_freq=checkpoint_every, validation_data=val_ds)
    return {"history": run.history, "final_step": int(counter.numpy())}
