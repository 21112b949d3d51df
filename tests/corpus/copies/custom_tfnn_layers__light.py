# Transfer learning assignment.
# First three VGG16 blocks, frozen, written as small custom keras layers that call tf.nn directly.
# The VGG kernels/biases are plain non-trainable tf.Variables; only "fc" is trained.

import numpy as np
import tensorflow as tf
import keras

MEAN_RGB = [123.68, 116.779, 103.939]

# conv names in each block (each block ends with a max pool)
CONV_GROUPS = [
    ['conv1_1', 'conv1_2'],
    ['conv2_1', 'conv2_2'],
    ['conv3_1', 'conv3_2', 'conv3_3'],
]


def preprocess(images):
    t = tf.cast(tf.convert_to_tensor(images), tf.float32)
    return t - tf.constant(MEAN_RGB, dtype=tf.float32)


class PreprocessLayer(keras.layers.Layer):
    def call(self, inputs):
        return preprocess(inputs)


class FixedConv3x3(keras.layers.Layer):
    """conv 3x3, stride 1, SAME padding, + bias + relu, weights never change.

    keras 3 does not track raw tf.Variables, so weights/variables are overridden
    to return [kernel, bias].
    """

    def __init__(self, kernel, bias, **kwargs):
        kwargs.setdefault('trainable', False)
        super().__init__(**kwargs)
        k = np.asarray(kernel, dtype=np.float32)
        b = np.asarray(bias, dtype=np.float32)
        if k.ndim != 4 or k.shape[:2] != (3, 3):
            raise ValueError(f'{self.name}: expected a 3x3 kernel, got {k.shape}')
        if b.shape != (k.shape[-1],):
            raise ValueError(f'{self.name}: bias shape {b.shape} does not match kernel')
        self.kernel = tf.Variable(k, trainable=False, name='kernel')
        self.bias = tf.Variable(b, trainable=False, name='bias')

    @property
    def weights(self):
        return [self.kernel, self.bias]

    @property
    def variables(self):
        return [self.kernel, self.bias]

    def call(self, inputs):
        out = tf.nn.conv2d(inputs, self.kernel, strides=1, padding='SAME')
        out = tf.nn.bias_add(out, self.bias)
        return tf.nn.relu(out)


class Pool2(keras.layers.Layer):
    def call(self, inputs):
        return tf.nn.max_pool2d(inputs, ksize=2, strides=2, padding='VALID')


class Flat(keras.layers.Layer):
    def call(self, inputs):
        n = int(np.prod(inputs.shape[1:]))
        return tf.reshape(inputs, [-1, n])


def build_model(weights, num_classes=10):
    inp = keras.Input(shape=(32, 32, 3), dtype='uint8', name='images')
    h = PreprocessLayer(name='preprocess')(inp)
    for b, group in enumerate(CONV_GROUPS, start=1):
        for lname in group:
            h = FixedConv3x3(weights[lname + '_W'], weights[lname + '_b'], name=lname)(h)
        h = Pool2(name=f'pool{b}')(h)
    h = Flat(name='flatten')(h)
    # zero init for the classifier, otherwise the first logits are enormous
    out = keras.layers.Dense(num_classes, kernel_initializer='zeros',
                             bias_initializer='zeros', name='fc')(h)
    return keras.Model(inp, out, name='vgg16_head_transfer')


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    data = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        data = data.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size, drop_remainder=False)
    if repeat:
        data = data.repeat()
    return data.prefetch(tf.data.AUTOTUNE)


def _make_ckpt(model, counter, opt=None):
    if opt is None:
        return tf.train.Checkpoint(model=model, step=counter)
    return tf.train.Checkpoint(model=model, optimizer=opt, step=counter)


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    opt = keras.optimizers.Adam(learning_rate=learning_rate)
    opt.build(model.trainable_variables)
    counter = tf.Variable(0, dtype=tf.int64, trainable=False, name='global_step')

    mgr = None
    if checkpoint_dir is not None:
        ck = _make_ckpt(model, counter, opt)
        mgr = tf.train.CheckpointManager(ck, checkpoint_dir, max_to_keep=max_to_keep)
        if mgr.latest_checkpoint:
            ck.restore(mgr.latest_checkpoint).assert_existing_objects_matched()
            print(f'restored {mgr.latest_checkpoint} at step {int(counter.numpy())}')

    tb = tf.summary.create_file_writer(log_dir) if log_dir is not None else None

    @tf.function
    def step_fn(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.cast(y, tf.int32), logits=logits))
        g = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(g, model.trainable_variables))
        counter.assign_add(1)
        hit = tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), tf.cast(y, tf.int32))
        return loss, tf.reduce_mean(tf.cast(hit, tf.float32))

    @tf.function
    def eval_fn(x, y):
        logits = model(x, training=False)
        per_ex = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(y, tf.int32), logits=logits)
        hit = tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), tf.cast(y, tf.int32))
        return tf.reduce_sum(per_ex), tf.reduce_sum(tf.cast(hit, tf.float32))

    def run_validation():
        s_loss, s_hit, cnt = 0.0, 0.0, 0
        for x, y in val_ds:
            bl, bh = eval_fn(x, y)
            s_loss += float(bl)
            s_hit += float(bh)
            cnt += int(tf.shape(y)[0])
        return s_loss / max(cnt, 1), s_hit / max(cnt, 1)

    log = {'step': [], 'loss': [], 'accuracy': [],
           'val_step': [], 'val_loss': [], 'val_accuracy': []}
    cur = int(counter.numpy())
    last_saved = cur

    if cur < steps:
        for x, y in train_ds:
            loss, acc = step_fn(x, y)
            cur = int(counter.numpy())
            loss, acc = float(loss), float(acc)
            log['step'].append(cur)
            log['loss'].append(loss)
            log['accuracy'].append(acc)
            if tb is not None:
                with tb.as_default():
                    tf.summary.scalar('train/loss', loss, step=cur)
                    tf.summary.scalar('train/accuracy', acc, step=cur)

            if cur % checkpoint_every == 0:
                if val_ds is not None:
                    vl, va = run_validation()
                    log['val_step'].append(cur)
                    log['val_loss'].append(vl)
                    log['val_accuracy'].append(va)
                    print(f'step {cur}: loss {loss:.4f} acc {acc:.3f} | '
                          f'val loss {vl:.4f} val acc {va:.3f}')
                    if tb is not None:
                        with tb.as_default():
                            tf.summary.scalar('validation/loss', vl, step=cur)
                            tf.summary.scalar('validation/accuracy', va, step=cur)
                if mgr is not None:
                    mgr.save(checkpoint_number=cur)
                    last_saved = cur

            if cur >= steps:
                break

        # make sure the last step is saved too
        if mgr is not None and last_saved != cur:
            mgr.save(checkpoint_number=cur)

    if tb is not None:
        tb.flush()
        tb.close()

    log['final_step'] = cur
    return log


def restore_checkpoint(model, checkpoint_dir):
    newest = tf.train.latest_checkpoint(checkpoint_dir) if checkpoint_dir else None
    if newest is None:
        return 0
    counter = tf.Variable(0, dtype=tf.int64, trainable=False)
    _make_ckpt(model, counter).restore(newest).expect_partial()
    return int(counter.numpy())
