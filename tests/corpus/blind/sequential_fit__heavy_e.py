"""CIFAR-10 classifier on top of a fixed (non-learning) slice of VGG16.

My approach: build the network with the Keras functional API, reuse the
ImageNet filters of VGG16 for stages one to three, and only learn the last
linear read-out.  Training is delegated to ``Model.fit`` where every "epoch"
is a single batch, so the epoch counter doubles as the global step and a
resumed run simply starts at ``initial_epoch``.
"""
from __future__ import annotations

import functools
import os as _os

import numpy as np
import tensorflow as tf
import keras
from keras import callbacks as kcb
from keras import layers as kl

# Channel means of ImageNet (R, G, B) -- what VGG16 expects to be removed.
IMAGENET_MEAN_RGB = [123.68, 116.779, 103.939]

# stage id, how many 3x3 convolutions it has, their width
VGG_BLOCKS = [(1, 2, 64), (2, 2, 128), (3, 3, 256)]

_DEBUG = False  # flip on to get some extra shape / step output


def _say(*parts):
    if _DEBUG:
        print("[vgg-transfer]", *parts, flush=True)


def _layer_plan():
    """Yield (layer_name, n_filters) in network order; n_filters == 0 means pooling."""
    for stage, n_convs, width in VGG_BLOCKS:
        yield from ((f"conv{stage}_{k}", width) for k in range(1, n_convs + 1))
        yield f"pool{stage}", 0


def preprocess(images):
    """Cast uint8 RGB pixels to float32 (still 0..255) and remove the ImageNet mean."""
    pixels = tf.cast(images, dtype=tf.float32)
    centre = tf.reshape(tf.constant(IMAGENET_MEAN_RGB, dtype=tf.float32), (1, 1, 1, 3))
    return tf.math.subtract(pixels, centre)


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    n_examples = len(images)
    transforms = []
    if shuffle:
        # buffer spans every example: a complete reshuffle at each pass
        transforms.append(lambda d: d.shuffle(buffer_size=n_examples,
                                              reshuffle_each_iteration=True, seed=seed))
    transforms.append(lambda d: d.batch(drop_remainder=False, batch_size=batch_size))
    if repeat:
        transforms.append(lambda d: d.repeat())
    transforms.append(lambda d: d.prefetch(tf.data.AUTOTUNE))
    return functools.reduce(lambda d, fn: d.apply(fn),
                            transforms,
                            tf.data.Dataset.from_tensor_slices((images, labels)))


def build_model(weights, num_classes=10):
    image_in = keras.Input(dtype="uint8", shape=(32, 32, 3))
    feats = kl.Lambda(preprocess, output_shape=(32, 32, 3), name="preprocess")(image_in)
    pretrained = []
    for lname, width in _layer_plan():
        if not width:
            block = kl.MaxPooling2D(strides=2, pool_size=2, name=lname)
        else:
            block = kl.Conv2D(width, 3, padding="same", activation="relu",
                              strides=1, name=lname)
            pretrained.append(lname)
        feats = block(feats)
        _say(lname, feats.shape)
    feats = kl.Flatten(name="flatten")(feats)
    scores = kl.Dense(num_classes, name="fc")(feats)
    net = keras.Model(inputs=image_in, outputs=scores, name="cifar_vgg_readout")

    # load the ImageNet filters and lock them
    for lname in pretrained:
        target = net.get_layer(lname)
        target.set_weights([np.asarray(weights[f"{lname}{suffix}"], dtype=np.float32)
                            for suffix in ("_W", "_b")])
        target.trainable = False
    return net


def _bundle(model, *, optimizer=None, step=None):
    parts = dict(model=model, optimizer=optimizer, step=step)
    return tf.train.Checkpoint(**{k: v for k, v in parts.items() if v is not None})


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    adam = keras.optimizers.Adam(learning_rate=learning_rate)
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        optimizer=adam,
    )
    # allocate Adam's moment slots up front, otherwise a restore has nowhere to go
    adam.build(model.trainable_variables)

    counter = tf.Variable(0, trainable=False, dtype=tf.int64, name="global_step")
    saver = None
    if checkpoint_dir:
        snapshot = _bundle(model, optimizer=adam, step=counter)
        saver = tf.train.CheckpointManager(snapshot, directory=checkpoint_dir,
                                           max_to_keep=max_to_keep)
        newest = saver.latest_checkpoint
        if newest:
            snapshot.restore(newest).assert_existing_objects_matched()
            print(f"resuming from {newest} at global step {int(counter.numpy())}")

    first = int(counter.numpy())
    summary = dict.fromkeys(("loss", "accuracy", "val_loss", "val_accuracy"))
    summary = {key: [] for key in summary}
    summary["final_step"] = first
    if first >= steps:
        return summary

    def _count_batch(batch, logs=None):
        counter.assign_add(1)

    def _maybe_save(epoch, logs=None):
        # fit has already run the validation pass of this epoch (= step) by now
        if saver is None:
            return
        now = int(counter.numpy())
        if now >= steps or not now % checkpoint_every:
            saver.save(checkpoint_number=now)

    hooks = []
    if log_dir:
        _os.makedirs(log_dir, exist_ok=True)
        hooks.append(kcb.TensorBoard(update_freq="epoch", log_dir=log_dir))
    hooks.insert(0, kcb.LambdaCallback(on_train_batch_end=_count_batch,
                                       on_epoch_end=_maybe_save))

    # single-batch epochs: the epoch index is the global step
    record = model.fit(
        x=train_ds,
        validation_data=val_ds,
        validation_freq=checkpoint_every,
        initial_epoch=first,
        epochs=steps,
        steps_per_epoch=1,
        verbose=0,
        shuffle=False,  # the tf.data pipeline shuffles already
        callbacks=hooks,
    ).history

    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        if key in record:
            summary[key] = list(map(float, record[key]))
    summary["final_step"] = int(counter.numpy())
    _say("stopped at", summary["final_step"])
    return summary


def restore_checkpoint(model, checkpoint_dir):
    newest = tf.train.latest_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if newest is None:
        return 0
    counter = tf.Variable(0, trainable=False, dtype=tf.int64)
    # Adam's slots are in the file too, but we do not need them here
    _bundle(model, step=counter).restore(newest).expect_partial()
    return int(counter.numpy())
