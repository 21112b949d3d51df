"""Transfer learning on 32x32 images with the first three blocks of a frozen VGG16.

The convolution, pooling and flatten steps are small hand-written Keras layers
that do their work with low-level ``tf.nn`` ops.  The pretrained VGG kernels
and biases are stored as plain, non-trainable ``tf.Variable`` objects, so the
optimizer can never touch them; only the final dense layer ``fc`` learns.
"""


import numpy as np
import tensorflow as tf
import keras


IMAGENET_MEAN_RGB = [123.68, 116.779, 103.939]

# conv layer names per block; a 2x2 max pool follows each block
VGG_BLOCKS = [
    ["conv1_1", "conv1_2"],
    ["conv2_1", "conv2_2"],
    ["conv3_1", "conv3_2", "conv3_3"],
]


def preprocess(images):
    """uint8 RGB [N, 32, 32, 3] -> float32, 0..255 scale minus the ImageNet mean."""
    x = tf.cast(tf.convert_to_tensor(images), tf.float32)
    return x - tf.constant(IMAGENET_MEAN_RGB, dtype=tf.float32)


# --------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------

class Preprocess(keras.layers.Layer):
    """Wraps ``preprocess`` so that it is a real layer of the model."""

    def call(self, inputs):
        return preprocess(inputs)


class FrozenConv(keras.layers.Layer):
    """3x3 / stride 1 / SAME convolution + bias + ReLU with fixed weights.

    ``kernel`` and ``bias`` are ordinary ``tf.Variable`` objects (trainable=False).
    Keras 3 only tracks its own ``keras.Variable`` type, so the ``weights`` and
    ``variables`` properties are overridden to report the two variables
    (kernel first, then bias); ``get_weights``, ``non_trainable_weights`` and
    ``count_params`` are derived from them by Keras.
    """

    def __init__(self, kernel, bias, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        kernel = np.asarray(kernel, dtype=np.float32)
        bias = np.asarray(bias, dtype=np.float32)
        if kernel.ndim != 4 or kernel.shape[:2] != (3, 3):
            raise ValueError(f"{self.name}: expected a 3x3 kernel, got {kernel.shape}")
        if bias.shape != (kernel.shape[-1],):
            raise ValueError(f"{self.name}: bias shape {bias.shape} does not match kernel")
        self.kernel = tf.Variable(kernel, trainable=False, name="kernel")
        self.bias = tf.Variable(bias, trainable=False, name="bias")

    @property
    def weights(self):
        return [self.kernel, self.bias]

    @property
    def variables(self):
        return [self.kernel, self.bias]

    def call(self, inputs):
        y = tf.nn.conv2d(inputs, self.kernel, strides=1, padding="SAME")
        y = tf.nn.bias_add(y, self.bias)
        return tf.nn.relu(y)


class MaxPool2x2(keras.layers.Layer):
    """2x2 max pooling with stride 2."""

    def call(self, inputs):
        return tf.nn.max_pool2d(inputs, ksize=2, strides=2, padding="VALID")


class FlattenReshape(keras.layers.Layer):
    """[B, H, W, C] -> [B, H*W*C] with tf.reshape (keeps the static size)."""

    def call(self, inputs):
        size = int(np.prod(inputs.shape[1:]))
        return tf.reshape(inputs, [-1, size])


def build_model(weights, num_classes=10):
    inputs = keras.Input(shape=(32, 32, 3), dtype="uint8", name="images")
    x = Preprocess(name="preprocess")(inputs)
    for block_index, block in enumerate(VGG_BLOCKS, start=1):
        for name in block:
            x = FrozenConv(weights[name + "_W"], weights[name + "_b"], name=name)(x)
        x = MaxPool2x2(name=f"pool{block_index}")(x)
    x = FlattenReshape(name="flatten")(x)
    # The frozen VGG features are large (tens to hundreds), so a random fc start
    # gives huge logits; starting the linear classifier at zero starts it at
    # uniform predictions (loss = log(num_classes)) instead.
    logits = keras.layers.Dense(num_classes, kernel_initializer="zeros",
                                bias_initializer="zeros", name="fc")(x)
    return keras.Model(inputs, logits, name="vgg16_head_transfer")


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------

def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        # buffer = whole set -> a full shuffle of the examples, new order each epoch
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=False)
    if repeat:
        ds = ds.repeat()
    return ds.prefetch(tf.data.AUTOTUNE)


# --------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------

def _checkpoint(model, step, optimizer=None):
    if optimizer is None:
        return tf.train.Checkpoint(model=model, step=step)
    return tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    # Adam, not RMSprop: at the contract's default 1e-4, RMSprop's first steps overshoot on
    # features this large (the variant rmsprop_overshoots in ../variants.yaml).
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    # create the optimizer slots now so a checkpoint can restore them
    optimizer.build(model.trainable_variables)
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")

    manager = None
    if checkpoint_dir is not None:
        ckpt = _checkpoint(model, global_step, optimizer)
        manager = tf.train.CheckpointManager(ckpt, checkpoint_dir, max_to_keep=max_to_keep)
        if manager.latest_checkpoint:
            ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            print(f"restored {manager.latest_checkpoint} at step {int(global_step.numpy())}")

    writer = tf.summary.create_file_writer(log_dir) if log_dir is not None else None

    @tf.function
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.cast(labels, tf.int32), logits=logits))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        global_step.assign_add(1)
        correct = tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32),
                           tf.cast(labels, tf.int32))
        return loss, tf.reduce_mean(tf.cast(correct, tf.float32))

    @tf.function
    def eval_step(images, labels):
        logits = model(images, training=False)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(labels, tf.int32), logits=logits)
        correct = tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32),
                           tf.cast(labels, tf.int32))
        return tf.reduce_sum(losses), tf.reduce_sum(tf.cast(correct, tf.float32))

    def evaluate():
        total_loss, total_correct, count = 0.0, 0.0, 0
        for images, labels in val_ds:
            loss_sum, correct_sum = eval_step(images, labels)
            total_loss += float(loss_sum)
            total_correct += float(correct_sum)
            count += int(tf.shape(labels)[0])
        return total_loss / max(count, 1), total_correct / max(count, 1)

    history = {"step": [], "loss": [], "accuracy": [],
               "val_step": [], "val_loss": [], "val_accuracy": []}
    step = int(global_step.numpy())
    saved_at = step

    if step < steps:
        for images, labels in train_ds:
            loss, acc = train_step(images, labels)
            step = int(global_step.numpy())
            loss, acc = float(loss), float(acc)
            history["step"].append(step)
            history["loss"].append(loss)
            history["accuracy"].append(acc)
            if writer is not None:
                with writer.as_default():
                    tf.summary.scalar("train/loss", loss, step=step)
                    tf.summary.scalar("train/accuracy", acc, step=step)

            if step % checkpoint_every == 0:
                if val_ds is not None:
                    val_loss, val_acc = evaluate()
                    history["val_step"].append(step)
                    history["val_loss"].append(val_loss)
                    history["val_accuracy"].append(val_acc)
                    print(f"step {step}: loss {loss:.4f} acc {acc:.3f} | "
                          f"val loss {val_loss:.4f} val acc {val_acc:.3f}")
                    if writer is not None:
                        with writer.as_default():
                            tf.summary.scalar("validation/loss", val_loss, step=step)
                            tf.summary.scalar("validation/accuracy", val_acc, step=step)
                if manager is not None:
                    manager.save(checkpoint_number=step)
                    saved_at = step

            if step >= steps:
                break

        if manager is not None and saved_at != step:
            manager.save(checkpoint_number=step)

    if writer is not None:
        writer.flush()
        writer.close()

    history["final_step"] = step
    return history


def restore_checkpoint(model, checkpoint_dir):
    latest = tf.train.latest_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if latest is None:
        return 0
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    _checkpoint(model, step).restore(latest).expect_partial()
    return int(step.numpy())
