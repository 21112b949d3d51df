"""Where the kit's files live, whichever way it was installed.

- The package itself (`PACKAGE`) and the folder holding it (`PACKAGE_PARENT`, which
  workers get as PYTHONPATH).
- The default rubric: the course folder's `rubrics/` in a checkout (or an editable
  install), else the copy installed as package data (`grader/rubrics/`): the full rubric
  in a non-editable install of the kit, the public one in the student package.
- The course folder (the instructor's checkout, with the reference solution and the test corpus): found from the
  package in a checkout, else the current folder. Only instructor verbs (generate,
  calibrate, train's default module) need it, and they say so when it is missing.
"""
from __future__ import annotations

import os
from pathlib import Path

from .errors import KitError
from .exercise import DEFAULT

PACKAGE = Path(__file__).resolve().parent
PACKAGE_PARENT = PACKAGE.parent
MODULE_NAME = DEFAULT
"""the course folder's exercise (grader/exercise.py): its reference solution, skeletons
and default rubric are named after it, as is the module students hand in"""
RUBRIC_NAME = f"{MODULE_NAME}.yaml"
SOLUTION_REL = Path("solutions") / f"{MODULE_NAME}.py"


def _is_course_folder(folder: Path) -> bool:
    return (folder / SOLUTION_REL).is_file() and (folder / "rubrics").is_dir()


# The checkout this package runs from (editable install or source tree), or None.
CHECKOUT = PACKAGE_PARENT if _is_course_folder(PACKAGE_PARENT) else None


def course_root() -> Path:
    """The course folder: the checkout, else the current folder if it is one."""
    if CHECKOUT is not None:
        return CHECKOUT
    if _is_course_folder(Path.cwd()):
        return Path.cwd().resolve()
    raise KitError(f"expected the course folder (with {SOLUTION_REL} and rubrics/), found "
                   f"neither here ({Path.cwd()}) nor around the installed package; run this "
                   "command inside the kit's folder.")


def solution() -> Path:
    """The marked reference solution of the course folder."""
    return course_root() / SOLUTION_REL


def default_rubric() -> Path:
    """The rubric used when none is given (see the module docstring)."""
    if CHECKOUT is not None:
        return CHECKOUT / "rubrics" / RUBRIC_NAME
    packaged = PACKAGE / "rubrics" / RUBRIC_NAME
    if packaged.is_file():
        return packaged
    if _is_course_folder(Path.cwd()):
        return Path.cwd().resolve() / "rubrics" / RUBRIC_NAME
    raise KitError(f"expected a rubric: none was given with --rubric and the installed package "
                   f"has none ({packaged}); pass --rubric FILE.")


def cache_dir() -> Path:
    """Downloads and generated data go here: $GRADER_CACHE, else datasets/cache in the
    course folder, else ~/.cache/vgg-transfer-kit."""
    if os.environ.get("GRADER_CACHE"):
        return Path(os.environ["GRADER_CACHE"])
    if CHECKOUT is not None:
        return CHECKOUT / "datasets" / "cache"
    return Path.home() / ".cache" / "vgg-transfer-kit"
