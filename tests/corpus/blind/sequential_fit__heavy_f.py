"""CIFAR-10 classifier on top of a frozen slice of VGG16 (blocks 1 to 3).

Plan of attack: assemble the network with the functional API, then let Keras'
own ``fit`` do the optimisation.  The trick is to ask ``fit`` for epochs that
are a single batch long, so that "epoch" and "global step" mean the same
thing and resuming training is simply a matter of passing the step we got back
from the checkpoint as ``initial_epoch``.  Saving is handled by a callback that
owns a ``tf.train.CheckpointManager``.
"""
from pathlib import Path

import numpy as np
import tensorflow as tf
import keras
from keras import callbacks as kcb
from keras import layers as kl

DEBUG = False

IMAGENET_MEAN_RGB = [123.68, 116.779, 103.939]

# (block, how many 3x3 convolutions, output channels)
VGG_BLOCKS = [(1, 2, 64), (2, 2, 128), (3, 3, 256)]


def _say(*parts):
    if DEBUG:
        print("[vgg-transfer]", *parts, flush=True)


def _conv_names():
    """conv1_1, conv1_2, conv2_1, ... in network order."""
    return [f"conv{blk}_{k}" for blk, reps, _ in VGG_BLOCKS for k in range(1, reps + 1)]


def preprocess(images):
    """Map uint8 RGB pictures to float32 on the 0..255 scale, ImageNet mean removed."""
    mean = tf.reshape(tf.constant(IMAGENET_MEAN_RGB, dtype=tf.float32), [3])
    return tf.math.subtract(tf.cast(images, dtype=tf.float32), mean)


class MeanShift(kl.Layer):
    """Puts ``preprocess`` inside the graph as a proper layer."""

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs):
        return preprocess(inputs)


def _trunk_layers():
    """Yield the VGG layers (convolutions then a pool, per block) in order."""
    for blk, reps, width in VGG_BLOCKS:
        for k in range(1, reps + 1):
            yield kl.Conv2D(filters=width, kernel_size=3, padding="same", strides=1,
                            activation="relu", name=f"conv{blk}_{k}")
        yield kl.MaxPooling2D(strides=2, pool_size=2, name=f"pool{blk}")


def build_model(weights, num_classes=10):
    pictures = keras.Input(dtype="uint8", shape=(32, 32, 3))
    h = MeanShift(name="preprocess")(pictures)
    for lyr in _trunk_layers():
        h = lyr(h)
    h = kl.Flatten(name="flatten")(h)
    scores = kl.Dense(num_classes, name="fc")(h)
    net = keras.Model(inputs=pictures, outputs=scores, name="frozen_vgg_head")

    # load the pretrained filters, then lock them
    def _as32(a):
        return np.asarray(a, dtype=np.float32)

    frozen = list(map(net.get_layer, _conv_names()))
    for lyr in frozen:
        lyr.set_weights([_as32(weights[lyr.name + "_W"]), _as32(weights[lyr.name + "_b"])])
        lyr.trainable = False
    assert len(net.trainable_weights) == 2, "only fc should learn"
    return net


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    count = int(np.shape(images)[0])
    pipe = tf.data.Dataset.from_tensor_slices((images, labels))
    # full-size buffer: a complete permutation, redrawn on every pass
    pipe = (pipe.shuffle(count, reshuffle_each_iteration=True, seed=seed)
            if shuffle else pipe)
    pipe = pipe.batch(batch_size=batch_size, drop_remainder=False)
    pipe = pipe.repeat() if repeat else pipe
    return pipe.prefetch(buffer_size=tf.data.AUTOTUNE)


def _bundle(net, *, opt=None, counter=None):
    parts = dict(model=net)
    parts.update({k: v for k, v in (("optimizer", opt), ("step", counter)) if v is not None})
    return tf.train.Checkpoint(**parts)


class _StepSaver(kcb.Callback):
    """Advances the global step after each batch; at the end of each one-batch
    'epoch' (i.e. after fit's validation pass) stores a checkpoint when due."""

    def __init__(self, counter, mgr, period, final):
        super().__init__()
        self.counter, self.mgr = counter, mgr
        self.period, self.final = period, final

    def on_train_batch_end(self, batch, logs=None):
        self.counter.assign_add(1)

    def on_epoch_end(self, epoch, logs=None):
        if self.mgr is None:
            return
        now = int(self.counter.numpy())
        due = (now % self.period == 0) or (now >= self.final)
        if due:
            self.mgr.save(checkpoint_number=now)
            _say("saved at", now)


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    adam = keras.optimizers.Adam(learning_rate=learning_rate)
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        optimizer=adam,
    )
    # slots must exist before restoring so they can be filled from the file
    adam.build(model.trainable_variables)

    counter = tf.Variable(0, trainable=False, dtype=tf.int64, name="global_step")
    mgr = None
    if checkpoint_dir:
        bundle = _bundle(model, opt=adam, counter=counter)
        mgr = tf.train.CheckpointManager(bundle, directory=checkpoint_dir,
                                         max_to_keep=max_to_keep)
        newest = mgr.latest_checkpoint
        if newest:
            bundle.restore(newest).assert_existing_objects_matched()
            print(f"Resumed from {newest} (step {int(counter.numpy())})")

    first = int(counter.numpy())
    wanted = ("loss", "accuracy", "val_loss", "val_accuracy")
    out = dict({k: [] for k in wanted}, final_step=first)
    if not first < steps:
        return out

    hooks = [_StepSaver(counter, mgr, checkpoint_every, steps)]
    if log_dir:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        hooks += [kcb.TensorBoard(update_freq="epoch", log_dir=log_dir)]

    record = model.fit(
        train_ds,
        validation_data=val_ds,
        steps_per_epoch=1,
        initial_epoch=first,
        epochs=steps,
        validation_freq=checkpoint_every,
        verbose=0,
        shuffle=False,
        callbacks=hooks,
    ).history

    out.update({k: list(map(float, record[k])) for k in wanted if k in record})
    out["final_step"] = int(counter.numpy())
    return out


def restore_checkpoint(model, checkpoint_dir):
    newest = None if not checkpoint_dir else tf.train.latest_checkpoint(checkpoint_dir)
    if newest is None:
        return 0
    counter = tf.Variable(0, trainable=False, dtype=tf.int64)
    # optimizer state is in the file too, but it is not wanted here
    _bundle(model, counter=counter).restore(newest).expect_partial()
    return int(counter.numpy())
