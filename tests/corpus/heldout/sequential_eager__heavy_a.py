"""VGG16 feature extractor (first three blocks, weights fixed) with a small
trainable classifier on top.  Exercise module for the transfer-learning lab."""
from os.path import join as _join

import numpy
import tensorflow as tf
import keras
from keras import initializers as inits, layers as L

_PIXEL_MEAN = [123.68, 116.779, 103.939]  # R, G, B average of the ImageNet set

# per stage: how many 3x3 convolutions and how wide they are
_STAGES = ((2, 64), (2, 128), (3, 256))

_HEAD_SEED = 1
_VERBOSE_RESTORE = True


def _layer_names():
    names = []
    for stage, (depth, _) in enumerate(_STAGES, start=1):
        names.extend("conv%d_%d" % (stage, k) for k in range(1, depth + 1))
    return names


def preprocess(images):
    as_float = tf.cast(tf.convert_to_tensor(images), dtype=tf.float32)
    centre = tf.constant(_PIXEL_MEAN, dtype=tf.float32)
    return tf.subtract(as_float, centre)


def build_model(weights, num_classes=10):
    net_in = keras.Input(shape=(32, 32, 3), dtype="uint8")
    h = L.Lambda(preprocess, output_shape=(32, 32, 3), name="preprocess")(net_in)
    for stage, (depth, width) in enumerate(_STAGES, start=1):
        k = 1
        while k <= depth:
            h = L.Conv2D(width, 3, name=f"conv{stage}_{k}", padding="same", strides=1,
                         use_bias=True, trainable=False, activation="relu")(h)
            k += 1
        h = L.MaxPooling2D(strides=2, pool_size=2, name=f"pool{stage}")(h)
    h = L.Flatten(name="flatten")(h)
    head = L.Dense(num_classes, name="fc", bias_initializer="zeros", activation=None,
                   kernel_initializer=inits.GlorotUniform(seed=_HEAD_SEED))
    net = keras.Model(net_in, head(h), name="vgg16_transfer")

    pretrained = {
        lname: [numpy.asarray(weights[lname + suffix], dtype=numpy.float32)
                for suffix in ("_W", "_b")]
        for lname in _layer_names()
    }
    for lname, pair in pretrained.items():
        net.get_layer(lname).set_weights(pair)
    return net


def _metrics(logits, labels):
    target = tf.cast(labels, dtype=tf.int64)
    per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(logits=logits, labels=target)
    hits = tf.cast(tf.math.equal(tf.math.argmax(logits, axis=1), target), tf.float32)
    return tf.math.reduce_mean(per_example), tf.math.reduce_mean(hits)


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    pipeline = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        pipeline = pipeline.shuffle(len(images), reshuffle_each_iteration=True, seed=seed)
    pipeline = pipeline.batch(batch_size, drop_remainder=False)
    pipeline = pipeline.repeat() if repeat else pipeline
    return pipeline.prefetch(tf.data.AUTOTUNE)


def _run_validation(net, data):
    n_seen = 0
    loss_acc = 0.0
    hit_acc = 0.0
    for xb, yb in data:
        lval, aval = _metrics(net(xb, training=False), yb)
        size = int(tf.shape(yb)[0])
        loss_acc, hit_acc, n_seen = loss_acc + float(lval) * size, hit_acc + float(aval) * size, n_seen + size
    if not n_seen:
        return float("nan"), float("nan")
    return loss_acc / n_seen, hit_acc / n_seen


def restore_checkpoint(model, checkpoint_dir):
    newest = tf.train.latest_checkpoint(checkpoint_dir)
    if newest is None:
        return 0
    counter = tf.Variable(0, trainable=False, dtype=tf.int64)
    tf.train.Checkpoint(step=counter, model=model).restore(newest).expect_partial()
    return int(counter)


def _scalars(writer, at, **values):
    if writer is None:
        return
    with writer.as_default():
        for tag in ("loss", "accuracy"):
            tf.summary.scalar(tag, values[tag], step=at)


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    adam = keras.optimizers.Adam(learning_rate=learning_rate)
    params = model.trainable_variables
    adam.build(params)
    counter = tf.Variable(0, trainable=False, dtype=tf.int64, name="global_step")
    state = tf.train.Checkpoint(optimizer=adam, step=counter, model=model)

    saver = None
    if checkpoint_dir is not None:
        saver = tf.train.CheckpointManager(state, checkpoint_dir, max_to_keep=max_to_keep)
        last = saver.latest_checkpoint
        if last:
            state.restore(last)
            if _VERBOSE_RESTORE:
                print(f"restored {last} at step {int(counter)}")

    tw = vw = None
    if log_dir is not None:
        tw, vw = [tf.summary.create_file_writer(_join(log_dir, sub)) for sub in ("train", "val")]

    log = dict(step=[], loss=[], accuracy=[], val_step=[], val_loss=[], val_accuracy=[])

    def one_update(xb, yb):
        with tf.GradientTape() as tape:
            batch_loss, batch_acc = _metrics(model(xb, training=True), yb)
        grads = tape.gradient(batch_loss, model.trainable_variables)
        adam.apply_gradients(zip(grads, model.trainable_variables))
        return batch_loss, batch_acc

    feed = iter(train_ds)
    while True:
        if not int(counter) < steps:
            break
        xb, yb = next(feed)
        batch_loss, batch_acc = one_update(xb, yb)
        counter.assign_add(1)
        now = int(counter)
        for key, val in (("step", now), ("loss", float(batch_loss)), ("accuracy", float(batch_acc))):
            log[key].append(val)
        _scalars(tw, now, loss=batch_loss, accuracy=batch_acc)

        on_interval = now % checkpoint_every == 0
        if on_interval:
            parts = [f"step {now}: loss {float(batch_loss):.4f} acc {float(batch_acc):.3f}"]
            if val_ds is not None:
                vl, va = _run_validation(model, val_ds)
                log["val_step"].append(now)
                log["val_loss"].append(vl)
                log["val_accuracy"].append(va)
                parts.append(f"val loss {vl:.4f} val acc {va:.3f}")
                _scalars(vw, now, loss=vl, accuracy=va)
            print(" | ".join(parts))
        if saver is not None and (on_interval or now == steps):
            saver.save(checkpoint_number=now)

    for w in (tw, vw):
        if w is not None:
            w.flush()
    log["final_step"] = int(counter)
    return log
