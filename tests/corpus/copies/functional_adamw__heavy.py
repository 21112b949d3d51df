#  transfer learning - vgg16 blocks 1-3 (frozen) + dense, trained with AdamW
#  global step = optimizer.iterations (restored together with the optimizer)
import os
import numpy as np
import tensorflow as tf
from keras import Input, Model, layers, optimizers

IMAGENET_MEAN = np.array([123.68, 116.779, 103.939], dtype=np.float32)

# (conv names, number of filters) per block, every block ends with a 2x2 max pool
BLOCKS = (
    (("conv1_1", "conv1_2"), 64),
    (("conv2_1", "conv2_2"), 128),
    (("conv3_1", "conv3_2", "conv3_3"), 256),
)


def preprocess(images):
    return tf.cast(tf.convert_to_tensor(images), tf.float32) - IMAGENET_MEAN


def build_model(weights, num_classes=10):
    image = Input(shape=(32, 32, 3), dtype="uint8", name="image")
    net = layers.Lambda(preprocess, name="preprocess")(image)
    channels = 3
    for pool_no, (names, filters) in enumerate(BLOCKS, start=1):
        for name in names:
            conv = layers.Conv2D(filters, kernel_size=3, strides=1, padding="same",
                                 activation="relu", use_bias=True, name=name)
            conv.build((None, None, None, channels))
            conv.set_weights([np.asarray(weights[name + "_W"], np.float32),
                              np.asarray(weights[name + "_b"], np.float32)])
            conv.trainable = False
            net = conv(net)
            channels = filters
        net = layers.MaxPooling2D(pool_size=2, strides=2, name=f"pool{pool_no}")(net)
    net = layers.Flatten(name="flatten")(net)
    out = layers.Dense(num_classes, activation=None, kernel_initializer="he_normal",
                       name="fc")(net)
    return Model(inputs=image, outputs=out, name="vgg_transfer")


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        ds = ds.shuffle(buffer_size=len(labels), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if repeat:
        ds = ds.repeat()
    return ds.prefetch(buffer_size=tf.data.AUTOTUNE)


def restore_checkpoint(model, checkpoint_dir):
    found = tf.train.latest_checkpoint(checkpoint_dir)
    if found is None:
        return 0
    opt = optimizers.AdamW()
    tf.train.Checkpoint(model=model, optimizer=opt).restore(found).expect_partial()
    return int(opt.iterations.numpy())


def _open_writers(log_dir, with_validation):
    if not log_dir:
        return None, None
    train_w = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
    val_w = (tf.summary.create_file_writer(os.path.join(log_dir, "validation"))
             if with_validation else None)
    return train_w, val_w


def _log(writer, step, loss, accuracy):
    if writer is None:
        return
    with writer.as_default(step=step):
        tf.summary.scalar("loss", loss)
        tf.summary.scalar("accuracy", accuracy)


def _run_validation(eval_fn, dataset):
    total_loss = total_correct = 0.0
    total = 0
    for x, y in dataset:
        batch_loss, batch_correct, batch_n = eval_fn(x, y)
        total_loss += batch_loss.numpy()
        total_correct += batch_correct.numpy()
        total += int(batch_n)
    return total_loss / total, total_correct / total


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    optimizer = optimizers.AdamW(learning_rate=learning_rate)
    optimizer.build(model.trainable_variables)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    manager = (tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=max_to_keep)
               if checkpoint_dir else None)
    if manager is not None and manager.latest_checkpoint is not None:
        checkpoint.restore(manager.latest_checkpoint)
    start = int(optimizer.iterations.numpy())
    train_writer, val_writer = _open_writers(log_dir, val_ds is not None)

    @tf.function
    def train_step(x, y):
        y64 = tf.cast(y, tf.int64)
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y64, logits=logits))
        trainable = model.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(loss, trainable), trainable))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=-1), y64), tf.float32))
        return loss, correct / tf.cast(tf.shape(logits)[0], tf.float32)

    @tf.function
    def eval_step(x, y):
        y64 = tf.cast(y, tf.int64)
        logits = model(x, training=False)
        losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y64, logits=logits)
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=-1), y64), tf.float32))
        return tf.reduce_sum(losses), correct, tf.shape(logits)[0]

    history = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    batches = iter(train_ds)
    step = start
    while step < steps:
        loss, accuracy = train_step(*next(batches))
        step = int(optimizer.iterations.numpy())
        history["loss"].append(float(loss))
        history["accuracy"].append(float(accuracy))
        _log(train_writer, step, loss, accuracy)

        checkpoint_now = step % checkpoint_every == 0
        if checkpoint_now and val_ds is not None:
            val_loss, val_acc = _run_validation(eval_step, val_ds)
            history["val_loss"].append((step, float(val_loss)))
            history["val_accuracy"].append((step, float(val_acc)))
            print(f"[{step}/{steps}] train loss={float(loss):.4f} "
                  f"val loss={val_loss:.4f} val acc={val_acc:.3f}")
            _log(val_writer, step, val_loss, val_acc)
        if manager is not None and (checkpoint_now or step == steps):
            manager.save(checkpoint_number=step)

    for w in (train_writer, val_writer):
        if w is not None:
            w.flush()
    return dict(final_step=step, start_step=start, **history)
