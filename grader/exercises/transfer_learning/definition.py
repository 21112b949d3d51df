"""The exercise as the kit sees it (grader/exercise.py): everything the engine, the
rubric and the grading verbs know of it is here."""
from __future__ import annotations

import importlib

from ...exercise import Exercise
from . import data
from .checks import REGISTRY
from .checks.common import worker_context
from .inputs import grading_inputs
from .network import CONTRACT

EXERCISE = Exercise(
    name="transfer_learning",
    title="Transfer learning with a frozen VGG16",
    module_name="transfer_learning",
    contract=CONTRACT,
    checks=REGISTRY,
    grading_inputs=grading_inputs,
    worker_context=worker_context,
    check_options=data.check_options,
    rubric_sections={"data": data.parse_data, "weights": data.parse_weights},
    public_sections=data.public_sections,
    shipped=data.shipped,
    student_modules=("train",),
    handout=lambda: importlib.import_module(f"{__package__}.handout"),
    calibration=lambda rubric, options: importlib.import_module(
        f"{__package__}.calibration").measured(rubric, options),
    commands={"train": "train", "convert-weights": "convert_weights"},
    public_modules=("synthetic", "cifar10", "vgg_weights", "network"),
)
