import os
import numpy as np
import keras
import tensorflow as tf

IN_SHAPE = (32, 32, 3)
MEAN_PIXEL = [123.68, 116.779, 103.939]  # R, G, B on the 0..255 scale
CLIP = 5.0  # SGD would blow up on the raw-scale features without a global-norm clip


def _plan():
    """Yield (name, width) per VGG layer up to pool3; width 0 marks a pooling layer."""
    for blk, reps, width in ((1, 2, 64), (2, 2, 128), (3, 3, 256)):
        for r in range(1, reps + 1):
            yield "conv%d_%d" % (blk, r), width
        yield "pool%d" % blk, 0


def preprocess(images):
    pixels = tf.cast(tf.convert_to_tensor(images), tf.float32)
    return pixels - tf.constant(MEAN_PIXEL, dtype=tf.float32)


def _as_layer(name, width):
    if not width:
        return keras.layers.MaxPooling2D(name=name, strides=2, pool_size=2)
    return keras.layers.Conv2D(width, 3, 1, "same", name=name, trainable=False,
                               use_bias=True, activation="relu")


def _check_and_set(layer, kernel, bias):
    for what, got, var in (("kernel", kernel, layer.kernel), ("bias", bias, layer.bias)):
        want = tuple(var.shape)
        if tuple(got.shape) != want:
            raise ValueError(f"{layer.name}: {what} shape {got.shape} != {want}")
    layer.kernel.assign(kernel)
    layer.bias.assign(bias)


def build_model(weights, num_classes=10):
    stack = [keras.Input(name="images", dtype="uint8", shape=IN_SHAPE),
             keras.layers.Lambda(preprocess, name="preprocess")]
    stack += [_as_layer(n, w) for n, w in _plan()]
    stack += [keras.layers.Flatten(name="flatten"),
              keras.layers.Dense(num_classes, activation=None, name="fc",
                                 bias_initializer="zeros", kernel_initializer="zeros")]
    model = keras.Sequential(stack, name="vgg16_transfer")
    for n, w in _plan():
        if w:
            _check_and_set(model.get_layer(n),
                           np.asarray(weights[f"{n}_W"], dtype=np.float32),
                           np.asarray(weights[f"{n}_b"], dtype=np.float32))
    return model


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    arrays = (np.asarray(images), np.asarray(labels))
    data = tf.data.Dataset.from_tensor_slices(arrays)
    if shuffle:
        data = data.shuffle(buffer_size=int(arrays[0].shape[0]), seed=seed,
                            reshuffle_each_iteration=True)
    data = data.batch(batch_size=batch_size, drop_remainder=False)
    if repeat:
        data = data.repeat()
    return data.prefetch(buffer_size=tf.data.AUTOTUNE)


def restore_checkpoint(model, checkpoint_dir):
    if checkpoint_dir is not None:
        newest = tf.train.latest_checkpoint(checkpoint_dir)
        if newest is not None:
            at = tf.Variable(0, name="global_step", dtype=tf.int64, trainable=False)
            reader = tf.train.Checkpoint(model=model, step=at)
            # optimizer slots in the file are simply left unread
            reader.restore(newest).expect_partial()
            return int(at.numpy())
    return 0


class _Session:
    """Everything `train` needs between steps: optimizer, loss, counter, saver, writers."""

    FIELDS = ("step", "loss", "accuracy", "val_step", "val_loss", "val_accuracy")

    def __init__(self, model, learning_rate):
        self.model = model
        self.opt = keras.optimizers.SGD(nesterov=True, global_clipnorm=CLIP, momentum=0.9,
                                        learning_rate=learning_rate)
        self.opt.build(model.trainable_variables)
        self.xent = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.count = tf.Variable(0, name="global_step", dtype=tf.int64, trainable=False)
        self.mgr = None
        self.writers = [None, None]
        self.record = dict((f, []) for f in self.FIELDS)
        self.fast_update = tf.function(self._update)

    def attach_checkpoints(self, folder, keep):
        state = tf.train.Checkpoint(step=self.count, optimizer=self.opt, model=self.model)
        self.mgr = tf.train.CheckpointManager(state, folder, max_to_keep=keep)
        last = self.mgr.latest_checkpoint
        if last:
            state.restore(last).assert_existing_objects_matched()
            print("Restored {} at step {}".format(last, self.position()))

    def attach_logs(self, folder, with_validation):
        runs = ["train"] + (["validation"] if with_validation else [])
        for slot, run in enumerate(runs):
            self.writers[slot] = tf.summary.create_file_writer(os.path.join(folder, run))

    def position(self):
        return int(self.count.numpy())

    def _update(self, xb, yb):
        yb = tf.cast(yb, tf.int64)
        with tf.GradientTape() as tape:
            out = self.model(xb, training=True)
            cost = self.xent(yb, out)
        tv = self.model.trainable_variables
        self.opt.apply_gradients(zip(tape.gradient(cost, tv), tv))
        guess = tf.argmax(out, output_type=tf.int64, axis=-1)
        return cost, tf.reduce_mean(tf.cast(tf.equal(guess, yb), tf.float32))

    def scalars(self, slot, k, cost, acc):
        w = self.writers[slot]
        if w is not None:
            with w.as_default(step=k):
                tf.summary.scalar("loss", cost)
                tf.summary.scalar("accuracy", acc)

    def note(self, **values):
        for key, v in values.items():
            self.record[key].append(v)

    def holdout(self, batches):
        n_seen = n_right = 0
        total = 0.0
        for xb, yb in batches:
            yb = tf.cast(yb, tf.int64)
            out = self.model(xb, training=False)
            m = int(yb.shape[0])
            total += float(self.xent(yb, out)) * m
            picks = tf.argmax(out, output_type=tf.int64, axis=-1)
            n_right += int(tf.reduce_sum(tf.cast(tf.equal(picks, yb), tf.int32)))
            n_seen += m
        if not n_seen:
            return float("nan"), float("nan")
        return total / n_seen, n_right / n_seen

    def close(self):
        for w in filter(None, self.writers):
            w.flush()
            w.close()


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    run = _Session(model, learning_rate)
    if checkpoint_dir is not None:
        run.attach_checkpoints(checkpoint_dir, max_to_keep)
    if log_dir is not None:
        run.attach_logs(log_dir, val_ds is not None)

    for xb, yb in train_ds.take(max(0, int(steps) - run.position())):
        c, a = run.fast_update(xb, yb)
        run.count.assign_add(1)
        k = run.position()
        c, a = float(c), float(a)
        run.note(step=k, loss=c, accuracy=a)
        run.scalars(0, k, c, a)

        periodic = bool(checkpoint_every) and k % checkpoint_every == 0
        if val_ds is not None and periodic:
            vc, va = run.holdout(val_ds)
            run.note(val_step=k, val_loss=vc, val_accuracy=va)
            print("step %d: loss %.4f acc %.3f val_loss %.4f val_acc %.3f" % (k, c, a, vc, va))
            run.scalars(1, k, vc, va)
        if run.mgr is not None and (periodic or k >= steps):
            run.mgr.save(checkpoint_number=k)

    run.close()
    out = run.record
    out["final_step"] = run.position()
    return out
