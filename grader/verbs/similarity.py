"""`grader similarity OUT`: which submissions of a batch share code beyond what the
exercise gives them, or behaved alike in ways of their own (grader/copying), for a person
to judge. Nothing here changes a score."""
from __future__ import annotations

from pathlib import Path

from .. import copying
from ..copying import COMMON, THRESHOLD


def main(out: str, threshold: float = THRESHOLD, given: list[str] | None = None,
         submissions: str | None = None, common: int = COMMON) -> copying.Result:
    result = copying.run(Path(out), threshold, given, submissions, common)
    print(copying.summary(result, Path(out)))
    return result
