"""The course folder's files, for tests (which always run in a checkout)."""
from grader.paths import CHECKOUT, RUBRIC_NAME, SOLUTION_REL

assert CHECKOUT is not None, "the tests run from the kit's checkout"
ROOT = CHECKOUT
SOLUTION = ROOT / SOLUTION_REL
DEFAULT_RUBRIC = ROOT / "rubrics" / RUBRIC_NAME
