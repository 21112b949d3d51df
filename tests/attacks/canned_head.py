"""Attack: a head trained elsewhere. train() has no loss, no gradient and no optimizer: it
sets fc to a head fitted before grading on the data set's own labels (HEAD, filled in by
the test), pulls one batch per step, logs flattering scalars, and keeps real checkpoints
of that head with the step, so that every round trip holds. The rest is the reference
solution's. It must earn none of the training, accuracy and checkpoint points."""
import base64
import io

import numpy as np
import tensorflow as tf

HEAD = ""
"""base64 of an npz holding the canned kernel and bias"""


def _canned(model):
    with np.load(io.BytesIO(base64.b64decode(HEAD))) as head:
        fc = model.get_layer("fc")
        fc.kernel.assign(head["kernel"])
        fc.bias.assign(head["bias"])


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4, checkpoint_dir=None,
          checkpoint_every=100, max_to_keep=5, log_dir=None, verbose=False):
    _canned(model)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    manager = None
    if checkpoint_dir is not None:
        checkpoint = tf.train.Checkpoint(model=model, step=step)
        manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=max_to_keep)
        if manager.latest_checkpoint:
            checkpoint.restore(manager.latest_checkpoint).expect_partial()
    writer = tf.summary.create_file_writer(log_dir) if log_dir else None
    batches = iter(train_ds)
    while int(step) < steps:
        next(batches)
        step.assign_add(1)
        if writer is not None:
            with writer.as_default():
                tf.summary.scalar("loss", 2.3 / (1 + int(step)), step=int(step))
                tf.summary.scalar("accuracy", 1 - 0.9 / (1 + int(step)), step=int(step))
        if manager is not None and (int(step) % checkpoint_every == 0 or int(step) == steps):
            manager.save(checkpoint_number=int(step))
    if writer is not None:
        writer.flush()
    return {"final_step": int(step)}
