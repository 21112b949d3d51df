import numpy as np
import tensorflow as tf
from keras import Input, Model
from keras.layers import Dense, Layer
from keras.optimizers import Adam

MEAN = [123.68, 116.779, 103.939]
VGG = {1: ["conv1_1", "conv1_2"], 2: ["conv2_1", "conv2_2"], 3: ["conv3_1", "conv3_2", "conv3_3"]}


def preprocess(images):
    images = tf.cast(tf.convert_to_tensor(images), tf.float32)
    return images - tf.constant(MEAN, dtype=tf.float32)


def _validated(layer_name, kernel, bias):
    kernel = np.asarray(kernel, dtype=np.float32)
    bias = np.asarray(bias, dtype=np.float32)
    if kernel.ndim != 4 or kernel.shape[:2] != (3, 3):
        raise ValueError(f"{layer_name}: expected a 3x3 kernel, got {kernel.shape}")
    if bias.shape != (kernel.shape[-1],):
        raise ValueError(f"{layer_name}: bias shape {bias.shape} does not match kernel")
    return kernel, bias


class Preproc(Layer):
    def call(self, inputs):
        return preprocess(inputs)


class VGGConv(Layer):
    # the variables are plain tf.Variable (not keras ones) -> report them by hand
    def __init__(self, kernel, bias, **kwargs):
        kwargs.setdefault("trainable", False)
        super().__init__(**kwargs)
        kernel, bias = _validated(self.name, kernel, bias)
        self.kernel = tf.Variable(kernel, trainable=False, name="kernel")
        self.bias = tf.Variable(bias, trainable=False, name="bias")

    @property
    def weights(self):
        return [self.kernel, self.bias]

    @property
    def variables(self):
        return [self.kernel, self.bias]

    def call(self, inputs):
        return tf.nn.relu(tf.nn.bias_add(
            tf.nn.conv2d(inputs, self.kernel, strides=1, padding="SAME"), self.bias))


class Pool(Layer):
    def call(self, inputs):
        return tf.nn.max_pool2d(inputs, ksize=2, strides=2, padding="VALID")


class Reshape2D(Layer):
    def call(self, inputs):
        return tf.reshape(inputs, [-1, int(np.prod(inputs.shape[1:]))])


def build_model(weights, num_classes=10):
    inputs = Input(shape=(32, 32, 3), dtype="uint8", name="images")
    x = Preproc(name="preprocess")(inputs)
    for block in sorted(VGG):
        x = _conv_stack(x, VGG[block], weights)
        x = Pool(name="pool%d" % block)(x)
    x = Reshape2D(name="flatten")(x)
    # zeros -> all logits 0 at the start, loss = log(10)
    fc = Dense(num_classes, kernel_initializer="zeros", bias_initializer="zeros", name="fc")
    return Model(inputs, fc(x), name="vgg16_head_transfer")


def _conv_stack(x, names, weights):
    for n in names:
        x = VGGConv(weights[n + "_W"], weights[n + "_b"], name=n)(x)
    return x


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True) if shuffle else ds
    ds = ds.batch(batch_size, drop_remainder=False)
    ds = ds.repeat() if repeat else ds
    return ds.prefetch(tf.data.AUTOTUNE)


def restore_checkpoint(model, checkpoint_dir):
    if not checkpoint_dir:
        return 0
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if latest is None:
        return 0
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    tf.train.Checkpoint(model=model, step=step).restore(latest).expect_partial()
    return int(step.numpy())


def _loss_and_hits(model, images, labels, training):
    labels = tf.cast(labels, tf.int32)
    logits = model(images, training=training)
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    hits = tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), labels), tf.float32)
    return per_example, hits


def _make_step_functions(model, optimizer, global_step):
    @tf.function
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            per_example, hits = _loss_and_hits(model, images, labels, True)
            loss = tf.reduce_mean(per_example)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        global_step.assign_add(1)
        return loss, tf.reduce_mean(hits)

    @tf.function
    def eval_step(images, labels):
        per_example, hits = _loss_and_hits(model, images, labels, False)
        return tf.reduce_sum(per_example), tf.reduce_sum(hits)

    return train_step, eval_step


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    optimizer = Adam(learning_rate=learning_rate)
    optimizer.build(model.trainable_variables)    # slots exist before restoring
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")

    manager = None
    if checkpoint_dir is not None:
        ckpt = tf.train.Checkpoint(model=model, optimizer=optimizer, step=global_step)
        manager = tf.train.CheckpointManager(ckpt, checkpoint_dir, max_to_keep=max_to_keep)
        if manager.latest_checkpoint:
            ckpt.restore(manager.latest_checkpoint).assert_existing_objects_matched()
            print(f"restored {manager.latest_checkpoint} at step {int(global_step.numpy())}")

    writer = None if log_dir is None else tf.summary.create_file_writer(log_dir)
    train_step, eval_step = _make_step_functions(model, optimizer, global_step)

    def write(prefix, loss, acc, at):
        if writer is not None:
            with writer.as_default():
                tf.summary.scalar(prefix + "/loss", loss, step=at)
                tf.summary.scalar(prefix + "/accuracy", acc, step=at)

    history = {key: [] for key in ("step", "loss", "accuracy", "val_step", "val_loss",
                                   "val_accuracy")}
    step = saved = int(global_step.numpy())

    if step < steps:
        for images, labels in train_ds:
            loss, acc = (float(v) for v in train_step(images, labels))
            step = int(global_step.numpy())
            history["step"].append(step)
            history["loss"].append(loss)
            history["accuracy"].append(acc)
            write("train", loss, acc, step)

            if step % checkpoint_every == 0:
                if val_ds is not None:
                    total_loss = total_hits = 0.0
                    count = 0
                    for v_images, v_labels in val_ds:
                        l_sum, h_sum = eval_step(v_images, v_labels)
                        total_loss += float(l_sum)
                        total_hits += float(h_sum)
                        count += int(tf.shape(v_labels)[0])
                    val_loss = total_loss / max(count, 1)
                    val_acc = total_hits / max(count, 1)
                    history["val_step"].append(step)
                    history["val_loss"].append(val_loss)
                    history["val_accuracy"].append(val_acc)
                    print(f"step {step}: loss {loss:.4f} acc {acc:.3f} | "
                          f"val loss {val_loss:.4f} val acc {val_acc:.3f}")
                    write("validation", val_loss, val_acc, step)
                if manager is not None:
                    manager.save(checkpoint_number=step)
                    saved = step
            if step >= steps:
                break
        if manager is not None and saved != step:
            manager.save(checkpoint_number=step)

    if writer is not None:
        writer.flush()
        writer.close()
    history["final_step"] = step
    return history
