"""CIFAR-10 classifier reusing the first three VGG16 blocks as a fixed feature
extractor, with a single learned linear read-out on top.

The network is assembled with the functional API from a small layer table, and
optimisation runs step by step in eager mode under a gradient tape.
"""
from os.path import join as _join

import keras
import numpy as np
import tensorflow as tf
from keras import initializers as kinit
from keras import layers as kl

_DEBUG = False

# Per-channel ImageNet average (R, G, B), expressed on the 0..255 range.
CHANNEL_MEANS = (123.68, 116.779, 103.939)

# Each VGG block: how many 3x3 convolutions, and their width.
_BLOCK_TABLE = {1: (2, 64), 2: (2, 128), 3: (3, 256)}

HEAD_INIT_SEED = 1


def _conv_names():
    """Yield conv layer names in network order: conv1_1, conv1_2, conv2_1, ..."""
    for blk in sorted(_BLOCK_TABLE):
        reps, _ = _BLOCK_TABLE[blk]
        for k in range(reps):
            yield "conv%d_%d" % (blk, k + 1)


def preprocess(images):
    """Centre raw uint8 pictures on the ImageNet mean, keeping the 0..255 range."""
    as_float = tf.cast(tf.convert_to_tensor(images), dtype=tf.float32)
    centre = tf.constant(list(CHANNEL_MEANS), dtype=tf.float32)
    return tf.subtract(as_float, centre)


def _layer_plan(n_out):
    """Produce (layer) objects in order for the whole network after the input."""
    yield kl.Lambda(preprocess, output_shape=(32, 32, 3), name="preprocess")
    for blk in sorted(_BLOCK_TABLE):
        reps, width = _BLOCK_TABLE[blk]
        k = 0
        while k < reps:
            k += 1
            yield kl.Conv2D(
                name=f"conv{blk}_{k}",
                trainable=False,
                use_bias=True,
                activation="relu",
                padding="same",
                strides=(1, 1),
                kernel_size=(3, 3),
                filters=width,
            )
        yield kl.MaxPooling2D(strides=2, pool_size=2, name=f"pool{blk}")
    yield kl.Flatten(name="flatten")
    yield kl.Dense(
        units=n_out,
        name="fc",
        bias_initializer="zeros",
        kernel_initializer=kinit.GlorotUniform(seed=HEAD_INIT_SEED),
        activation=None,
    )


def build_model(weights, num_classes=10):
    image_in = keras.Input(dtype="uint8", shape=(32, 32, 3))
    tensor = image_in
    for lyr in _layer_plan(num_classes):
        tensor = lyr(tensor)
    net = keras.Model(inputs=image_in, outputs=tensor, name="vgg16_transfer")

    # Copy the pretrained filters into the (already built) frozen convolutions.
    to32 = lambda arr: np.asarray(arr, dtype=np.float32)
    [net.get_layer(nm).set_weights([to32(weights[f"{nm}_W"]), to32(weights[f"{nm}_b"])])
     for nm in _conv_names()]
    if _DEBUG:
        net.summary()
    return net


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    pipeline = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        # Buffer spans the full set, so each epoch gets a complete fresh permutation.
        pipeline = pipeline.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    pipeline = pipeline.batch(batch_size=batch_size, drop_remainder=False)
    pipeline = pipeline.repeat() if repeat else pipeline
    return pipeline.prefetch(tf.data.AUTOTUNE)


def _loss_and_accuracy(logits, labels):
    targets = tf.cast(labels, dtype=tf.int64)
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(logits=logits, labels=targets)
    guesses = tf.math.argmax(logits, axis=1)
    acc = tf.math.reduce_mean(tf.cast(tf.math.equal(guesses, targets), dtype=tf.float32))
    return tf.math.reduce_mean(per_example), acc


def _run_validation(net, data):
    sums = [0.0, 0.0]
    seen = 0
    for xb, yb in data:
        batch_loss, batch_acc = _loss_and_accuracy(net(xb, training=False), yb)
        width = int(tf.shape(yb)[0])
        sums[0] += float(batch_loss) * width
        sums[1] += float(batch_acc) * width
        seen += width
    if not seen:
        return float("nan"), float("nan")
    return sums[0] / seen, sums[1] / seen


def _emit(writer, step_no, loss_value, acc_value):
    if writer is None:
        return
    with writer.as_default():
        tf.summary.scalar("loss", loss_value, step=step_no)
        tf.summary.scalar("accuracy", acc_value, step=step_no)


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    counter = tf.Variable(0, trainable=False, dtype=tf.int64, name="global_step")
    opt = keras.optimizers.Adam(learning_rate=learning_rate)
    # Allocate the moment slots now so restoring has something to fill.
    opt.build(model.trainable_variables)

    saver = tf.train.Checkpoint(step=counter, optimizer=opt, model=model)
    mgr = (tf.train.CheckpointManager(saver, checkpoint_dir, max_to_keep=max_to_keep)
           if checkpoint_dir is not None else None)
    if mgr is not None and mgr.latest_checkpoint:
        saver.restore(mgr.latest_checkpoint)
        print("resumed from %s, global step %d" % (mgr.latest_checkpoint, int(counter)))

    tb = {"train": None, "val": None}
    if log_dir is not None:
        tb = {run: tf.summary.create_file_writer(_join(log_dir, run)) for run in tb}

    record = {key: [] for key in ("step", "loss", "accuracy",
                                  "val_step", "val_loss", "val_accuracy")}

    stream = iter(train_ds)
    while int(counter) < steps:
        xb, yb = next(stream)
        with tf.GradientTape() as tape:
            out = model(xb, training=True)
            loss, acc = _loss_and_accuracy(out, yb)
        params = model.trainable_variables
        opt.apply_gradients(list(zip(tape.gradient(loss, params), params)))
        counter.assign_add(1)
        now = int(counter)

        for key, val in (("step", now), ("loss", float(loss)), ("accuracy", float(acc))):
            record[key].append(val)
        _emit(tb["train"], now, loss, acc)

        on_boundary = now % checkpoint_every == 0
        if on_boundary:
            line = "step %d: loss %.4f acc %.3f" % (now, float(loss), float(acc))
            if val_ds is not None:
                v_loss, v_acc = _run_validation(model, val_ds)
                record["val_step"].append(now)
                record["val_loss"].append(v_loss)
                record["val_accuracy"].append(v_acc)
                line += " | val loss %.4f val acc %.3f" % (v_loss, v_acc)
                _emit(tb["val"], now, v_loss, v_acc)
            print(line)

        if mgr is not None and (on_boundary or now == steps):
            mgr.save(checkpoint_number=now)

    for w in tb.values():
        if w is not None:
            w.flush()

    record["final_step"] = int(counter)
    return record


def restore_checkpoint(model, checkpoint_dir):
    newest = tf.train.latest_checkpoint(checkpoint_dir)
    if newest is None:
        return 0
    at_step = tf.Variable(0, trainable=False, dtype=tf.int64)
    # The file also carries Adam state; only weights and the counter are wanted here.
    status = tf.train.Checkpoint(step=at_step, model=model).restore(newest)
    status.expect_partial()
    return int(at_step)
