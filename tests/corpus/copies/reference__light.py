# Assignment 3 - transfer learning (VGG16 frozen + dense head) on CIFAR-10
# preprocess / build_model / make_dataset / train / restore_checkpoint

from __future__ import annotations

import numpy as np
import tensorflow as tf
import keras

MEAN_PIXEL = [123.68, 116.779, 103.939]   # imagenet mean colour (R, G, B)

# block id, how many convs, filters
CONV_LAYOUT = [(1, 2, 64), (2, 2, 128), (3, 3, 256)]


def preprocess(images):
    # uint8 -> float in [0,1] -> back to 0..255, then remove the mean colour
    imgs = tf.image.convert_image_dtype(images, tf.float32) * 255.0
    mean_rgb = tf.constant(MEAN_PIXEL, dtype=tf.float32, shape=[1, 1, 1, 3])
    return imgs - mean_rgb


def build_model(weights, num_classes=10):
    inp = keras.Input(shape=(32, 32, 3), dtype='uint8', name='images')
    h = keras.layers.Lambda(preprocess, output_shape=(32, 32, 3), name='preprocess')(inp)

    for blk, count, filters in CONV_LAYOUT:
        for j in range(1, count + 1):
            lname = f'conv{blk}_{j}'
            layer = keras.layers.Conv2D(filters, 3, strides=1, padding='same',
                                        activation='relu', trainable=False, name=lname)
            h = layer(h)
            layer.set_weights([weights[f'{lname}_W'], weights[f'{lname}_b']])
        h = keras.layers.MaxPooling2D(pool_size=2, strides=2, name=f'pool{blk}')(h)

    h = keras.layers.Flatten(name='flatten')(h)
    # start the classifier at zero so the first logits are not huge
    out = keras.layers.Dense(num_classes, kernel_initializer='zeros', name='fc')(h)
    return keras.Model(inp, out, name='vgg16_transfer')


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    data = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        data = data.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size)
    if repeat:
        data = data.repeat()
    # turn autotune off, the handout says it is slow on few cores
    opts = tf.data.Options()
    opts.autotune.enabled = False
    return data.prefetch(tf.data.AUTOTUNE).with_options(opts)


def _metrics(logits, y):
    y = tf.cast(y, tf.int64)
    xent = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
    acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, axis=1), y), tf.float32))
    return xent, acc


def run_eval(model, dataset):
    """average loss / accuracy over the whole (finite) dataset"""
    sum_loss, sum_correct, seen = 0.0, 0.0, 0
    for bx, by in dataset:
        out = model(bx, training=False)
        l, a = _metrics(out, by)
        bs = int(tf.shape(by)[0])
        sum_loss += float(l) * bs
        sum_correct += float(a) * bs
        seen += bs
    return sum_loss / max(seen, 1), sum_correct / max(seen, 1)


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4, checkpoint_dir=None,
          checkpoint_every=100, max_to_keep=5, log_dir=None, verbose=False):
    opt = keras.optimizers.Adam(learning_rate=learning_rate)
    # build the slots now, then restoring fills them in directly
    opt.build(model.trainable_variables)
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
    mgr = None
    if checkpoint_dir is not None:
        ckpt = tf.train.Checkpoint(model=model, optimizer=opt, step=global_step)
        mgr = tf.train.CheckpointManager(ckpt, checkpoint_dir, max_to_keep=max_to_keep)
        if mgr.latest_checkpoint:
            ckpt.restore(mgr.latest_checkpoint).assert_existing_objects_matched()

    summary = {}
    if log_dir is not None:
        summary = {name: tf.summary.create_file_writer(f'{log_dir}/{name}')
                   for name in ('train', 'validation')}

    @tf.function(reduce_retracing=True)
    def one_step(bx, by):
        with tf.GradientTape() as tape:
            out = model(bx, training=True)
            l, a = _metrics(out, by)
        grads = tape.gradient(l, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        return l, a

    log = {'step': [], 'loss': [], 'accuracy': [],
           'val_step': [], 'val_loss': [], 'val_accuracy': []}
    first = int(global_step.numpy())
    bar = (keras.utils.Progbar(steps, interval=0.5, stateful_metrics=['loss', 'accuracy'])
           if verbose and first < steps else None)
    it = iter(train_ds)
    while int(global_step.numpy()) < steps:
        bx, by = next(it)
        l, a = one_step(bx, by)
        global_step.assign_add(1)
        s = int(global_step.numpy())
        log['step'].append(s)
        log['loss'].append(float(l))
        log['accuracy'].append(float(a))
        if 'train' in summary:
            with summary['train'].as_default():
                tf.summary.scalar('loss', l, step=s)
                tf.summary.scalar('accuracy', a, step=s)
        if bar is not None:
            bar.update(s, [('loss', float(l)), ('accuracy', float(a))])
        if s % checkpoint_every == 0 or s == steps:
            if val_ds is not None:
                vl, va = run_eval(model, val_ds)
                log['val_step'].append(s)
                log['val_loss'].append(vl)
                log['val_accuracy'].append(va)
                if 'validation' in summary:
                    with summary['validation'].as_default():
                        tf.summary.scalar('loss', vl, step=s)
                        tf.summary.scalar('accuracy', va, step=s)
                if verbose:
                    print(f'\nstep {s}: validation loss {vl:.4f}, accuracy {va:.4f}', flush=True)
            if mgr is not None:
                mgr.save(checkpoint_number=s)
    for w in summary.values():
        w.flush()
    log['final_step'] = int(global_step.numpy())
    return log


def restore_checkpoint(model, checkpoint_dir):
    # returns the step of the newest checkpoint, 0 if there is nothing to load
    newest = tf.train.latest_checkpoint(checkpoint_dir)
    if newest is None:
        return 0
    counter = tf.Variable(0, dtype=tf.int64, trainable=False, name='step')
    # optimizer is not needed here -> expect_partial
    tf_ckpt = tf.train.Checkpoint(model=model, step=counter)
    tf_ckpt.restore(newest).expect_partial()
    return int(counter.numpy())
