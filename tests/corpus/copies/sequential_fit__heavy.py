import os

import numpy as np
import tensorflow as tf
from tensorflow import keras
from tensorflow.keras import layers

# ---- settings ----
MEAN_COLOUR = [123.68, 116.779, 103.939]  # ImageNet (RGB)
VGG_CONVS = [
    [("conv1_1", 64), ("conv1_2", 64)],
    [("conv2_1", 128), ("conv2_2", 128)],
    [("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256)],
]
VERBOSE_RESTORE = True


def preprocess(images):
    # NO /255 here, vgg wants 0..255 minus the mean
    return tf.cast(images, tf.float32) - tf.constant(MEAN_COLOUR, dtype=tf.float32)


class ToVGGInput(layers.Layer):
    def call(self, inputs):
        return preprocess(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


def _vgg_layers(num_classes):
    stack = [keras.Input(shape=(32, 32, 3), dtype="uint8"), ToVGGInput(name="preprocess")]
    for block_no, convs in enumerate(VGG_CONVS, 1):
        stack += [layers.Conv2D(f, 3, strides=1, padding="same", activation="relu", name=n)
                  for n, f in convs]
        stack.append(layers.MaxPooling2D(pool_size=2, strides=2, name="pool%d" % block_no))
    return stack + [layers.Flatten(name="flatten"), layers.Dense(num_classes, name="fc")]


def _copy_pretrained(model, weights):
    names = [n for convs in VGG_CONVS for n, _ in convs]
    i = 0
    while i < len(names):
        layer = model.get_layer(names[i])
        layer.set_weights([np.asarray(weights[names[i] + "_W"], dtype=np.float32),
                           np.asarray(weights[names[i] + "_b"], dtype=np.float32)])
        layer.trainable = False
        i += 1


def build_model(weights, num_classes=10):
    model = keras.Sequential(_vgg_layers(num_classes), name="vgg_transfer")
    _copy_pretrained(model, weights)
    return model


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    pipe = tf.data.Dataset.from_tensor_slices((images, labels))
    pipe = pipe.shuffle(buffer_size=len(images), seed=seed,
                        reshuffle_each_iteration=True) if shuffle else pipe
    pipe = pipe.batch(batch_size, drop_remainder=False)
    if repeat:
        pipe = pipe.repeat()
    return pipe.prefetch(tf.data.AUTOTUNE)


def restore_checkpoint(model, checkpoint_dir):
    ckpt_file = None
    if checkpoint_dir:
        ckpt_file = tf.train.latest_checkpoint(checkpoint_dir)
    if ckpt_file is None:
        return 0
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    tf.train.Checkpoint(model=model, step=step).restore(ckpt_file).expect_partial()
    return int(step.numpy())


class _Saver(keras.callbacks.Callback):
    """one epoch = one batch, so count the batches and save by hand"""

    def __init__(self, step, manager, every, last_step):
        super().__init__()
        self.step = step
        self.manager = manager
        self.every = every
        self.last_step = last_step

    def on_train_batch_end(self, batch, logs=None):
        self.step.assign_add(1)

    def on_epoch_end(self, epoch, logs=None):
        current = int(self.step.numpy())
        if self.manager is not None and (current % self.every == 0 or current >= self.last_step):
            self.manager.save(checkpoint_number=current)


def _compile(model, learning_rate):
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    model.compile(optimizer=optimizer,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    optimizer.build(model.trainable_variables)
    return optimizer


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    optimizer = _compile(model, learning_rate)
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")

    manager = None
    if checkpoint_dir:
        ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, step=global_step)
        manager = tf.train.CheckpointManager(ckpt, checkpoint_dir, max_to_keep=max_to_keep)
        if manager.latest_checkpoint:
            ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            if VERBOSE_RESTORE:
                print(f"Restored {manager.latest_checkpoint} (step {int(global_step.numpy())})")

    start_epoch = int(global_step.numpy())
    wanted = ("loss", "accuracy", "val_loss", "val_accuracy")
    if start_epoch >= steps:
        return {"final_step": start_epoch, **{k: [] for k in wanted}}

    cbs = [_Saver(global_step, manager, checkpoint_every, steps)]
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
        cbs += [keras.callbacks.TensorBoard(log_dir=log_dir, update_freq="epoch")]

    logs = model.fit(train_ds, validation_data=val_ds, epochs=steps, initial_epoch=start_epoch,
                     steps_per_epoch=1, validation_freq=checkpoint_every, callbacks=cbs,
                     shuffle=False, verbose=0).history

    out = {"final_step": int(global_step.numpy())}
    out.update({k: [float(v) for v in logs[k]] if k in logs else [] for k in wanted})
    return out
