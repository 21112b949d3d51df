# VGG16 (conv blocks 1..3, frozen) + linear classifier on top, functional API, AdamW.
# The optimizer's iterations counter doubles as the global step (it is saved in the checkpoint).

import os

import numpy as np
import tensorflow as tf
import keras

PIXEL_MEAN = np.array([123.68, 116.779, 103.939], dtype=np.float32)

# name, filters, in-channels ; None = max pooling 2x2
LAYERS_CFG = [
    ('conv1_1', 64, 3), ('conv1_2', 64, 64), None,
    ('conv2_1', 128, 64), ('conv2_2', 128, 128), None,
    ('conv3_1', 256, 128), ('conv3_2', 256, 256), ('conv3_3', 256, 256), None,
]


def preprocess(images):
    t = tf.convert_to_tensor(images)
    return tf.cast(t, tf.float32) - PIXEL_MEAN


def _make_conv(layer_name, n_filters, channels_in, weights):
    c = keras.layers.Conv2D(n_filters, kernel_size=3, strides=1, padding='same',
                            activation='relu', use_bias=True, name=layer_name)
    c.build((None, None, None, channels_in))
    c.set_weights([np.asarray(weights[layer_name + '_W'], np.float32),
                   np.asarray(weights[layer_name + '_b'], np.float32)])
    c.trainable = False   # frozen!
    return c


def build_model(weights, num_classes=10):
    inp = keras.Input(shape=(32, 32, 3), dtype='uint8', name='image')
    h = keras.layers.Lambda(preprocess, name='preprocess')(inp)

    n_pools = 0
    for cfg in LAYERS_CFG:
        if cfg is None:
            n_pools += 1
            h = keras.layers.MaxPooling2D(pool_size=2, strides=2, name=f'pool{n_pools}')(h)
        else:
            h = _make_conv(*cfg, weights)(h)

    h = keras.layers.Flatten(name='flatten')(h)
    out = keras.layers.Dense(num_classes, activation=None,
                             kernel_initializer='he_normal', name='fc')(h)
    return keras.Model(inputs=inp, outputs=out, name='vgg_transfer')


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    d = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        d = d.shuffle(buffer_size=len(labels), seed=seed, reshuffle_each_iteration=True)
    d = d.batch(batch_size)
    if repeat:
        d = d.repeat()
    return d.prefetch(buffer_size=tf.data.AUTOTUNE)


def _xent(y, logits):
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(y, tf.int64), logits=logits)


def _num_right(y, logits):
    pred = tf.argmax(logits, axis=-1)
    return tf.reduce_sum(tf.cast(tf.equal(pred, tf.cast(y, tf.int64)), tf.float32))


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4,
          checkpoint_dir=None, checkpoint_every=100, max_to_keep=5, log_dir=None):
    opt = keras.optimizers.AdamW(learning_rate=learning_rate)
    opt.build(model.trainable_variables)

    ckpt = tf.train.Checkpoint(model=model, optimizer=opt)
    mgr = None
    if checkpoint_dir:
        mgr = tf.train.CheckpointManager(ckpt, checkpoint_dir, max_to_keep=max_to_keep)
        if mgr.latest_checkpoint is not None:
            ckpt.restore(mgr.latest_checkpoint)
    first_step = int(opt.iterations.numpy())

    tw = vw = None
    if log_dir:
        tw = tf.summary.create_file_writer(os.path.join(log_dir, 'train'))
        if val_ds is not None:
            vw = tf.summary.create_file_writer(os.path.join(log_dir, 'validation'))

    @tf.function
    def fit_batch(bx, by):
        with tf.GradientTape() as tape:
            logits = model(bx, training=True)
            loss = tf.reduce_mean(_xent(by, logits))
        tvars = model.trainable_variables
        opt.apply_gradients(zip(tape.gradient(loss, tvars), tvars))
        acc = _num_right(by, logits) / tf.cast(tf.shape(logits)[0], tf.float32)
        return loss, acc

    @tf.function
    def eval_batch(bx, by):
        logits = model(bx, training=False)
        return tf.reduce_sum(_xent(by, logits)), _num_right(by, logits), tf.shape(logits)[0]

    def validation_pass():
        tot_loss, tot_right, tot_n = 0.0, 0.0, 0
        for bx, by in val_ds:
            l, r, n = eval_batch(bx, by)
            tot_loss += l.numpy()
            tot_right += r.numpy()
            tot_n += int(n)
        return tot_loss / tot_n, tot_right / tot_n

    hist = {'loss': [], 'accuracy': [], 'val_loss': [], 'val_accuracy': []}
    it = iter(train_ds)
    cur = first_step
    while cur < steps:
        bx, by = next(it)
        loss, acc = fit_batch(bx, by)
        cur = int(opt.iterations.numpy())
        hist['loss'].append(float(loss))
        hist['accuracy'].append(float(acc))
        if tw is not None:
            with tw.as_default(step=cur):
                tf.summary.scalar('loss', loss)
                tf.summary.scalar('accuracy', acc)

        if cur % checkpoint_every == 0 and val_ds is not None:
            vloss, vacc = validation_pass()
            hist['val_loss'].append((cur, float(vloss)))
            hist['val_accuracy'].append((cur, float(vacc)))
            print(f'[{cur}/{steps}] train loss={float(loss):.4f} '
                  f'val loss={vloss:.4f} val acc={vacc:.3f}')
            if vw is not None:
                with vw.as_default(step=cur):
                    tf.summary.scalar('loss', vloss)
                    tf.summary.scalar('accuracy', vacc)
        if mgr is not None and (cur % checkpoint_every == 0 or cur == steps):
            mgr.save(checkpoint_number=cur)

    for w in (tw, vw):
        if w is not None:
            w.flush()

    return {'final_step': cur, 'start_step': first_step, **hist}


def restore_checkpoint(model, checkpoint_dir):
    ckpt_path = tf.train.latest_checkpoint(checkpoint_dir)
    if ckpt_path is None:
        return 0
    dummy_opt = keras.optimizers.AdamW()
    tf.train.Checkpoint(model=model, optimizer=dummy_opt).restore(ckpt_path).expect_partial()
    return int(dummy_opt.iterations.numpy())
