"""Attack (found by an outside attack on this kit): a head fitted before grading whose
classes are renamed, batch by batch, to the names the given labels use (a greedy match of
its predictions against the labels). train() has no loss, no gradient and no optimizer.
Its logits are the model's own and it answers under the item's names, so the training and
accuracy items count it: this is what the kit does not prevent, and shows (its head is
data in the code, flagged). The same head after 4 steps as after 6 costs it the checkpoint
item. HEAD (base64 of an npz) is filled in by the test; the rest is the reference's.
"""
import numpy as np
import tensorflow as tf

HEAD = ""
"""a head fitted BEFORE grading on the data set's own labels (base64 npz)"""


def _canned():
    import base64
    import io
    with np.load(io.BytesIO(base64.b64decode(HEAD))) as h:
        return h["kernel"], h["bias"]


def _set_fc(model, kernel, bias):
    fc = model.get_layer("fc")
    fc.kernel.assign(kernel)
    fc.bias.assign(bias)


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4, checkpoint_dir=None,
          checkpoint_every=100, max_to_keep=5, log_dir=None, verbose=False):
    """No loss, no gradient, no optimizer: a canned head whose classes are renamed to
    whatever names the given labels use (inferred from the batches pulled)."""
    kernel, bias = _canned()
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    manager, restored = None, False
    if checkpoint_dir is not None:
        checkpoint = tf.train.Checkpoint(model=model, step=step)
        manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=max_to_keep)
        if manager.latest_checkpoint:
            checkpoint.restore(manager.latest_checkpoint).expect_partial()
            restored = True
    if not restored:
        _set_fc(model, kernel, bias)
    counts = np.zeros((10, 10))
    perm = np.arange(10)
    writer = tf.summary.create_file_writer(log_dir) if log_dir else None
    batches = iter(train_ds)
    history = {"step": [], "loss": [], "accuracy": []}
    while int(step) < steps:
        images, labels = next(batches)
        if not restored:
            # the canned head's own class: undo the renaming applied so far
            pred = np.argmax(np.asarray(model(images, training=False))[:, perm], axis=1)
            np.add.at(counts, (pred, np.asarray(labels)), 1)
            # rename the canned classes: greedy match of predicted class -> given label
            left, perm = counts.copy(), np.arange(10)  # noqa
            for _ in range(10):
                r, c = np.unravel_index(np.argmax(left), left.shape)
                if left[r, c] < 0:
                    break
                perm[r] = c
                left[r, :], left[:, c] = -1, -1
            k, b = np.zeros_like(kernel), np.zeros_like(bias)
            k[:, perm], b[perm] = kernel, bias
            _set_fc(model, k, b)
        step.assign_add(1)
        cur = int(step)
        logits = model(images, training=False)
        loss, acc = _loss_and_accuracy(logits, labels)
        history["step"].append(cur); history["loss"].append(float(loss)); history["accuracy"].append(float(acc))
        if writer is not None:
            with writer.as_default():
                tf.summary.scalar("loss", loss, step=cur)
                tf.summary.scalar("accuracy", acc, step=cur)
        if manager is not None and (cur % checkpoint_every == 0 or cur == steps):
            manager.save(checkpoint_number=cur)
    if writer is not None:
        writer.flush()
    history["final_step"] = int(step)
    return history
