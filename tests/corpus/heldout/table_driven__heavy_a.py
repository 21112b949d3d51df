"""Lab: re-using the first convolutional blocks of VGG16 as a fixed feature
extractor and fitting only a linear read-out on CIFAR-10 style images."""

import os

import numpy as np
import keras
import tensorflow as tf

SHAPE_HWC = (32, 32, 3)
MEAN_COLOUR = [123.68, 116.779, 103.939]

# SGD settings.  The read-out sees features in the thousands (no input
# normalisation), so without capping the gradient's global norm the
# nesterov-momentum steps blow up at lr 1e-4.
SGD_MOMENTUM = 0.9
CLIP = 5.0


def _blocks():
    """[(name, filters)] with filters == 0 meaning a 2x2/2 max-pool."""
    out = []
    for b, (reps, width) in enumerate([(2, 64), (2, 128), (3, 256)], 1):
        out += [("conv%d_%d" % (b, r), width) for r in range(1, reps + 1)]
        out.append(("pool%d" % b, 0))
    return out


def preprocess(images):
    t = tf.dtypes.cast(tf.convert_to_tensor(images), tf.float32)
    return tf.math.subtract(t, tf.constant(MEAN_COLOUR, dtype=tf.float32))


class _Backbone(keras.Model):
    """Frozen VGG front end + dense read-out, applied strictly in list order."""

    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        seq = [keras.layers.Lambda(preprocess, name="preprocess")]
        for lname, width in _blocks():
            if width:
                seq.append(keras.layers.Conv2D(
                    width, kernel_size=3, padding="same", strides=1, use_bias=True,
                    trainable=False, activation="relu", name=lname))
            else:
                seq.append(keras.layers.MaxPooling2D(2, strides=2, name=lname))
        seq.append(keras.layers.Flatten(name="flatten"))
        seq.append(keras.layers.Dense(num_classes, name="fc", activation=None,
                                      bias_initializer="zeros", kernel_initializer="zeros"))
        # one attribute per layer (slot_00, slot_01, ...) so that tf.train.Checkpoint
        # sees every layer; call() walks them in creation order.
        for pos, lyr in enumerate(seq):
            setattr(self, "slot_%02d" % pos, lyr)
        self.n_slots = len(seq)

    def call(self, inputs, training=None):
        h = inputs
        pos = 0
        while pos < self.n_slots:
            h = getattr(self, "slot_%02d" % pos)(h)
            pos += 1
        return h


def _copy_pretrained(net, weights):
    for lname, width in _blocks():
        if not width:
            continue
        target = net.get_layer(lname)
        for var, key in ((target.kernel, "W"), (target.bias, "b")):
            value = np.asarray(weights["%s_%s" % (lname, key)], dtype=np.float32)
            if tuple(value.shape) != tuple(var.shape):
                what = "kernel" if key == "W" else "bias"
                raise ValueError(f"{lname}: {what} shape {value.shape} != {tuple(var.shape)}")
            var.assign(value)


def build_model(weights, num_classes=10):
    net = _Backbone(num_classes, name="vgg16_transfer")
    net(np.zeros((1,) + SHAPE_HWC, dtype=np.uint8))  # create every variable
    _copy_pretrained(net, weights)
    return net


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    x, y = np.asarray(images), np.asarray(labels)
    out = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        out = out.shuffle(len(x), reshuffle_each_iteration=True, seed=seed)
    out = out.batch(batch_size=batch_size, drop_remainder=False)
    if repeat:
        out = out.repeat()
    return out.prefetch(tf.data.AUTOTUNE)


def restore_checkpoint(model, checkpoint_dir):
    latest = None if checkpoint_dir is None else tf.train.latest_checkpoint(checkpoint_dir)
    if latest is None:
        return 0
    step = tf.Variable(0, trainable=False, name="global_step", dtype=tf.int64)
    tf.train.Checkpoint(model=model, step=step).restore(latest).expect_partial()
    return int(step.numpy())


def _validation_scores(net, batches, loss_obj):
    n_total = 0
    n_right = 0
    loss_total = 0.0
    for xb, yb in batches:
        yb = tf.cast(yb, tf.int64)
        scores = net(xb, training=False)
        k = int(yb.shape[0])
        loss_total = loss_total + k * float(loss_obj(yb, scores))
        guess = tf.argmax(scores, axis=1, output_type=tf.int64)
        n_right = n_right + int(tf.reduce_sum(tf.cast(tf.equal(guess, yb), tf.int32)))
        n_total = n_total + k
    if n_total == 0:
        return float("nan"), float("nan")
    return loss_total / n_total, n_right / n_total


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    opt = keras.optimizers.SGD(global_clipnorm=CLIP, nesterov=True, momentum=SGD_MOMENTUM,
                               learning_rate=learning_rate)
    opt.build(model.trainable_variables)
    xent = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    step = tf.Variable(0, trainable=False, name="global_step", dtype=tf.int64)

    mgr = None
    if checkpoint_dir is not None:
        state = tf.train.Checkpoint(model=model, optimizer=opt, step=step)
        mgr = tf.train.CheckpointManager(state, checkpoint_dir, max_to_keep=max_to_keep)
        if mgr.latest_checkpoint:
            state.restore(mgr.latest_checkpoint).assert_existing_objects_matched()
            print(f"Restored {mgr.latest_checkpoint} at step {int(step.numpy())}")

    w_train = w_val = None
    if log_dir is not None:
        w_train = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
        w_val = (tf.summary.create_file_writer(os.path.join(log_dir, "validation"))
                 if val_ds is not None else None)

    def _update(xb, yb):
        yb = tf.cast(yb, tf.int64)
        with tf.GradientTape() as g:
            scores = model(xb, training=True)
            batch_loss = xent(yb, scores)
        tv = model.trainable_variables
        opt.apply_gradients(zip(g.gradient(batch_loss, tv), tv))
        hit = tf.equal(tf.argmax(scores, axis=1, output_type=tf.int64), yb)
        return batch_loss, tf.reduce_mean(tf.cast(hit, tf.float32))

    compiled_update = tf.function(_update)

    hist = {k: [] for k in ("step", "loss", "accuracy", "val_step", "val_loss", "val_accuracy")}

    todo = max(int(steps) - int(step.numpy()), 0)
    it = iter(train_ds.take(todo))
    batch = next(it, None)
    while batch is not None:
        raw_loss, raw_acc = compiled_update(*batch)
        step.assign_add(1)
        now = int(step.numpy())
        lval, aval = float(raw_loss), float(raw_acc)
        hist["step"].append(now)
        hist["loss"].append(lval)
        hist["accuracy"].append(aval)

        if w_train is not None:
            with w_train.as_default():
                tf.summary.scalar("loss", lval, step=now)
                tf.summary.scalar("accuracy", aval, step=now)

        mark = checkpoint_every and now % checkpoint_every == 0
        if mark and val_ds is not None:
            vl, va = _validation_scores(model, val_ds, xent)
            hist["val_step"].append(now)
            hist["val_loss"].append(vl)
            hist["val_accuracy"].append(va)
            print(f"step {now}: loss {lval:.4f} acc {aval:.3f} "
                  f"val_loss {vl:.4f} val_acc {va:.3f}")
            if w_val is not None:
                with w_val.as_default():
                    tf.summary.scalar("loss", vl, step=now)
                    tf.summary.scalar("accuracy", va, step=now)

        if mgr is not None and (mark or now >= steps):
            mgr.save(checkpoint_number=now)
        batch = next(it, None)

    for w in [w for w in (w_train, w_val) if w is not None]:
        w.flush()
        w.close()

    hist["final_step"] = int(step.numpy())
    return hist
