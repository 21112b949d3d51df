"""Where the kit's files live: the repository checkout and the data cache."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOLUTION = ROOT / "solutions" / "transfer_learning.py"
RUBRICS = ROOT / "rubrics"
DEFAULT_RUBRIC = RUBRICS / "transfer_learning.yaml"


def cache_dir() -> Path:
    """Downloads and generated data go here: $GRADER_CACHE, else datasets/cache."""
    return Path(os.environ.get("GRADER_CACHE") or ROOT / "datasets" / "cache")
