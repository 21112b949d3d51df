"""The seeds grading follows: the rubric's private one (`heldout_seed`), which an exercise
draws what only the grading process may know from, and each item's, which the worker runs
under."""
from __future__ import annotations

import hashlib
import secrets

DEFAULT_HELDOUT_SEED = 4242
"""the grading seed of a rubric that declares none (a student's own checks)"""


def private_seed() -> int:
    """A fresh held-out seed for a batch or a Gradescope package: 128 random bits, so that
    no submission can recover it from the item seeds it sees (`item_seed`)."""
    return secrets.randbits(128)


def item_seed(seed: int, item_id: str) -> int:
    """The random seed an item runs under: fixed by the grading seed and the item, so a
    second grading of the same submission repeats every random choice. The worker sees
    it; only a seed with enough bits (`private_seed`) keeps the held-out set secret."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{item_id}".encode()).digest()[:4], "big")


def grading_seed(rubric) -> int:
    return DEFAULT_HELDOUT_SEED if rubric.heldout_seed is None else rubric.heldout_seed


def item_seeds(seed: int, items) -> dict[str, int]:
    """{item id: the seed it runs under} for `items`, from the grading seed."""
    return {item.id: item_seed(seed, item.id) for item in items}
