"""The kit at an older git revision, checked out beside this one, for a benchmark to
compare with: run it with `cwd=path` and `PYTHONPATH=path` (its own code and rubric)."""
from __future__ import annotations

import subprocess
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def worktree(rev: str | None, where: Path):
    """Yield a temporary git worktree of `rev` under `where` (None without a revision),
    removed again however the benchmark ends."""
    if rev is None:
        yield None
        return
    path = Path(where) / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), rev],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)],
                       check=True)
