"""What the kit knows of the exercise (grader/exercise.py)."""
from grader.exercise import Exercise

from .checks import CONTRACT, REGISTRY, worker_context
from .inputs import check_options, grading_inputs

EXERCISE = Exercise(
    name="logreg",
    title="Softmax regression in NumPy",
    module_name="logreg",
    contract=CONTRACT,
    checks=REGISTRY,
    grading_inputs=grading_inputs,
    worker_context=worker_context,
    check_options=check_options,
    public_modules=("data",),
)
