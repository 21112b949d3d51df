"""Homework: VGG16 transfer learning on 32x32 images.

Own keras layers for conv / pool / flatten using tf.nn ops. The pretrained VGG
weights are non-trainable tf.Variables so the optimizer can't change them.
"""

import numpy as np
import tensorflow as tf
import keras

_DEBUG_SHAPES = False
VGG_MEAN_RGB = [123.68, 116.779, 103.939]
GROUPS = [
    ["conv1_1", "conv1_2"],
    ["conv2_1", "conv2_2"],
    ["conv3_1", "conv3_2", "conv3_3"],
]


def _checkpoint_for(model, step, optimizer=None):
    if optimizer is None:
        return tf.train.Checkpoint(model=model, step=step)
    return tf.train.Checkpoint(model=model, optimizer=optimizer, step=step)


def restore_checkpoint(model, checkpoint_dir):
    path = tf.train.latest_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if path is None:
        return 0
    restored = tf.Variable(0, dtype=tf.int64, trainable=False)
    _checkpoint_for(model, restored).restore(path).expect_partial()
    return int(restored.numpy())


class Flatten4D(keras.layers.Layer):
    def call(self, inputs):
        flat_size = int(np.prod(inputs.shape[1:]))
        if _DEBUG_SHAPES:
            print("flatten", inputs.shape, "->", flat_size)
        return tf.reshape(inputs, [-1, flat_size])


class MaxPool(keras.layers.Layer):
    def call(self, inputs):
        return tf.nn.max_pool2d(inputs, ksize=2, strides=2, padding="VALID")


class PretrainedConv(keras.layers.Layer):
    """3x3 SAME conv + bias + relu with fixed (pretrained) weights.
    weights / variables overridden because keras 3 ignores plain tf.Variables."""

    def __init__(self, kernel, bias, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        kernel = np.asarray(kernel, dtype=np.float32)
        bias = np.asarray(bias, dtype=np.float32)
        if kernel.ndim != 4 or kernel.shape[:2] != (3, 3):
            raise ValueError(f"{self.name}: expected a 3x3 kernel, got {kernel.shape}")
        expected_bias = (kernel.shape[-1],)
        if bias.shape != expected_bias:
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
        conv = tf.nn.conv2d(inputs, self.kernel, strides=1, padding="SAME")
        return tf.nn.relu(tf.nn.bias_add(conv, self.bias))


class Preprocessing(keras.layers.Layer):
    def call(self, inputs):
        return preprocess(inputs)


def preprocess(images):
    mean = tf.constant(VGG_MEAN_RGB, dtype=tf.float32)
    images = tf.convert_to_tensor(images)
    return tf.cast(images, tf.float32) - mean


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=False)
    if repeat:
        ds = ds.repeat()
    return ds.prefetch(tf.data.AUTOTUNE)


def build_model(weights, num_classes=10):
    inputs = keras.Input(shape=(32, 32, 3), dtype="uint8", name="images")
    x = Preprocessing(name="preprocess")(inputs)
    for i, group in enumerate(GROUPS):
        for layer_name in group:
            x = PretrainedConv(weights[layer_name + "_W"], weights[layer_name + "_b"],
                               name=layer_name)(x)
        x = MaxPool(name="pool" + str(i + 1))(x)
    x = Flatten4D(name="flatten")(x)
    classifier = keras.layers.Dense(num_classes, kernel_initializer="zeros",
                                    bias_initializer="zeros", name="fc")
    return keras.Model(inputs, classifier(x), name="vgg16_head_transfer")


def _count_trainable(model):
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    optimizer.build(model.trainable_variables)
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")

    manager = None
    if checkpoint_dir is not None:
        ckpt = _checkpoint_for(model, step_var, optimizer)
        manager = tf.train.CheckpointManager(ckpt, checkpoint_dir, max_to_keep=max_to_keep)
        if manager.latest_checkpoint:
            ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            print("restored %s at step %d" % (manager.latest_checkpoint, int(step_var.numpy())))

    writer = None
    if log_dir is not None:
        writer = tf.summary.create_file_writer(log_dir)

    @tf.function
    def train_step(images, labels):
        int_labels = tf.cast(labels, tf.int32)
        with tf.GradientTape() as tape:
            logits = model(images, training=True)
            xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=int_labels, logits=logits)
            loss = tf.reduce_mean(xent)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        step_var.assign_add(1)
        predictions = tf.argmax(logits, axis=1, output_type=tf.int32)
        correct = tf.cast(tf.equal(predictions, int_labels), tf.float32)
        return loss, tf.reduce_mean(correct)

    @tf.function
    def eval_step(images, labels):
        int_labels = tf.cast(labels, tf.int32)
        logits = model(images, training=False)
        xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=int_labels, logits=logits)
        predictions = tf.argmax(logits, axis=1, output_type=tf.int32)
        correct = tf.cast(tf.equal(predictions, int_labels), tf.float32)
        return tf.reduce_sum(xent), tf.reduce_sum(correct)

    def evaluate():
        loss_sum, correct_sum, seen = 0.0, 0.0, 0
        batches = iter(val_ds)
        while True:
            try:
                images, labels = next(batches)
            except StopIteration:
                break
            batch_loss, batch_correct = eval_step(images, labels)
            loss_sum += float(batch_loss)
            correct_sum += float(batch_correct)
            seen += int(tf.shape(labels)[0])
        return loss_sum / max(seen, 1), correct_sum / max(seen, 1)

    history = {"step": [], "loss": [], "accuracy": [],
               "val_step": [], "val_loss": [], "val_accuracy": []}
    step = int(step_var.numpy())
    last_save = step
    n_batches_seen = 0  # for debugging

    if step < steps:
        for images, labels in train_ds:
            loss, acc = train_step(images, labels)
            n_batches_seen += 1
            step = int(step_var.numpy())
            loss = float(loss)
            acc = float(acc)
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
                    print("step %d: loss %.4f acc %.3f | val loss %.4f val acc %.3f"
                          % (step, loss, acc, val_loss, val_acc))
                    if writer is not None:
                        with writer.as_default():
                            tf.summary.scalar("validation/loss", val_loss, step=step)
                            tf.summary.scalar("validation/accuracy", val_acc, step=step)
                if manager is not None:
                    manager.save(checkpoint_number=step)
                    last_save = step

            if step >= steps:
                break

        if manager is not None and last_save != step:
            manager.save(checkpoint_number=step)

    if writer is not None:
        writer.flush()
        writer.close()

    history["final_step"] = step
    return history
