"""The handout text of the student notebook and the experiment cells that follow the
graded code. Markdown goes before the code cell of the function it is keyed by."""

TITLE = "# Transfer learning with a frozen VGG16, checkpoints and tf.data"

INTRO = """\
A network trained on a large dataset has learned filters that are useful well beyond the
task it was trained for. **Transfer learning** reuses those parameters as the starting
point of a network for a new task, which pays off most when the new task has little data.
Keeping the transferred parameters fixed and training only a new head on top is the
simplest form; letting them move as well is called *fine-tuning*.

In this exercise you

1. build the first three convolutional blocks of **VGG16** (conv1_1 up to pool3), load
   their ImageNet-trained weights and freeze them, then train one dense layer on top to
   classify **CIFAR-10**;
2. save **checkpoints** while training, restore them, and resume an interrupted run
   exactly where it stopped;
3. (extra) feed the training with a **tf.data** input pipeline.

Write your code only where it says `# YOUR CODE HERE`, and keep the function names and
signatures: the grader imports this notebook's graded cells and calls them. Check your work
at any time with `grader check transfer_learning.ipynb`.

### The weights file

`vgg16-conv-weights.npz` maps names to arrays: `conv1_1_W` is conv1_1's kernel with shape
`[3, 3, 3, 64]` (height, width, input channels, output channels) and `conv1_1_b` its bias
`[64]`, and so on for every convolution up to `conv5_3`. Look at the file before you start:

```python
weights = np.load("vgg16-conv-weights.npz")
for key in weights.files:
    print(key, weights[key].shape)
```

The layers you build, in this order and with these names (`model.get_layer(name)` must
find each one; functional, `keras.Sequential` and subclassed models are all fine):

LAYER_TABLE

conv4_1 and everything after pool3 in the file (conv4, conv5, and fc6-fc8 in the full
VGG16 file) is not used here.
"""


def intro() -> str:
    """INTRO with the network's layer table in it (network.py)."""
    from .network import layer_table_markdown

    return INTRO.replace("LAYER_TABLE", layer_table_markdown())


BEFORE = {
    "preprocess": """\
## 1. Preprocessing

VGG16 was trained on images whose pixels are on the 0..255 scale with the mean colour of
ImageNet's training set subtracted: `[123.68, 116.779, 103.939]` for red, green and blue.
Our images are uint8 RGB. `tf.image.convert_image_dtype` turns them into floats in 0..1,
so scale them back up before subtracting the mean, and mind the channel order: the mean
is given in RGB order, like our images.
""",
    "build_model": """\
## 2. The frozen VGG16 front end and a new head

Build the layers conv1_1 .. pool3 with the **exact names** of the table above: every
convolution is 3x3 with stride 1, `padding="same"` and a ReLU; every pool is a 2x2 max pool
with stride 2. Initialise each convolution from the weights file and make it
**non-trainable**: these filters were learned from over a million images and we want to
keep them as they are, both because CIFAR-10's 50,000 small images could not teach them
anything better and because freezing them makes training cheap (no gradients below the new
layer). Then flatten pool3's output and add a trainable dense layer named `fc` with one
output per class: its 4096 x 10 weights and 10 biases are all that trains.

A word of caution: VGG16 saw 224 x 224 images, CIFAR-10's are 32 x 32. An object fills a
few dozen pixels instead of a couple of hundred, so the filters meet structures at a scale
they were not tuned to. Expect transfer to help less than it would on images of the size
the network was trained on; in practice one would upsample the images or pick a network
trained at a closer scale.
""",
    "make_dataset": """\
## 3. The input pipeline with tf.data (extra task)

Feeding numpy batches from a Python loop leaves the model waiting while the next batch is
sliced. `tf.data` builds the pipeline as part of the program: `from_tensor_slices` cuts
the arrays into examples, `shuffle` draws a random order (a new one every epoch),
`batch` groups examples, `repeat` starts over when an epoch ends so training can run for
any number of steps, and `prefetch` prepares the next batch while the current one trains.
The order of these steps matters: think about what `repeat` before `shuffle` would do to
the epoch boundaries. See the `tf.data.Dataset` API documentation.

On a laptop, mind one default. tf.data autotunes: a background thread keeps adjusting
buffer sizes and parallelism, and an iterator that is deleted -- at the end of every
`train()` call -- waits for that thread. On 2 cores we measured waits of 2 to 2.4 seconds,
which made a short training run fed by tf.data slower than one fed by a Python loop. This
pipeline has nothing to tune (no parallel `map`), so switch autotuning off:
`options = tf.data.Options()`, `options.autotune.enabled = False`, and
`ds.with_options(options)`. tf.data pays once the pipeline has real work to overlap with
training -- decoding files, or augmentation such as random crops and flips in a
`map(..., num_parallel_calls=...)` -- and on a machine with cores to spare for it.
""",
    "_loss_and_accuracy": """\
## 4. Training, checkpoints and resuming

Training minimises the softmax cross-entropy between the logits and the labels. Use a low
learning rate and batches of 64 to start with, and log the loss and the accuracy with
`tf.summary.scalar` so you can follow them in TensorBoard.

Mind the scale of what fc sees: the frozen features are tens to hundreds, thousands of
them, so a step that moves every weight by the learning rate moves the logits a lot. Adam
at the default 1e-4 learns within a few dozen steps here. At that rate plain or momentum
SGD overshoots unless you clip the gradients (`global_clipnorm`), and RMSprop's first
steps are about three times Adam's and overshoot too. A random fc start with logits in the
tens also slows the first steps; starting fc at zero avoids that (the grader's training
items start it at zero for you).

A training step under `tf.function` is traced into a graph on its first call, which takes a
few tenths of a second. When that first call also creates variables, as Adam does for its
two moment estimates per weight at its first `apply_gradients`, TensorFlow traces the
function a second time. Create them before the loop with
`optimizer.build(model.trainable_variables)`: on 2 cores the first call of the step then
took 0.21 s instead of 0.36 to 0.51 s. It matters when `train()` is called often, as the
grader does, and a restore needs the slots to exist anyway.

Long runs get interrupted. A **checkpoint** stores the values of the variables; with
`tf.train.Checkpoint` you name what to store (the model, the optimizer with its internal
state, the step counter) and `tf.train.CheckpointManager` numbers the files and keeps only
the newest few (`max_to_keep`). To restore, build the same objects first and then load the
checkpoint into them. Save when you validate, not every step: checkpoints cost disk space.

`train` must resume by itself: when `checkpoint_dir` already holds a checkpoint, restore it
and continue from its step up to `steps`, with the optimizer's state restored too, so that
an interrupted run ends where an uninterrupted one would.
""",
}

def grading_section(public_items: list) -> str:
    """What each visible item runs, from the public rubric: the handout says exactly what
    the accuracy items measure and how much time every item has."""
    from .checks import REGISTRY

    lines = ["## How your work is graded", "",
             "The grader imports your code and calls the five functions by name. From a notebook "
             "it takes the cells tagged `graded` whole; from any other cell it takes the five "
             "functions and whatever they read as globals (helpers, constants, imports), and "
             "leaves your demo runs, plots and prints alone. If one of those statements fails "
             "when the grader runs it (a data file it does not have, say), it is skipped and "
             "the report names its cell and line. Every item that trains starts the `fc` "
             "layer from zeros, so your choice of initialiser does not change a grade.", "",
             "| item | points | what is measured | time limit |", "|---|---|---|---|"]
    for item in public_items:
        if item["check"] == "manual":
            lines.append(f"| {item['id']} | {item['points']:g} | graded by a person: your answer "
                         "in section 6 (see there) | - |")
            continue
        params = item.get("params") or {}
        describe = REGISTRY[item["check"]].describe
        what = (describe(params) if describe else None) or item["title"]
        limit = item.get("time_limit")
        lines.append(f"| {item['id']} | {item['points']:g} | {what} | "
                     f"{'-' if limit is None else f'{limit:g} s'} |")
    lines += ["", "More items are graded after the due date, among them a longer training run "
              "measured the same way. Time limits are a few times what the slowest of many correct "
              "solutions needed on a 2-core laptop: a `tf.function` training step at batch 64 takes "
              "about 0.07 s there and a plain eager one two to five times as long, both fine; "
              "a step that takes seconds is not."]
    return "\n".join(lines) + "\n"


EXPERIMENTS_MD = """\
## 5. Experiments

These cells are not graded and the grader does not run them. They train your model on the
offline synthetic default (or on CIFAR-10 and the real weights, if you point them there),
plot the curves, and show that a second run resumes from the checkpoint.
"""

SCRATCH_FIGURES = {"steps": 60, "transfer": "0.89 to 0.98", "scratch": "0.43 to 0.67", "level": 150}
"""section 6 on the offline default, measured with `python benchmarks/bench_transfer_default.py
--seeds 1 2 3 4 5 --steps 300 --at 20 40 60 150` (the table in docs/instructors.md holds every figure)"""

SCRATCH_MD = """\
## 6. Transfer against training from scratch

What do the frozen filters buy? The cells below build the same network again, give every
layer new random weights and make every layer trainable: the network trained from scratch,
with nothing carried over. It trains for as many steps as your transfer model did
(`STEPS`), on the same images, and the two runs are plotted together. Every layer now has
gradients, so a step costs about twice a transfer step.

Where the frozen features come from decides what they are worth. VGG16's were learned
from ImageNet photos. The offline default's stand-in weights were never trained, but they
are not blank: conv1_1 is a bank of small filters built to see the colour directions the
default's stripes are drawn in and to be blind to red+green, the direction of the stripes
laid over them to mislead, as a trained first layer responds to some colours and not
others; conv1_2 .. conv3_3 are random. On the default, with the reference
solution and five seeds, the transfer model classified {transfer} of the test images after
{steps} steps, the network trained from scratch {scratch}. After {level} steps both pass 0.98:
ten kinds of stripes are simple enough to learn from nothing that soon, so with
`EXERCISE_STEPS=300` the two runs end level.
""".format(**SCRATCH_FIGURES)

SCRATCH_QUESTION_MD = """\
Answer the question below from what you measured here, and say which setting you ran: on
CIFAR-10 with the real VGG16 weights the comparison is the one that matters in practice, on
the offline default it is the same experiment with the stand-in weights. The plot is saved
with the notebook and shown to the person who grades your answer.
"""

EVIDENCE = "compare_scratch"
"""the manual item the comparison plot is evidence for: its answer shows the plot's image"""

SCRATCH = [
    """\
import keras


def from_scratch(model, seed=0):
    \"\"\"Every layer trainable, every weight drawn anew: kernels Glorot-uniform (Keras'
    default for Conv2D and Dense), biases zero.\"\"\"
    layers, todo = [], list(model.layers)
    while todo:  # nested models and layers too
        layer = todo.pop(0)
        layers.append(layer)
        todo.extend(getattr(layer, "layers", []))
    for layer in layers:
        layer.trainable = True
    for number, variable in enumerate(model.weights):
        initializer = (keras.initializers.GlorotUniform(seed=seed + number) if len(variable.shape) > 1
                       else keras.initializers.Zeros())
        variable.assign(initializer(variable.shape, dtype=variable.dtype))
    return model


scratch = from_scratch(build_model(conv_weights))
print("trainable weights:", sum(int(v.shape.num_elements()) for v in scratch.trainable_variables))
scratch_history = train(scratch, make_dataset(train_x, train_y),
                        make_dataset(val_x, val_y, shuffle=False, repeat=False), steps=STEPS,
                        checkpoint_dir="runs/scratch/checkpoints", checkpoint_every=max(STEPS // 3, 1),
                        log_dir="runs/scratch/logs")
scratch_accuracy = (scratch.predict(data.test_images, verbose=0).argmax(1) == data.test_labels).mean()
# The transfer model as section 5 left it after STEPS steps (`resumed` trained 20 more).
transfer_accuracy = (model.predict(data.test_images, verbose=0).argmax(1) == data.test_labels).mean()
print(f"after {STEPS} steps, test accuracy: transfer {transfer_accuracy:.3f}, from scratch {scratch_accuracy:.3f}")
""",
    """\
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
for run, label in ((history, "transfer"), (scratch_history, "from scratch")):
    ax_loss.plot(run["step"], run["loss"], label=f"{label}, train")
    ax_acc.plot(run["step"], run["accuracy"], label=f"{label}, train")
    if run["val_step"]:
        ax_acc.plot(run["val_step"], run["val_accuracy"], "o--", label=f"{label}, validation")
for ax, name in ((ax_loss, "loss"), (ax_acc, "accuracy")):
    ax.set_xlabel("step"); ax.set_ylabel(name); ax.legend(fontsize="small")
fig.suptitle(f"{STEPS} steps: transfer {transfer_accuracy:.3f}, from scratch {scratch_accuracy:.3f} test accuracy")
plt.show()
""",
]


def question_md(item: dict) -> str:
    """The handout cell above a manual item's answer: its prompt, points and where to write."""
    return (f"### {item['title']} ({item['points']:g} points)\n\n{item['prompt'].strip()}\n\n"
            "Write your answer in the cell below (double-click it), in words and numbers. A "
            "person grades it; the grader does not run anything for it.")


def answers_file(manual_items: list) -> str:
    """answers.md for students who work in the .py module: a section per manual item."""
    from ...answers import PLACEHOLDER

    parts = ["# Answers to the written questions", "",
             "Write each answer under its heading, in place of the line in italics (keep the "
             "`## ...` lines as they are), and submit this file beside transfer_learning.py, in "
             "one folder or zip. The notebook's section 6 runs the experiment the questions ask "
             "about. Only what is under a heading is read.", ""]
    for item in manual_items:
        prompt = "\n".join(f"> {line}" if line else ">" for line in item["prompt"].strip().splitlines())
        parts += [f"> **{item['id']}: {item['title']}** ({item['points']:g} points)", ">", prompt, ""]
    for item in manual_items:
        parts += [f"## {item['id']}", "", PLACEHOLDER, ""]
    return "\n".join(parts)

DEFAULT_STEPS = {"synthetic": 60, "cifar10": 300}
"""the notebook's STEPS (sections 5 and 6) in each data setting: on the synthetic default a
network trained from scratch learns the ten classes in about 150 steps (SCRATCH_FIGURES),
so a longer default would compare two finished runs; 60 is early in training, where
transfer pays, as 300 is on CIFAR-10"""

EXPERIMENTS = [
    """\
import os
import matplotlib.pyplot as plt
from grader.exercises.transfer_learning import synthetic, cifar10, vgg_weights

# Real data and weights: set CIFAR10_PATH and VGG16_WEIGHTS, e.g. to cifar-10-python.tar.gz
# and vgg16-conv-weights.npz. Without them: the synthetic default and stand-in weights.
data = cifar10.load(os.environ["CIFAR10_PATH"]) if os.environ.get("CIFAR10_PATH") else synthetic.load()
conv_weights, source = vgg_weights.resolve(os.environ.get("VGG16_WEIGHTS"))
print(data.name, "|", source)
(train_x, train_y), (val_x, val_y) = data.split_validation(len(data.train_labels) // 10)
# Steps of every run below: early in training, where the two runs of section 6 differ
# (the offline default's ten classes are learned from nothing in about 150 steps).
# EXERCISE_STEPS overrides it.
STEPS = int(os.environ.get("EXERCISE_STEPS", {cifar10} if os.environ.get("CIFAR10_PATH") else {synthetic}))
""".format(**DEFAULT_STEPS),
    """\
model = build_model(conv_weights)
model.summary()
history = train(model, make_dataset(train_x, train_y), make_dataset(val_x, val_y, shuffle=False, repeat=False),
                steps=STEPS, checkpoint_dir="runs/notebook/checkpoints", checkpoint_every=max(STEPS // 3, 1),
                log_dir="runs/notebook/logs")
""",
    """\
fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.5))
ax_loss.plot(history["step"], history["loss"], label="train")
ax_loss.plot(history["val_step"], history["val_loss"], "o-", label="validation")
ax_acc.plot(history["step"], history["accuracy"], label="train")
ax_acc.plot(history["val_step"], history["val_accuracy"], "o-", label="validation")
for ax, name in ((ax_loss, "loss"), (ax_acc, "accuracy")):
    ax.set_xlabel("step"); ax.set_ylabel(name); ax.legend()
plt.show()
""",
    """\
# Resuming: a fresh model restored from the newest checkpoint carries on from its step.
resumed = build_model(conv_weights)
print("restored step:", restore_checkpoint(resumed, "runs/notebook/checkpoints"))
more = train(resumed, make_dataset(train_x, train_y), steps=STEPS + 20,
             checkpoint_dir="runs/notebook/checkpoints", checkpoint_every=20)
print("trained steps", more["step"][0], "to", more["final_step"])
test_accuracy = (resumed.predict(data.test_images, verbose=0).argmax(1) == data.test_labels).mean()
print(f"test accuracy: {test_accuracy:.3f}")
""",
]

WRITTEN = """
The written question at the end (section 6 of the notebook) is graded by a person. In the
notebook, answer it in the cell below the question. If you work in the `.py` module, write
your answer in `answers.md` (in this folder) and submit it beside `transfer_learning.py`,
both in one folder or zip.
"""
"""STUDENT_README's paragraph on the written questions, when the rubric has any"""

STUDENT_README = """\
# Exercise: transfer learning with a frozen VGG16

Files:
- `transfer_learning.ipynb`: the handout and your work, in a notebook;
- `transfer_learning.py`: the same functions as a plain module, if you prefer an editor;
- `rubric.yaml`: what is graded and how many points each item is worth;
{answers_line}- `{wheel}`: the checker, the same one that grades your submission.

Work in one of the two files (the grader takes either), filling in every
`# YOUR CODE HERE`. Keep function names and signatures unchanged.
{written}
## Installing the checker

From this folder, with Python 3.10 or newer, in a new environment (TensorFlow, CPU-only
where that build exists, comes from the package index with the `tensorflow` extra):

    python3 -m venv .venv && .venv/bin/pip install "./{wheel}[tensorflow,notebook]"

Then start Jupyter from that environment: `.venv/bin/jupyter lab transfer_learning.ipynb`.

**Already have TensorFlow** (a lab image, a GPU setup, conda)? Install the checker without
the extra, into that environment: `pip install "./{wheel}"`. It leaves your TensorFlow as
it is (it never installs a second one beside it) and works with TensorFlow {tested} and
Keras 3; with another version it says so and still runs, and with Keras 2 (TensorFlow
older than 2.16) it stops with what to install.

**Google Colab** already has TensorFlow: upload the notebook and the wheel, then run
`!pip install ./{wheel}` in a cell and restart the session if Colab asks; `check(...)`
cells work as they do locally.

**macOS** (Apple silicon): the `tensorflow` extra installs the `tensorflow` package;
everything works as on Linux. **Windows**: the checker needs a POSIX system; use WSL 2
(an Ubuntu shell) and the commands above.

**What the local check guarantees.** It runs your code in a separate process with the
same items, seeds and verdicts as the final grading, on the same offline data. On Linux
it also confines that process (bubblewrap: no network, a read-only view of your files);
on macOS, in WSL without user namespaces and on Colab it says that it cannot, and runs
it under time limits (and memory limits where the system has them) only. The scores are the same either way: the
confinement protects your machine and the course's grading, not the result.

## Checking your work

In the notebook, the cell after each task grades that task (`check("preprocess")`), and
`check_all()` at the end grades everything that can be graded before the due date. They
grade the notebook **as saved**: save first. From a terminal:

    .venv/bin/grader check transfer_learning.ipynb     # or transfer_learning.py
    .venv/bin/grader check transfer_learning.py --json results.json

Both print, per item, the points, a status and what was expected against what was found,
in well under a minute. Unfinished functions score 0 on their items without stopping the
others. Items graded after the due date are named but not run.
"""


CHECK_SETUP = """\
# The cell after each task grades that task now, with the same checks as the final grading.
# It grades the notebook as saved on disk: save (Ctrl-S) before you run a check.
from grader.notebook import check, check_all\
"""

CHECK_ALL_MD = """\
## Before you submit

Save the notebook, then run the cell below: it grades every item that can be graded before
the due date, exactly as `grader check transfer_learning.ipynb` does. The items graded
after the due date are named, not run.
"""
