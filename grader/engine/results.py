"""What grading produces: an item's outcome from the worker (Observed, Failed), the
flags a submission raised, one submission's collection, and its report."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Union

from .. import __version__

FLAG_KINDS = {
    "protocol": "broke the grading protocol",
    "tampering": "wrote frames the grading worker did not sign, or changed the grader's code",
    "decoy": "wrote on the decoy descriptor named in the worker's arguments",
    "internal_import": "imported the grader's internal modules",
    "proc_fd": "looked at /proc/*/fd (the process's open descriptors)",
    "introspection": "searched the process's memory (gc, frames or ctypes)",
    "subprocess": "started a child process (what runs there is confined but not watched)",
    "processes_left": "left processes running when its grading ended (they were killed)",
    "network": "tried to use the network",
    "write_outside_scratch": "tried to write outside its scratch folder",
    "bounds": "left files past what the grading process reads (the item scores 0)",
    "source": "its source reaches for what this exercise never needs (frames, gc, ctypes, process "
              "starts, sockets...): read before it ran",
    "file_metadata": "changed a file's owner, times or extended attributes",
    "signal": "sent a signal to a process",
    "special_file": "left a FIFO, a socket file or a device node in its scratch folder or /tmp",
}
"""Integrity flags: what each kind means. Data for the gradebook, CSV and `grader flags`."""


@dataclass(frozen=True)
class Flag:
    kind: str
    detail: str


@dataclass
class Observed:
    """An item's collect half finished: what it observed, for the judge."""
    observation: Any
    seconds: float


@dataclass
class Failed:
    """An item that produced nothing to judge, and why."""
    status: str  # error, timeout, crashed, integrity or skipped
    message: str
    seconds: float = 0.0


Outcome = Union[Observed, Failed]


@dataclass
class Collection:
    outcomes: dict[str, Outcome]
    output: str = ""
    import_failed: bool = False
    flags: list[Flag] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass
class ItemResult:
    id: str
    title: str
    score: float
    max_score: float
    status: str
    """passed, partial, failed, error (the submission raised), timeout, crashed, integrity
    (not graded: the worker broke the grading protocol) or skipped"""
    message: str
    seconds: float
    visibility: str = "visible"
    details: dict = field(default_factory=dict)
    """what the judge measured, for people (grader review and report): JSON values only"""


@dataclass
class Report:
    submission: str
    items: list[ItemResult]
    grader_version: str = __version__
    rubric: str = ""
    seconds: float = 0.0
    output_tail: str = ""
    """the last lines the submission printed, for a person debugging it"""
    import_failed: bool = False
    """the submission never imported (an exception or a crash at import): nothing ran"""
    flags: list[Flag] = field(default_factory=list)
    """what a person should look at (see FLAG_KINDS); never a score change by itself"""
    notes: list[str] = field(default_factory=list)
    """what the import of a notebook skipped: cell, line, statement and error"""
    graded_on: str = ""
    """what the items ran on (the exercise's GradingInputs.description)"""

    @property
    def score(self) -> float:
        return round(sum(i.score for i in self.items), 4)

    @property
    def max_score(self) -> float:
        return sum(i.max_score for i in self.items)

    def to_dict(self) -> dict:
        data = asdict(self)
        data.update(score=self.score, max_score=self.max_score)
        return data
