#!/usr/bin/env python
# coding: utf-8

# # Exercise: transfer learning with VGG16 on CIFAR-10
#
# VGG16 conv blocks 1-3 (frozen) + one dense layer on top.

# In[1]:


import os
import pickle
import numpy as np
import matplotlib.pyplot as plt


# In[2]:


import tensorflow as tf
import keras
# print(tf.__version__, keras.__version__)


# In[3]:


# get_ipython().run_line_magic('load_ext', 'tensorboard')


# In[4]:


# vgg = dict(np.load("vgg16-conv-weights.npz"))
# for key in sorted(vgg):
#     print(key, vgg[key].shape)


# ## constants + helper functions

# In[5]:


# vgg16 layers that are reused, a max pool follows the last conv of every block
CONVS = [
    ("conv1_1", 64), ("conv1_2", 64),
    ("conv2_1", 128), ("conv2_2", 128),
    ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256),
]
POOLS = {"conv1_2": "pool1", "conv2_2": "pool2", "conv3_3": "pool3"}

RGB_MEAN = tf.constant([123.68, 116.779, 103.939], dtype=tf.float32)

xent = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def accuracy_of(logits, labels):
    predicted = tf.argmax(logits, axis=-1)
    return tf.reduce_mean(tf.cast(tf.equal(predicted, tf.cast(labels, predicted.dtype)), tf.float32))


# ## loading the data
# (cifar-10 python version, own loader)

# In[6]:


def read_batch(path):
    with open(path, "rb") as fh:
        raw = pickle.load(fh, encoding="bytes")
    imgs = np.asarray(raw[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labs = np.asarray(raw[b"labels"], dtype=np.int64)
    return imgs, labs


def read_cifar(folder="cifar-10-batches-py"):
    all_x, all_y = [], []
    for k in range(1, 6):
        bx, by = read_batch(os.path.join(folder, f"data_batch_{k}"))
        all_x.append(bx)
        all_y.append(by)
    tx, ty = read_batch(os.path.join(folder, "test_batch"))
    return np.concatenate(all_x), np.concatenate(all_y), tx, ty


# In[7]:


# images, labels, test_images, test_labels = read_cifar()
# print(images.shape, images.dtype, labels[:10], test_images.shape)
# plt.imshow(images[0]); plt.title(str(labels[0])); plt.show()


# ## 1. preprocess

# In[8]:


def preprocess(images):
    out = tf.cast(images, tf.float32)   # still 0..255
    return out - tf.reshape(RGB_MEAN, [1, 1, 1, 3])


# In[9]:


# t = preprocess(images[:4])
# print(t.dtype, t.shape, float(tf.reduce_min(t)), float(tf.reduce_max(t)))


# ## 2. model

# In[10]:


class FrozenVGG(keras.Model):
    def __init__(self, num_classes=10, **kwargs):
        super().__init__(**kwargs)
        self.sequence = []
        setattr(self, "preprocess",
                keras.layers.Lambda(preprocess, output_shape=(32, 32, 3), name="preprocess"))
        self.sequence.append("preprocess")
        for lname, nf in CONVS:
            c = keras.layers.Conv2D(nf, 3, strides=1, padding="same", activation="relu", name=lname)
            c.trainable = False
            setattr(self, lname, c)
            self.sequence.append(lname)
            if lname in POOLS:
                pname = POOLS[lname]
                setattr(self, pname, keras.layers.MaxPooling2D(pool_size=2, strides=2, name=pname))
                self.sequence.append(pname)
        self.flatten = keras.layers.Flatten(name="flatten")
        # zero init -> small logits at the beginning
        self.fc = keras.layers.Dense(num_classes, kernel_initializer="zeros", name="fc")
        self.sequence += ["flatten", "fc"]

    def call(self, images, training=False):
        h = images
        for lname in self.sequence:
            h = getattr(self, lname)(h)
        return h


# In[11]:


def build_model(weights, num_classes=10):
    net = FrozenVGG(num_classes=num_classes, name="vgg16_transfer")
    net(tf.zeros([1, 32, 32, 3], dtype=tf.uint8))  # build all layers
    for lname, _ in CONVS:
        net.get_layer(lname).set_weights([np.asarray(weights[lname + "_W"]),
                                          np.asarray(weights[lname + "_b"])])
    return net


# In[12]:


# model = build_model(vgg)
# model.summary()
# print([l.name for l in model.layers])
# print(model(images[:2]).shape)


# ## 3. tf.data

# In[13]:


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    data = tf.data.Dataset.from_tensor_slices((images, labels))
    if shuffle:
        data = data.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    data = data.batch(batch_size)
    if repeat:
        data = data.repeat()
    data = data.prefetch(2)
    o = tf.data.Options()
    o.autotune.enabled = False
    return data.with_options(o)


# ## 4. training + checkpoints

# In[14]:


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4, checkpoint_dir=None,
          checkpoint_every=100, max_to_keep=5, log_dir=None, verbose=False):
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    optimizer.build(model.trainable_variables)
    gstep = tf.Variable(0, dtype=tf.int64, trainable=False)

    mgr = None
    if checkpoint_dir is not None:
        ck = tf.train.Checkpoint(model=model, optimizer=optimizer, step=gstep)
        mgr = tf.train.CheckpointManager(ck, checkpoint_dir, max_to_keep=max_to_keep)
        if mgr.latest_checkpoint:
            ck.restore(mgr.latest_checkpoint)
            if verbose:
                print("resuming from", mgr.latest_checkpoint)

    tw = vw = None
    if log_dir is not None:
        tw = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
        vw = tf.summary.create_file_writer(os.path.join(log_dir, "validation"))

    @tf.function(reduce_retracing=True)
    def update(bx, by):
        with tf.GradientTape() as tape:
            logits = model(bx, training=True)
            l = xent(by, logits)
        g = tape.gradient(l, model.trainable_variables)
        optimizer.apply_gradients(zip(g, model.trainable_variables))
        return l, accuracy_of(logits, by)

    out = {"step": [], "loss": [], "accuracy": [], "val_step": [], "val_loss": [], "val_accuracy": []}
    batches = iter(train_ds)
    while int(gstep.numpy()) < steps:
        bx, by = next(batches)
        l, a = update(bx, by)
        gstep.assign_add(1)
        cur = int(gstep.numpy())
        out["step"].append(cur)
        out["loss"].append(float(l))
        out["accuracy"].append(float(a))
        if tw is not None:
            with tw.as_default():
                tf.summary.scalar("loss", l, step=cur)
                tf.summary.scalar("accuracy", a, step=cur)
        if verbose and cur % 10 == 0:
            print(f"step {cur}: loss {float(l):.4f} acc {float(a):.3f}")
        if cur % checkpoint_every == 0 or cur == steps:
            if val_ds is not None:
                sum_l = sum_c = 0.0
                cnt = 0
                for vx, vy in val_ds:
                    vlog = model(vx, training=False)
                    bs = int(vy.shape[0])
                    sum_l += float(xent(vy, vlog)) * bs
                    sum_c += float(accuracy_of(vlog, vy)) * bs
                    cnt += bs
                v_loss, v_acc = sum_l / max(cnt, 1), sum_c / max(cnt, 1)
                out["val_step"].append(cur)
                out["val_loss"].append(v_loss)
                out["val_accuracy"].append(v_acc)
                if vw is not None:
                    with vw.as_default():
                        tf.summary.scalar("loss", v_loss, step=cur)
                        tf.summary.scalar("accuracy", v_acc, step=cur)
                if verbose:
                    print(f"  validation @ {cur}: loss {v_loss:.4f} acc {v_acc:.3f}")
            if mgr is not None:
                mgr.save(checkpoint_number=cur)

    for w in (tw, vw):
        if w is not None:
            w.flush()
    out["final_step"] = int(gstep.numpy())
    return out


# In[15]:


# model = build_model(vgg)
# train_ds = make_dataset(images, labels, batch_size=64)
# history = train(model, train_ds, steps=40, checkpoint_dir="checkpoints", log_dir="logs")
# print(history["final_step"], history["accuracy"][:5], history["accuracy"][-5:])


# ## 5. restoring

# In[16]:


def restore_checkpoint(model, checkpoint_dir):
    newest = tf.train.latest_checkpoint(checkpoint_dir)
    if newest is None:
        return 0
    cnt = tf.Variable(0, dtype=tf.int64, trainable=False)
    tf.train.Checkpoint(model=model, step=cnt).restore(newest).expect_partial()
    return int(cnt.numpy())


# In[17]:


# print(restore_checkpoint(build_model(vgg), "checkpoints"))
# print(restore_checkpoint(build_model(vgg), "nothing_here"))
