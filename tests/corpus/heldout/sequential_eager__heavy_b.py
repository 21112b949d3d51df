# CIFAR-10 classifier on top of VGG16's first three convolution blocks (kept frozen).
# Only the final dense layer learns; everything runs eagerly.
import os.path as osp

import keras
import numpy as np
import tensorflow as tf

Conv2D = keras.layers.Conv2D
MaxPool = keras.layers.MaxPooling2D

RGB_CENTRE = (123.68, 116.779, 103.939)
HEAD_INIT_SEED = 1
DEBUG = False

# block -> widths of its 3x3 convolutions
STAGES = {
    1: (64, 64),
    2: (128, 128),
    3: (256, 256, 256),
}


def _names():
    """conv1_1, conv1_2, conv2_1, ... in network order."""
    out = []
    for stage in sorted(STAGES):
        out.extend("conv%d_%d" % (stage, j + 1) for j in range(len(STAGES[stage])))
    return out


def restore_checkpoint(model, checkpoint_dir):
    newest = tf.train.latest_checkpoint(checkpoint_dir)
    if newest is not None:
        counter = tf.Variable(0, trainable=False, dtype=tf.int64)
        reader = tf.train.Checkpoint(step=counter, model=model)
        reader.restore(newest).expect_partial()
        return int(counter)
    return 0


def preprocess(images):
    as_float = tf.cast(tf.convert_to_tensor(images), dtype=tf.float32)
    centre = tf.constant(RGB_CENTRE, tf.float32)
    return tf.subtract(as_float, centre)


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    pipeline = tf.data.Dataset.from_tensor_slices((images, labels))
    pipeline = (pipeline.shuffle(len(images), reshuffle_each_iteration=True, seed=seed)
                if shuffle else pipeline)
    pipeline = pipeline.batch(batch_size, drop_remainder=False)
    pipeline = pipeline.repeat() if repeat else pipeline
    return pipeline.prefetch(tf.data.AUTOTUNE)


def build_model(weights, num_classes=10):
    net = keras.Sequential(name="vgg16_transfer")
    net.add(keras.Input(dtype="uint8", shape=(32, 32, 3)))
    net.add(keras.layers.Lambda(preprocess, output_shape=(32, 32, 3), name="preprocess"))
    for stage in sorted(STAGES):
        for j, width in enumerate(STAGES[stage]):
            net.add(Conv2D(width, 3, name=f"conv{stage}_{j + 1}", activation="relu",
                           padding="same", strides=1, trainable=False, use_bias=True))
        net.add(MaxPool(strides=2, pool_size=2, name=f"pool{stage}"))
    net.add(keras.layers.Flatten(name="flatten"))
    head_init = keras.initializers.GlorotUniform(seed=HEAD_INIT_SEED)
    net.add(keras.layers.Dense(num_classes, name="fc", bias_initializer="zeros",
                               kernel_initializer=head_init, activation=None))

    # Sequential with an Input is already built here, so the variables exist.
    for lname in _names():
        target = net.get_layer(lname)
        target.kernel.assign(np.asarray(weights[lname + "_W"], np.float32))
        target.bias.assign(np.asarray(weights[lname + "_b"], np.float32))
    return net


def _score(logits, labels):
    y = tf.cast(labels, tf.int64)
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(logits=logits, labels=y)
    hits = tf.cast(tf.argmax(logits, axis=1) == y, tf.float32)
    return tf.reduce_mean(xent), tf.reduce_mean(hits)


def _mean_over(net, batches):
    seen = 0
    acc_sum = loss_sum = 0.0
    for x, y in batches:
        l, a = _score(net(x, training=False), y)
        size = int(tf.shape(y)[0])
        loss_sum = loss_sum + size * float(l)
        acc_sum = acc_sum + size * float(a)
        seen = seen + size
    if not seen:
        return float("nan"), float("nan")
    return loss_sum / seen, acc_sum / seen


class _Logs:
    """Two TensorBoard writers (or none)."""

    def __init__(self, root):
        self.runs = []
        if root is not None:
            self.runs = [tf.summary.create_file_writer(osp.join(root, sub))
                         for sub in ("train", "val")]

    def put(self, which, step, loss, accuracy):
        if self.runs:
            with self.runs[which].as_default(step=step):
                tf.summary.scalar("loss", loss)
                tf.summary.scalar("accuracy", accuracy)

    def done(self):
        for w in self.runs:
            w.flush()


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    adam = keras.optimizers.Adam(learning_rate=learning_rate)
    params = model.trainable_variables
    adam.build(params)
    counter = tf.Variable(0, name="global_step", trainable=False, dtype=tf.int64)
    state = tf.train.Checkpoint(model=model, optimizer=adam, step=counter)

    keeper = None
    if checkpoint_dir is not None:
        keeper = tf.train.CheckpointManager(state, checkpoint_dir, max_to_keep=max_to_keep)
        found = keeper.latest_checkpoint
        if found:
            state.restore(found)
            print(f"restored {found} at step {int(counter)}")

    logs = _Logs(log_dir)
    record = dict(step=[], loss=[], accuracy=[], val_step=[], val_loss=[], val_accuracy=[])

    feed = iter(train_ds)
    for _ in range(max(0, steps - int(counter))):
        x, y = next(feed)
        with tf.GradientTape() as tape:
            loss, acc = _score(model(x, training=True), y)
        params = model.trainable_variables
        adam.apply_gradients(zip(tape.gradient(loss, params), params))
        counter.assign_add(1)
        now = int(counter)

        for key, value in (("step", now), ("loss", float(loss)), ("accuracy", float(acc))):
            record[key].append(value)
        logs.put(0, now, loss, acc)

        due = now % checkpoint_every == 0
        if due:
            parts = [f"step {now}: loss {float(loss):.4f} acc {float(acc):.3f}"]
            if val_ds is not None:
                vl, va = _mean_over(model, val_ds)
                record["val_step"].append(now)
                record["val_loss"].append(vl)
                record["val_accuracy"].append(va)
                parts.append(f"val loss {vl:.4f} val acc {va:.3f}")
                logs.put(1, now, vl, va)
            print(" | ".join(parts))
        if keeper is not None and (due or now == steps):
            keeper.save(checkpoint_number=now)
        if DEBUG:
            print("debug", now)

    logs.done()
    record["final_step"] = int(counter)
    return record
