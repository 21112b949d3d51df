import tensorflow as tf
import numpy as np
import keras
from keras import callbacks as kcb
from keras import layers as kl

_MEAN = tf.constant([123.68, 116.779, 103.939], dtype=tf.float32)


def restore_checkpoint(model, checkpoint_dir):
    where = tf.train.latest_checkpoint(checkpoint_dir)
    if not where:
        return 0
    holder = {"step": tf.Variable(0, dtype=tf.int64, trainable=False)}
    tf.train.Checkpoint(model=model, **holder).restore(where).expect_partial()
    return int(holder["step"].numpy())


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    stages = []
    if shuffle:
        stages.append(lambda ds: ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True))
    stages.append(lambda ds: ds.batch(batch_size))
    if repeat:
        stages.append(lambda ds: ds.repeat())
    stages.append(lambda ds: ds.prefetch(buffer_size=tf.data.AUTOTUNE))
    out = tf.data.Dataset.from_tensor_slices((images, labels))
    for stage in stages:
        out = stage(out)
    return out


def preprocess(images):
    unit = tf.image.convert_image_dtype(images, dtype=tf.float32)
    return tf.math.subtract(tf.math.multiply(unit, 255.0), _MEAN)


# (attribute, filters) -- filters None means a 2x2/2 max pool
_BODY = (
    ("conv1_1", 64), ("conv1_2", 64), ("pool1", None),
    ("conv2_1", 128), ("conv2_2", 128), ("pool2", None),
    ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256), ("pool3", None),
)


def _piece(attr, filters):
    if filters is None:
        return kl.MaxPool2D(name=attr, strides=(2, 2), pool_size=(2, 2))
    return kl.Conv2D(filters, name=attr, padding="same", strides=(1, 1),
                     kernel_size=(3, 3), trainable=False, activation="relu")


class Backbone(keras.Model):
    """Layers are attributes set in network order, so self.layers is also the forward order."""

    def __init__(self, num_classes=10, **kwargs):
        super().__init__(**kwargs)
        parts = [("preprocess_layer", kl.Lambda(preprocess, name="preprocess"))]
        parts += [(attr, _piece(attr, filters)) for attr, filters in _BODY]
        parts += [("flatten", kl.Flatten(name="flatten")), ("fc", kl.Dense(num_classes, name="fc"))]
        for attr, layer in parts:
            setattr(self, attr, layer)

    def call(self, images, training=False):
        h = images
        for layer in self.layers:
            h = layer(h)
        return h


def build_model(weights, num_classes=10):
    net = Backbone(num_classes=num_classes, name="vgg_transfer")
    net(np.zeros((1, 32, 32, 3), dtype=np.uint8))
    pretrained = [n for n, f in _BODY if f is not None]
    for n in pretrained:
        pair = [np.asarray(weights[n + tail], dtype=np.float32) for tail in ("_W", "_b")]
        net.get_layer(n).set_weights(pair)
    return net


def _saver_hook(counter, manager, every, final):
    """A callback that advances `counter` after each batch and saves when due."""

    def after_batch(batch, logs=None):
        counter.assign_add(1)
        now = int(counter.numpy())
        if manager is None:
            return
        if now == final or now % every == 0:
            where = manager.save(checkpoint_number=now)
            print(f"step {now}: saved {where}")

    return kcb.LambdaCallback(on_train_batch_end=after_batch)


def _compile_spec(optimizer):
    return {
        "loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        "optimizer": optimizer,
        "metrics": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    }


def _open_store(model, optimizer, directory, keep):
    """Step counter + checkpoint (+ manager when a directory is given); resumes if possible."""
    counter = tf.Variable(0, dtype=tf.int64, trainable=False)
    bundle = tf.train.Checkpoint(optimizer=optimizer, model=model, step=counter)
    if not directory:
        return counter, None
    manager = tf.train.CheckpointManager(bundle, directory, max_to_keep=keep)
    last = manager.latest_checkpoint
    if last:
        bundle.restore(last)
        print("resuming from %s (step %d)" % (last, int(counter.numpy())))
    return counter, manager


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    adam = keras.optimizers.Adam(learning_rate=learning_rate)
    model.compile(**_compile_spec(adam))
    adam.build(model.trainable_variables)  # Adam's slots exist before any restore
    counter, manager = _open_store(model, adam, checkpoint_dir, max_to_keep)

    first = int(counter.numpy())
    if first >= steps:
        return dict(final_step=first, history={})

    hooks = [_saver_hook(counter, manager, checkpoint_every, steps)]
    if log_dir:
        hooks.append(kcb.TensorBoard(log_dir, update_freq="batch"))

    # one "epoch" per optimisation step => epoch index == global step
    fitted = model.fit(
        train_ds, None,
        verbose=0, callbacks=hooks,
        epochs=steps, initial_epoch=first, steps_per_epoch=1,
        validation_freq=checkpoint_every, validation_data=val_ds,
    )
    return dict(final_step=int(counter.numpy()), history=fitted.history)
