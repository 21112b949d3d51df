"""What the engine asks a worker to do, sent as JSON on the worker's stdin (channel.bootstrap)
and read back there before the submission is imported."""
from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class JobItem:
    id: str
    check: str
    """the check's name in its exercise's registry (a second part: name + SECOND_PART)"""
    params: dict
    seed: int
    """the random seed the item runs under (engine.seeds.item_seed)"""


@dataclass(frozen=True)
class Job:
    module: str
    """the module file to import, the worker's own copy"""
    submission_dir: str
    """the submission's folder, read-only in the sandbox"""
    scratch: str
    """the one folder the worker may write"""
    exercise: str
    search_path: tuple[str, ...]
    """where the exercise's package was found outside the kit (grader.exercise.load)"""
    items: tuple[JobItem, ...]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Job:
        return cls(data["module"], data["submission_dir"], data["scratch"], data["exercise"],
                   tuple(data["search_path"]), tuple(JobItem(**item) for item in data["items"]))
