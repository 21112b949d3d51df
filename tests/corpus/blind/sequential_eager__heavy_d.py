"""CIFAR-10 classifier: VGG16 feature extractor (frozen, through pool3) + linear head.

Everything runs eagerly: the update step is an ordinary Python function using a
gradient tape, with no graph tracing involved.
"""
from os.path import join as _join

import numpy as np
import tensorflow as tf
import keras
from keras.layers import Conv2D, Dense, Flatten, Layer, MaxPooling2D
from keras.initializers import GlorotUniform

DEBUG = False

# per-channel ImageNet average (R, G, B), same 0..255 range as the raw pixels
CHANNEL_MEAN = (123.68, 116.779, 103.939)

# one row per VGG stage: (stage index, width, convolutions in the stage)
STAGES = ((1, 64, 2), (2, 128, 2), (3, 256, 3))

HEAD_INIT_SEED = 1


def _conv_names():
    """Yield (layer name, width) for every convolution we borrow from VGG16."""
    for stage, width, depth in STAGES:
        for k in range(depth):
            yield "conv%d_%d" % (stage, k + 1), width


def preprocess(images):
    """Cast uint8 RGB images to float32 and remove the ImageNet mean colour."""
    as_float = tf.cast(tf.convert_to_tensor(images), dtype=tf.float32)
    return tf.subtract(as_float, tf.constant(CHANNEL_MEAN, dtype=tf.float32))


class MeanShift(Layer):
    """Wraps `preprocess` so it shows up as a named layer in the network."""

    def compute_output_shape(self, input_shape):
        return input_shape

    def call(self, inputs):
        return preprocess(inputs)


def _locked_conv(label, width):
    return Conv2D(width, 3, name=label, trainable=False, activation="relu",
                  padding="same", use_bias=True, strides=1)


def build_model(weights, num_classes=10):
    image_in = keras.Input(dtype="uint8", shape=(32, 32, 3))
    h = MeanShift(name="preprocess")(image_in)
    for stage, width, depth in STAGES:
        h = [h]
        for k in range(1, depth + 1):
            h[0] = _locked_conv(f"conv{stage}_{k}", width)(h[0])
        h = MaxPooling2D(strides=2, pool_size=2, name=f"pool{stage}")(h[0])
    h = Flatten(name="flatten")(h)
    head = Dense(num_classes, name="fc", bias_initializer="zeros", activation=None,
                 kernel_initializer=GlorotUniform(seed=HEAD_INIT_SEED))
    net = keras.Model(inputs=image_in, outputs=head(h), name="vgg16_transfer")

    # layers already have variables (the graph above built them): copy VGG in
    list(map(lambda item: net.get_layer(item[0]).set_weights(
        [np.asarray(weights[item[0] + suffix], dtype=np.float32) for suffix in ("_W", "_b")]),
        _conv_names()))
    if DEBUG:
        net.summary()
    return net


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    pipeline = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        # a buffer as large as the data gives a complete reshuffle each epoch
        pipeline = pipeline.shuffle(len(images), reshuffle_each_iteration=True, seed=seed)
    pipeline = pipeline.batch(batch_size=batch_size, drop_remainder=False)
    pipeline = pipeline.repeat() if repeat else pipeline
    return pipeline.prefetch(tf.data.AUTOTUNE)


def _metrics(scores, targets):
    targets = tf.cast(targets, dtype=tf.int64)
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(logits=scores, labels=targets)
    hit = tf.math.equal(tf.math.argmax(scores, axis=1), targets)
    return tf.math.reduce_mean(xent), tf.math.reduce_mean(tf.cast(hit, dtype=tf.float32))


def _score_dataset(net, data):
    sums = [0.0, 0.0]
    seen = 0
    for x, y in data:
        batch_loss, batch_acc = _metrics(net(x, training=False), y)
        size = int(tf.shape(y)[0])
        sums[0] += float(batch_loss) * size
        sums[1] += float(batch_acc) * size
        seen += size
    if not seen:
        return float("nan"), float("nan")
    return sums[0] / seen, sums[1] / seen


def _emit(writer, step, **values):
    if writer is None:
        return
    with writer.as_default():
        for tag, value in values.items():
            tf.summary.scalar(tag, value, step=step)


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    counter = tf.Variable(0, trainable=False, dtype=tf.int64, name="global_step")
    adam = keras.optimizers.Adam(learning_rate=learning_rate)
    # make the moment slots exist before any restore so it can fill them
    adam.build(model.trainable_variables)

    state = tf.train.Checkpoint(model=model, optimizer=adam, step=counter)
    saver = (tf.train.CheckpointManager(state, checkpoint_dir, max_to_keep=max_to_keep)
             if checkpoint_dir is not None else None)
    if saver is not None and saver.latest_checkpoint:
        state.restore(saver.latest_checkpoint)
        print("resumed from %s, step %d" % (saver.latest_checkpoint, int(counter)))

    tb_train = tb_val = None
    if log_dir is not None:
        tb_train, tb_val = (tf.summary.create_file_writer(_join(log_dir, sub))
                            for sub in ("train", "val"))

    log = {key: [] for key in ("step", "loss", "accuracy", "val_step", "val_loss", "val_accuracy")}
    stream = iter(train_ds)

    for current in range(int(counter) + 1, steps + 1):
        x, y = next(stream)
        with tf.GradientTape() as tape:
            batch_loss, batch_acc = _metrics(model(x, training=True), y)
        params = model.trainable_variables
        adam.apply_gradients(zip(tape.gradient(batch_loss, params), params))
        counter.assign_add(1)
        assert int(counter) == current

        log["step"].append(current)
        log["loss"].append(float(batch_loss))
        log["accuracy"].append(float(batch_acc))
        _emit(tb_train, current, loss=batch_loss, accuracy=batch_acc)

        at_interval = current % checkpoint_every == 0
        if at_interval:
            line = "step %d: loss %.4f acc %.3f" % (current, float(batch_loss), float(batch_acc))
            if val_ds is not None:
                v_loss, v_acc = _score_dataset(model, val_ds)
                log["val_step"].append(current)
                log["val_loss"].append(v_loss)
                log["val_accuracy"].append(v_acc)
                line += " | val loss %.4f val acc %.3f" % (v_loss, v_acc)
                _emit(tb_val, current, loss=v_loss, accuracy=v_acc)
            print(line)

        if saver is not None and (at_interval or current == steps):
            saver.save(checkpoint_number=current)

    for w in filter(None, (tb_train, tb_val)):
        w.flush()

    log["final_step"] = int(counter)
    return log


def restore_checkpoint(model, checkpoint_dir):
    newest = tf.train.latest_checkpoint(checkpoint_dir)
    if newest is None:
        return 0
    saved_step = tf.Variable(0, trainable=False, dtype=tf.int64)
    # the file also holds Adam's slots; only weights and the counter are wanted here
    status = tf.train.Checkpoint(step=saved_step, model=model).restore(newest)
    status.expect_partial()
    return int(saved_step)
