"""Transfer learning with VGG16 on CIFAR-10 (conv blocks 1-3 frozen, one dense layer)."""
import os
import pickle

import numpy as np
import tensorflow as tf
import keras


CIFAR_DIR = "cifar-10-batches-py"
IMAGENET_MEAN = tf.constant([123.68, 116.779, 103.939], dtype=tf.float32)  # RGB
LAYER_TABLE = [
    ("conv1_1", 64), ("conv1_2", 64),
    ("conv2_1", 128), ("conv2_2", 128),
    ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256),
]
POOL_NAMES = {"conv1_2": "pool1", "conv2_2": "pool2", "conv3_3": "pool3"}
sce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def restore_checkpoint(model, checkpoint_dir):
    ckpt_file = tf.train.latest_checkpoint(checkpoint_dir)
    if ckpt_file is None:
        return 0
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    ckpt = tf.train.Checkpoint(model=model, step=step)
    ckpt.restore(ckpt_file).expect_partial()
    return int(step.numpy())


def batch_accuracy(logits, labels):
    preds = tf.argmax(logits, axis=-1)
    same = tf.equal(preds, tf.cast(labels, preds.dtype))
    return tf.reduce_mean(tf.cast(same, tf.float32))


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    options = tf.data.Options()
    options.autotune.enabled = False
    pipeline = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        pipeline = pipeline.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    pipeline = pipeline.batch(batch_size)
    if repeat:
        pipeline = pipeline.repeat()
    return pipeline.prefetch(2).with_options(options)


def preprocess(images):
    mean = tf.reshape(IMAGENET_MEAN, [1, 1, 1, 3])
    return tf.cast(images, tf.float32) - mean


def build_model(weights, num_classes=10):
    model = VGGTransfer(num_classes=num_classes, name="vgg16_transfer")
    dummy = tf.zeros([1, 32, 32, 3], dtype=tf.uint8)
    model(dummy)  # creates the variables
    for layer_name, _ in LAYER_TABLE:
        kernel = np.asarray(weights[layer_name + "_W"])
        bias = np.asarray(weights[layer_name + "_b"])
        model.get_layer(layer_name).set_weights([kernel, bias])
    return model


class VGGTransfer(keras.Model):
    def __init__(self, num_classes=10, **kwargs):
        super().__init__(**kwargs)
        self.layer_order = []
        setattr(self, "preprocess",
                keras.layers.Lambda(preprocess, output_shape=(32, 32, 3), name="preprocess"))
        self.layer_order.append("preprocess")
        for conv_name, n_filters in LAYER_TABLE:
            conv = keras.layers.Conv2D(n_filters, 3, strides=1, padding="same",
                                       activation="relu", name=conv_name)
            conv.trainable = False
            setattr(self, conv_name, conv)
            self.layer_order.append(conv_name)
            if conv_name in POOL_NAMES:
                pool_name = POOL_NAMES[conv_name]
                setattr(self, pool_name,
                        keras.layers.MaxPooling2D(pool_size=2, strides=2, name=pool_name))
                self.layer_order.append(pool_name)
        self.flatten = keras.layers.Flatten(name="flatten")
        self.fc = keras.layers.Dense(num_classes, kernel_initializer="zeros", name="fc")
        self.layer_order.extend(["flatten", "fc"])

    def call(self, images, training=False):
        out = images
        for name in self.layer_order:
            out = getattr(self, name)(out)
        return out


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4, checkpoint_dir=None,
          checkpoint_every=100, max_to_keep=5, log_dir=None, verbose=False):
    adam = keras.optimizers.Adam(learning_rate=learning_rate)
    adam.build(model.trainable_variables)
    step_counter = tf.Variable(0, dtype=tf.int64, trainable=False)

    manager = None
    if checkpoint_dir is not None:
        checkpoint = tf.train.Checkpoint(model=model, optimizer=adam, step=step_counter)
        manager = tf.train.CheckpointManager(checkpoint, checkpoint_dir, max_to_keep=max_to_keep)
        if manager.latest_checkpoint:
            checkpoint.restore(manager.latest_checkpoint)
            if verbose:
                print("resuming from", manager.latest_checkpoint)

    writers = [None, None]
    if log_dir is not None:
        writers = [tf.summary.create_file_writer(os.path.join(log_dir, sub))
                   for sub in ("train", "validation")]
    train_writer, val_writer = writers

    @tf.function(reduce_retracing=True)
    def train_step(x, y):
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = sce(y, logits)
        variables = model.trainable_variables
        adam.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss, batch_accuracy(logits, y)

    hist = {"step": [], "loss": [], "accuracy": [], "val_step": [], "val_loss": [],
            "val_accuracy": []}
    unused_start = int(step_counter.numpy())
    data_iter = iter(train_ds)
    while int(step_counter.numpy()) < steps:
        x, y = next(data_iter)
        loss, acc = train_step(x, y)
        step_counter.assign_add(1)
        s = int(step_counter.numpy())
        hist["step"].append(s)
        hist["loss"].append(float(loss))
        hist["accuracy"].append(float(acc))
        if train_writer is not None:
            with train_writer.as_default():
                tf.summary.scalar("loss", loss, step=s)
                tf.summary.scalar("accuracy", acc, step=s)
        if verbose and s % 10 == 0:
            print("step %d: loss %.4f acc %.3f" % (s, float(loss), float(acc)))
        if s % checkpoint_every == 0 or s == steps:
            if val_ds is not None:
                loss_sum = 0.0
                correct_sum = 0.0
                seen = 0
                for vx, vy in val_ds:
                    v_logits = model(vx, training=False)
                    n = int(vy.shape[0])
                    loss_sum += float(sce(vy, v_logits)) * n
                    correct_sum += float(batch_accuracy(v_logits, vy)) * n
                    seen += n
                denom = max(seen, 1)
                v_loss = loss_sum / denom
                v_acc = correct_sum / denom
                hist["val_step"].append(s)
                hist["val_loss"].append(v_loss)
                hist["val_accuracy"].append(v_acc)
                if val_writer is not None:
                    with val_writer.as_default():
                        tf.summary.scalar("loss", v_loss, step=s)
                        tf.summary.scalar("accuracy", v_acc, step=s)
                if verbose:
                    print("  validation @ %d: loss %.4f acc %.3f" % (s, v_loss, v_acc))
            if manager is not None:
                manager.save(checkpoint_number=s)

    for writer in (train_writer, val_writer):
        if writer is not None:
            writer.flush()
    hist["final_step"] = int(step_counter.numpy())
    return hist


def _load_pickle_batch(path):
    with open(path, "rb") as f:
        d = pickle.load(f, encoding="bytes")
    x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return x, np.asarray(d[b"labels"], dtype=np.int64)


def load_cifar(folder=CIFAR_DIR):
    parts = [_load_pickle_batch(os.path.join(folder, "data_batch_%d" % i)) for i in range(1, 6)]
    test_x, test_y = _load_pickle_batch(os.path.join(folder, "test_batch"))
    return (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
            test_x, test_y)


def _show(img, label):
    import matplotlib.pyplot as plt
    plt.imshow(img)
    plt.title(str(label))
    plt.show()


if __name__ == "__main__":
    vgg = dict(np.load("vgg16-conv-weights.npz"))
    images, labels, test_images, test_labels = load_cifar()
    print(images.shape, images.dtype, labels[:10], test_images.shape)
    net = build_model(vgg)
    net.summary()
    history = train(net, make_dataset(images, labels, batch_size=64), steps=40,
                    checkpoint_dir="checkpoints", log_dir="logs")
    print(history["final_step"], history["accuracy"][-5:])
    print(restore_checkpoint(build_model(vgg), "checkpoints"))
