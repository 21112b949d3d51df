"""The mixed batch the batch benchmarks grade: the reference, the skeleton, the solution
notebook and three broken variants from tests/corpus/variants.yaml, `copies` of each."""
from __future__ import annotations

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VARIANTS = ("no_shuffle", "conv_left_trainable", "restarts_step_count")


def mixed_submissions(work: Path, copies: int = 1) -> Path:
    """A folder of 6 x `copies` submissions under `work`."""
    from grader import corpus

    variants = {v.name: v for v in corpus.load_variants()}
    subs = work / "subs"
    subs.mkdir()
    for copy in range(copies):
        shutil.copy(ROOT / "solutions" / "transfer_learning.py", subs / f"ref{copy}.py")
        shutil.copy(ROOT / "skeletons" / "transfer_learning.py", subs / f"skel{copy}.py")
        shutil.copy(ROOT / "solutions" / "transfer_learning.ipynb", subs / f"nb{copy}.ipynb")
        for name in VARIANTS:
            corpus.write_variant(variants[name], work).rename(subs / f"{name}{copy}.py")
    return subs


def rubric_args(work: Path, all_items: bool) -> list[str]:
    """`--rubric` for the public rubric (visible items), or nothing for every item."""
    if all_items:
        return []
    import yaml
    from grader.rubric import public_copy

    public = work / "public.yaml"
    public.write_text(yaml.safe_dump(public_copy(yaml.safe_load(
        (ROOT / "rubrics" / "transfer_learning.yaml").read_text()))))
    return ["--rubric", str(public)]
