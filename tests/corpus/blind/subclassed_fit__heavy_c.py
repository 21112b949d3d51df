"""VGG16 features (frozen, through the third pooling stage) feeding one dense classifier.

The graph is wired with the functional API; training is delegated to Keras' own
compile/fit machinery, with checkpointing done by a lambda-style callback that drives a
tf.train.CheckpointManager.
"""
import keras
import numpy as np
import tensorflow as tf
from keras import callbacks as kcb
from keras import layers as L

VERBOSE_SAVES = True

# ImageNet channel averages in R, G, B order.
_RGB_MEAN = tf.constant([123.68, 116.779, 103.939], dtype=tf.float32)

# (stage, widths of the 3x3 convolutions in that stage)
_STAGES = [
    (1, [64, 64]),
    (2, [128, 128]),
    (3, [256, 256, 256]),
]


def _frozen_names():
    return [f"conv{s}_{j}" for s, widths in _STAGES for j in range(1, len(widths) + 1)]


def preprocess(images):
    # unit-range float, rescaled back up to 0..255, then mean-centred per channel
    unit = tf.image.convert_image_dtype(images, dtype=tf.float32)
    return tf.subtract(tf.multiply(unit, 255.0), _RGB_MEAN)


def _conv(width, label):
    return L.Conv2D(width, (3, 3), name=label, trainable=False,
                    activation="relu", padding="same", strides=(1, 1))


def _pool(label):
    return L.MaxPool2D(name=label, strides=(2, 2), pool_size=(2, 2))


def build_model(weights, num_classes=10):
    source = keras.Input(shape=(32, 32, 3), dtype="uint8", name="pixels")
    h = L.Lambda(preprocess, name="preprocess")(source)
    for s, widths in _STAGES:
        for j, w in enumerate(widths, start=1):
            h = _conv(w, "conv%d_%d" % (s, j))(h)
        h = _pool("pool%d" % s)(h)
    h = L.Flatten(name="flatten")(h)
    scores = L.Dense(num_classes, name="fc")(h)  # raw logits, stock initialiser
    net = keras.Model(source, scores, name="frozen_vgg_head")

    def _f32(key):
        return np.asarray(weights[key], dtype=np.float32)

    for label in _frozen_names():
        net.get_layer(label).set_weights([_f32(label + "_W"), _f32(label + "_b")])
    return net


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    stages = [lambda d: d.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
              if shuffle else d,
              lambda d: d.batch(batch_size),
              lambda d: d.repeat() if repeat else d,
              lambda d: d.prefetch(buffer_size=tf.data.AUTOTUNE)]
    data = tf.data.Dataset.from_tensor_slices((images, labels))
    for stage in stages:
        data = stage(data)
    return data


def _make_saver_hook(step_var, manager, every, last):
    """A callback that bumps the global step after each batch and saves on schedule."""

    def after_batch(batch, logs=None):
        step_var.assign_add(1)
        n = int(step_var.numpy())
        due = n % every == 0 or n == last
        if manager is not None and due:
            where = manager.save(checkpoint_number=n)
            if VERBOSE_SAVES:
                print("step %d: checkpoint written to %s" % (n, where))

    return kcb.LambdaCallback(on_train_batch_end=after_batch)


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    adam = keras.optimizers.Adam(learning_rate=learning_rate)
    model.compile(
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        optimizer=adam,
    )
    # Materialise the Adam slots up front so a restore can populate them.
    adam.build(model.trainable_variables)

    gstep = tf.Variable(0, trainable=False, dtype=tf.int64)
    ckpt = tf.train.Checkpoint(optimizer=adam, step=gstep, model=model)
    keeper = None
    if checkpoint_dir:
        keeper = tf.train.CheckpointManager(ckpt, checkpoint_dir, max_to_keep=max_to_keep)
        newest = keeper.latest_checkpoint
        if newest:
            ckpt.restore(newest)
            print("continuing from %s at step %d" % (newest, int(gstep.numpy())))

    first = int(gstep.numpy())
    if not first < steps:
        return {"final_step": first, "history": {}}

    hooks = [_make_saver_hook(gstep, keeper, checkpoint_every, steps)]
    if log_dir:
        hooks += [kcb.TensorBoard(update_freq="batch", log_dir=log_dir)]

    # Trick: every Keras epoch is exactly one batch, so the epoch index is the global
    # step. initial_epoch then resumes naturally, and validating every
    # `checkpoint_every` epochs lines up with the checkpoint schedule. A fixed
    # steps_per_epoch keeps one iterator alive over train_ds for the whole run.
    fitted = model.fit(
        train_ds,
        validation_data=val_ds,
        steps_per_epoch=1,
        initial_epoch=first,
        epochs=steps,
        validation_freq=checkpoint_every,
        verbose=0,
        callbacks=hooks,
    )
    return {"history": fitted.history, "final_step": int(gstep.numpy())}


def restore_checkpoint(model, checkpoint_dir):
    found = tf.train.latest_checkpoint(checkpoint_dir)
    if not found:
        return 0
    marker = tf.Variable(0, trainable=False, dtype=tf.int64)
    tf.train.Checkpoint(step=marker, model=model).restore(found).expect_partial()
    return int(marker.numpy())
