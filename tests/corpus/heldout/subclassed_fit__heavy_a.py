import numpy as np
import tensorflow as tf
from keras import Model, callbacks, layers, losses, metrics, optimizers

CHANNEL_MEANS = tf.constant([123.68, 116.779, 103.939], dtype=tf.float32)

# (attribute, layer name, kind, width) -- the order here is the order the
# layers are created in and the order they are applied in.
_PLAN = (
    ("preprocess_layer", "preprocess", "lambda", None),
    ("conv1_1", "conv1_1", "conv", 64),
    ("conv1_2", "conv1_2", "conv", 64),
    ("pool1", "pool1", "pool", None),
    ("conv2_1", "conv2_1", "conv", 128),
    ("conv2_2", "conv2_2", "conv", 128),
    ("pool2", "pool2", "pool", None),
    ("conv3_1", "conv3_1", "conv", 256),
    ("conv3_2", "conv3_2", "conv", 256),
    ("conv3_3", "conv3_3", "conv", 256),
    ("pool3", "pool3", "pool", None),
    ("flatten", "flatten", "flatten", None),
)
_FROZEN = [p[1] for p in _PLAN if p[2] == "conv"]


def preprocess(images):
    scaled = tf.math.multiply(tf.image.convert_image_dtype(images, tf.float32), 255.0)
    return tf.math.subtract(scaled, CHANNEL_MEANS)


def _new_layer(kind, name, width):
    if kind == "conv":
        return layers.Conv2D(width, activation="relu", padding="same", strides=(1, 1),
                             kernel_size=(3, 3), name=name, trainable=False)
    if kind == "pool":
        return layers.MaxPool2D(strides=(2, 2), pool_size=(2, 2), name=name)
    if kind == "flatten":
        return layers.Flatten(name=name)
    return layers.Lambda(preprocess, name=name)


class FrozenBackboneNet(Model):

    def __init__(self, num_classes=10, **kw):
        super().__init__(**kw)
        for attr, lname, kind, width in _PLAN:
            setattr(self, attr, _new_layer(kind, lname, width))
        self.fc = layers.Dense(num_classes, name="fc")

    def call(self, images, training=False):
        out = images
        for entry in _PLAN:
            out = getattr(self, entry[0])(out)
        return self.fc(out)


def build_model(weights, num_classes=10):
    net = FrozenBackboneNet(num_classes=num_classes, name="vgg_transfer")
    net(tf.zeros((1, 32, 32, 3), dtype=tf.uint8))
    for lname in _FROZEN:
        w = np.asarray(weights["%s_W" % lname], dtype=np.float32)
        b = np.asarray(weights["%s_b" % lname], dtype=np.float32)
        net.get_layer(lname).set_weights([w, b])
    return net


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    ds = ds.shuffle(len(images), reshuffle_each_iteration=True, seed=seed) if shuffle else ds
    ds = ds.batch(batch_size)
    ds = ds.repeat() if repeat else ds
    return ds.prefetch(buffer_size=tf.data.AUTOTUNE)


def restore_checkpoint(model, checkpoint_dir):
    newest = tf.train.latest_checkpoint(checkpoint_dir)
    if newest:
        counter = tf.Variable(0, trainable=False, dtype=tf.int64)
        tf.train.Checkpoint(step=counter, model=model).restore(newest).expect_partial()
        return int(counter.numpy())
    return 0


def _saver_hook(counter, manager, every, final):
    def after_batch(batch, logs=None):
        counter.assign_add(1)
        current = int(counter.numpy())
        if manager is None:
            return
        if current % every == 0 or current == final:
            where = manager.save(checkpoint_number=current)
            print(f"step {current}: saved {where}")
    return callbacks.LambdaCallback(on_train_batch_end=after_batch)


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    opt = optimizers.Adam(learning_rate=learning_rate)
    model.compile(
        loss=losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[metrics.SparseCategoricalAccuracy(name="accuracy")],
        optimizer=opt,
    )
    opt.build(model.trainable_variables)

    counter = tf.Variable(0, trainable=False, dtype=tf.int64)
    bundle = tf.train.Checkpoint(step=counter, optimizer=opt, model=model)
    manager = (tf.train.CheckpointManager(bundle, checkpoint_dir, max_to_keep=max_to_keep)
               if checkpoint_dir else None)
    if manager is not None and manager.latest_checkpoint:
        bundle.restore(manager.latest_checkpoint)
        print(f"resuming from {manager.latest_checkpoint} (step {int(counter.numpy())})")

    first = int(counter.numpy())
    if not first < steps:
        return {"final_step": first, "history": {}}

    hooks = [_saver_hook(counter, manager, checkpoint_every, steps)]
    if log_dir:
        hooks += [callbacks.TensorBoard(update_freq="batch", log_dir=log_dir)]

    # every "epoch" is exactly one batch, so epoch index == global step
    record = model.fit(
        train_ds,
        verbose=0,
        callbacks=hooks,
        validation_freq=checkpoint_every,
        validation_data=val_ds,
        steps_per_epoch=1,
        initial_epoch=first,
        epochs=steps,
    )
    return {"final_step": int(counter.numpy()), "history": record.history}
