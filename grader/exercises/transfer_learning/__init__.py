"""The kit's exercise: transfer learning with a frozen VGG16 on CIFAR-10 (or the offline
synthetic set), checkpoints that resume training, and a tf.data pipeline.

Its parts: the network and the module contract (network.py), the checks (checks/), the
grading inputs (inputs.py) and the data and weights they come from (data.py, cifar10.py,
synthetic.py, vgg_weights.py), the handout (handout.py), the reference training run
(train.py), and what the kit reaches it through (definition.py's EXERCISE). This file
imports nothing, so a student's notebook can import the data loaders alone.
"""
