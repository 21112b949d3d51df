"""CS assignment: transfer learning with VGG16.

Only the last dense layer gets trained, the conv part of VGG (blocks 1 to 3) is frozen.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
import keras

DEBUG = False
RGB_MEAN = [123.68, 116.779, 103.939]
BLOCK_TABLE = [(1, 2, 64), (2, 2, 128), (3, 3, 256)]
INPUT_SIZE = (32, 32, 3)


def restore_checkpoint(model, checkpoint_dir):
    ckpt_path = tf.train.latest_checkpoint(checkpoint_dir)
    if ckpt_path is None:
        # nothing saved yet
        return 0
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    tf.train.Checkpoint(model=model, step=step_var).restore(ckpt_path).expect_partial()
    return int(step_var.numpy())


def _compute_metrics(logits, targets):
    targets = tf.cast(targets, tf.int64)
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=targets, logits=logits)
    mean_loss = tf.reduce_mean(per_example)
    predicted = tf.argmax(logits, axis=1)
    hits = tf.cast(tf.equal(predicted, targets), tf.float32)
    return mean_loss, tf.reduce_mean(hits)


def _count_params(model):
    # was using this to check only fc is trainable
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def preprocess(images):
    scaled = 255.0 * tf.image.convert_image_dtype(images, tf.float32)
    return scaled - tf.constant(RGB_MEAN, dtype=tf.float32, shape=[1, 1, 1, 3])


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    pipeline = tf.data.Dataset.from_tensor_slices((images, labels))
    n_examples = len(images)
    if shuffle:
        pipeline = pipeline.shuffle(n_examples, seed=seed, reshuffle_each_iteration=True)
    pipeline = pipeline.batch(batch_size)
    if repeat:
        pipeline = pipeline.repeat()
    no_autotune = tf.data.Options()
    no_autotune.autotune.enabled = False
    pipeline = pipeline.prefetch(tf.data.AUTOTUNE)
    return pipeline.with_options(no_autotune)


def build_model(weights, num_classes=10):
    image_in = keras.Input(shape=INPUT_SIZE, dtype="uint8", name="images")
    feat = keras.layers.Lambda(preprocess, output_shape=INPUT_SIZE, name="preprocess")(image_in)
    for block_id, n_conv, depth in BLOCK_TABLE:
        k = 1
        while k <= n_conv:
            layer_name = "conv%d_%d" % (block_id, k)
            conv_layer = keras.layers.Conv2D(depth, 3, strides=1, padding="same",
                                             activation="relu", trainable=False,
                                             name=layer_name)
            feat = conv_layer(feat)
            conv_layer.set_weights([weights[layer_name + "_W"], weights[layer_name + "_b"]])
            k += 1
        feat = keras.layers.MaxPooling2D(pool_size=2, strides=2, name="pool%d" % block_id)(feat)
    feat = keras.layers.Flatten(name="flatten")(feat)
    head = keras.layers.Dense(num_classes, kernel_initializer="zeros", name="fc")
    model = keras.Model(image_in, head(feat), name="vgg16_transfer")
    if DEBUG:
        print("trainable params:", _count_params(model))
    return model


def validate(model, dataset):
    loss_total = 0.0
    correct_total = 0.0
    n_total = 0
    for xb, yb in dataset:
        batch_loss, batch_acc = _compute_metrics(model(xb, training=False), yb)
        size = int(tf.shape(yb)[0])
        loss_total += float(batch_loss) * size
        correct_total += float(batch_acc) * size
        n_total += size
    denom = max(n_total, 1)
    return loss_total / denom, correct_total / denom


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4, checkpoint_dir=None,
          checkpoint_every=100, max_to_keep=5, log_dir=None, verbose=False):
    adam = keras.optimizers.Adam(learning_rate=learning_rate)
    adam.build(model.trainable_variables)
    counter = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    ckpt_manager = None
    if checkpoint_dir is not None:
        state = tf.train.Checkpoint(model=model, optimizer=adam, step=counter)
        ckpt_manager = tf.train.CheckpointManager(state, checkpoint_dir, max_to_keep=max_to_keep)
        if ckpt_manager.latest_checkpoint:
            state.restore(ckpt_manager.latest_checkpoint).assert_existing_objects_matched()

    tb = {}
    if log_dir is not None:
        for split in ("train", "validation"):
            tb[split] = tf.summary.create_file_writer(f"{log_dir}/{split}")

    @tf.function(reduce_retracing=True)
    def update(xb, yb):
        with tf.GradientTape() as tape:
            loss, acc = _compute_metrics(model(xb, training=True), yb)
        params = model.trainable_variables
        adam.apply_gradients(zip(tape.gradient(loss, params), params))
        return loss, acc

    results = {"step": [], "loss": [], "accuracy": [],
               "val_step": [], "val_loss": [], "val_accuracy": []}
    begin = int(counter.numpy())
    assert begin >= 0
    pbar = None
    if verbose and begin < steps:
        pbar = keras.utils.Progbar(steps, interval=0.5, stateful_metrics=["loss", "accuracy"])
    data_iter = iter(train_ds)
    while int(counter.numpy()) < steps:
        xb, yb = next(data_iter)
        loss, acc = update(xb, yb)
        counter.assign_add(1)
        now = int(counter.numpy())
        results["step"].append(now)
        results["loss"].append(float(loss))
        results["accuracy"].append(float(acc))
        if "train" in tb:
            with tb["train"].as_default():
                tf.summary.scalar("loss", loss, step=now)
                tf.summary.scalar("accuracy", acc, step=now)
        if pbar is not None:
            pbar.update(now, [("loss", float(loss)), ("accuracy", float(acc))])
        is_last = now == steps
        if now % checkpoint_every == 0 or is_last:
            if val_ds is not None:
                v_loss, v_acc = validate(model, val_ds)
                results["val_step"].append(now)
                results["val_loss"].append(v_loss)
                results["val_accuracy"].append(v_acc)
                if "validation" in tb:
                    with tb["validation"].as_default():
                        tf.summary.scalar("loss", v_loss, step=now)
                        tf.summary.scalar("accuracy", v_acc, step=now)
                if verbose:
                    print("\nstep %d: validation loss %.4f, accuracy %.4f" % (now, v_loss, v_acc),
                          flush=True)
            if ckpt_manager is not None:
                saved = ckpt_manager.save(checkpoint_number=now)
                if DEBUG:
                    print("saved", saved)
    for writer in tb.values():
        writer.flush()
    results["final_step"] = int(counter.numpy())
    return results
