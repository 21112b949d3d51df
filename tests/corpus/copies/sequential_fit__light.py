# Transfer learning HW: frozen VGG16 conv blocks 1-3 + dense, keras.Sequential + fit().
# trick: steps_per_epoch=1 so one epoch == one training step, then initial_epoch = step to resume

import os

import numpy as np
import tensorflow as tf
import keras


MEAN_RGB = [123.68, 116.779, 103.939]

# layers of vgg16 that we keep (filters=None -> max pool)
LAYER_SPEC = [
    ('conv1_1', 64), ('conv1_2', 64), ('pool1', None),
    ('conv2_1', 128), ('conv2_2', 128), ('pool2', None),
    ('conv3_1', 256), ('conv3_2', 256), ('conv3_3', 256), ('pool3', None),
]


def preprocess(images):
    x = tf.cast(images, tf.float32)
    return x - tf.constant(MEAN_RGB, dtype=tf.float32)


class MeanSubtract(keras.layers.Layer):
    # so that preprocess is a layer of the model

    def call(self, inputs):
        return preprocess(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


def build_model(weights, num_classes=10):
    stack = [keras.Input(shape=(32, 32, 3), dtype='uint8'), MeanSubtract(name='preprocess')]
    for lname, n_filters in LAYER_SPEC:
        if n_filters is None:
            stack.append(keras.layers.MaxPooling2D(pool_size=2, strides=2, name=lname))
        else:
            stack.append(keras.layers.Conv2D(n_filters, 3, strides=1, padding='same',
                                             activation='relu', name=lname))
    stack.append(keras.layers.Flatten(name='flatten'))
    stack.append(keras.layers.Dense(num_classes, name='fc'))

    net = keras.Sequential(stack, name='vgg_transfer')

    # load pretrained kernels/biases + freeze
    for lname, n_filters in LAYER_SPEC:
        if n_filters is None:
            continue
        conv = net.get_layer(lname)
        w = np.asarray(weights[lname + '_W'], dtype=np.float32)
        b = np.asarray(weights[lname + '_b'], dtype=np.float32)
        conv.set_weights([w, b])
        conv.trainable = False
    return net


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    data = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        data = data.shuffle(buffer_size=len(images), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size, drop_remainder=False)
    if repeat:
        data = data.repeat()
    return data.prefetch(tf.data.AUTOTUNE)


class StepSaver(keras.callbacks.Callback):
    """increments the step after each batch, saves every n steps + at the end"""

    def __init__(self, counter, mgr, every_n, final):
        super().__init__()
        self.counter = counter
        self.mgr = mgr
        self.every_n = every_n
        self.final = final

    def on_train_batch_end(self, batch, logs=None):
        self.counter.assign_add(1)

    def on_epoch_end(self, epoch, logs=None):
        s = int(self.counter.numpy())
        if self.mgr is None:
            return
        if s % self.every_n == 0 or s >= self.final:
            self.mgr.save(checkpoint_number=s)


def _ckpt_for(model, opt=None, counter=None):
    parts = {'model': model}
    if opt is not None:
        parts['optimizer'] = opt
    if counter is not None:
        parts['step'] = counter
    return tf.train.Checkpoint(**parts)


def restore_checkpoint(model, checkpoint_dir):
    last = tf.train.latest_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if last is None:
        return 0
    counter = tf.Variable(0, dtype=tf.int64, trainable=False)
    _ckpt_for(model, counter=counter).restore(last).expect_partial()
    return int(counter.numpy())


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    opt = keras.optimizers.Adam(learning_rate=learning_rate)
    model.compile(
        optimizer=opt,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name='accuracy')],
    )
    opt.build(model.trainable_variables)   # slots have to exist before restore

    counter = tf.Variable(0, dtype=tf.int64, trainable=False, name='global_step')
    mgr = None
    if checkpoint_dir:
        ck = _ckpt_for(model, opt, counter)
        mgr = tf.train.CheckpointManager(ck, checkpoint_dir, max_to_keep=max_to_keep)
        if mgr.latest_checkpoint:
            ck.restore(mgr.latest_checkpoint).assert_existing_objects_matched()
            print(f'Restored {mgr.latest_checkpoint} (step {int(counter.numpy())})')

    first = int(counter.numpy())
    out = {'final_step': first, 'loss': [], 'accuracy': [], 'val_loss': [], 'val_accuracy': []}
    if first >= steps:
        return out

    cbs = [StepSaver(counter, mgr, checkpoint_every, steps)]
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
        cbs.append(keras.callbacks.TensorBoard(log_dir=log_dir, update_freq='epoch'))

    hist = model.fit(
        train_ds,
        epochs=steps,
        initial_epoch=first,
        steps_per_epoch=1,
        validation_data=val_ds,
        validation_freq=checkpoint_every,
        callbacks=cbs,
        shuffle=False,
        verbose=0,
    )

    for k in out:
        if k in hist.history:
            out[k] = [float(v) for v in hist.history[k]]
    out['final_step'] = int(counter.numpy())
    return out
