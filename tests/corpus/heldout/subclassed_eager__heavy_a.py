import itertools
import os.path as osp

import numpy as np
import tensorflow as tf
from tensorflow import keras

# Notes to self:
#  - features coming out of the frozen convs are huge (raw 0-255 input), so the
#    momentum SGD needs the global norm of the gradient capped, and the classifier
#    starts from an all-zero kernel (uniform predictions at step 0).
MAX_GRAD_NORM = 10.0
MOMENTUM = 0.9

RGB_MEAN = tf.constant([123.68, 116.779, 103.939], dtype=tf.float32)

LAYOUT = [
    ("conv", "conv1_1", 64), ("conv", "conv1_2", 64), ("pool", "pool1", 0),
    ("conv", "conv2_1", 128), ("conv", "conv2_2", 128), ("pool", "pool2", 0),
    ("conv", "conv3_1", 256), ("conv", "conv3_2", 256), ("conv", "conv3_3", 256),
    ("pool", "pool3", 0),
]
DEBUG = False


def preprocess(images):
    unit = tf.image.convert_image_dtype(images, tf.float32)   # 0..1
    return tf.subtract(tf.multiply(unit, 255.0), RGB_MEAN)


def _make(kind, name, width):
    if kind == "pool":
        return keras.layers.MaxPooling2D(name=name, strides=(2, 2), pool_size=(2, 2))
    return keras.layers.Conv2D(width, (3, 3), (1, 1), name=name, activation="relu",
                               padding="same", trainable=False, use_bias=True)


def build_model(weights, num_classes=10):
    stack = [keras.Input(shape=(32, 32, 3), dtype="uint8"),
             keras.layers.Lambda(preprocess, name="preprocess")]
    stack += [_make(*row) for row in LAYOUT]
    stack.append(keras.layers.Flatten(name="flatten"))
    stack.append(keras.layers.Dense(num_classes, kernel_initializer="zeros", name="fc",
                                    activation=None))
    net = keras.Sequential(stack, name="transfer_vgg")

    conv_names = [row[1] for row in LAYOUT if row[0] == "conv"]
    for cname in conv_names:
        lyr = net.get_layer(cname)
        lyr.kernel.assign(np.asarray(weights[cname + "_W"], dtype=np.float32))
        lyr.bias.assign(np.asarray(weights[cname + "_b"], dtype=np.float32))
    if DEBUG:
        net.summary()
    return net


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    data = tf.data.Dataset.from_tensor_slices((images, labels))
    steps_in_order = []
    if shuffle:
        steps_in_order.append(lambda d: d.shuffle(len(images), seed=seed,
                                                   reshuffle_each_iteration=True))
    steps_in_order.append(lambda d: d.batch(batch_size))
    if repeat:
        steps_in_order.append(lambda d: d.repeat())
    steps_in_order.append(lambda d: d.prefetch(tf.data.experimental.AUTOTUNE))
    for stage in steps_in_order:
        data = stage(data)
    return data


def restore_checkpoint(model, checkpoint_dir):
    found = tf.train.latest_checkpoint(checkpoint_dir)
    counter = tf.Variable(0, dtype=tf.int64)
    if found is None:
        return 0
    tf.train.Checkpoint(step=counter, model=model).restore(found).expect_partial()
    return int(counter.numpy())


def _predicted(logits, like):
    return tf.argmax(logits, axis=1, output_type=like.dtype)


def _val_pass(net, batches, criterion):
    sums = [0.0, 0, 0]  # loss*n, correct, n
    for xs, ys in batches:
        out = net(xs, training=False)
        size = int(tf.shape(ys)[0])
        sums[0] += size * float(criterion(ys, out))
        sums[1] += int(tf.reduce_sum(tf.cast(_predicted(out, ys) == ys, tf.int32)))
        sums[2] += size
    denom = max(sums[2], 1)
    return sums[0] / denom, sums[1] / denom


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    sgd = keras.optimizers.SGD(learning_rate, MOMENTUM, global_clipnorm=MAX_GRAD_NORM)
    sgd.build(model.trainable_variables)
    criterion = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    done = tf.Variable(0, dtype=tf.int64)
    ckpt_mgr = None
    if checkpoint_dir is not None:
        snap = tf.train.Checkpoint(step=done, optimizer=sgd, model=model)
        ckpt_mgr = tf.train.CheckpointManager(snap, checkpoint_dir, max_to_keep=max_to_keep)
        if ckpt_mgr.latest_checkpoint is not None:
            snap.restore(ckpt_mgr.latest_checkpoint)
            print(f"resuming from {ckpt_mgr.latest_checkpoint} at step {int(done.numpy())}")

    writers = {"train": None, "val": None}
    if log_dir is not None:
        writers["train"] = tf.summary.create_file_writer(osp.join(log_dir, "train"))
        if val_ds is not None:
            writers["val"] = tf.summary.create_file_writer(osp.join(log_dir, "val"))

    def emit(which, at, lv, av):
        w = writers[which]
        if w is None:
            return
        with w.as_default():
            tf.summary.scalar("loss", lv, step=at)
            tf.summary.scalar("accuracy", av, step=at)

    losses, accs, val_losses, val_accs = [], [], [], []
    source = iter(train_ds)
    for _ in itertools.count():
        if int(done.numpy()) >= steps:
            break
        xs, ys = next(source)
        with tf.GradientTape() as tape:
            out = model(xs, training=True)
            lv = criterion(ys, out)
        tvars = model.trainable_variables
        sgd.apply_gradients(zip(tape.gradient(lv, tvars), tvars))
        done.assign_add(1)

        at = int(done.numpy())
        av = tf.reduce_mean(tf.cast(_predicted(out, ys) == ys, tf.float32))
        losses.append(float(lv))
        accs.append(float(av))
        emit("train", at, lv, av)

        periodic = at % checkpoint_every == 0
        if periodic:
            line = "step %d: loss %.4f acc %.3f" % (at, float(lv), float(av))
            if val_ds is not None:
                vl, va = _val_pass(model, val_ds, criterion)
                val_losses.append(vl)
                val_accs.append(va)
                line = line + " | val loss %.4f val acc %.3f" % (vl, va)
                emit("val", at, vl, va)
            print(line)
        if ckpt_mgr is not None and (periodic or at == steps):
            ckpt_mgr.save(checkpoint_number=at)

    for w in writers.values():
        if w is not None:
            w.flush()

    return {"final_step": int(done.numpy()), "loss": losses, "accuracy": accs,
            "val_loss": val_losses, "val_accuracy": val_accs}
