"""How well `grader similarity` separates copies from honest work, and how its time grows.

Quality. The disguised copies in tests/corpus/copies (each names its source) and the 14
independent correct solutions (solutions/, tests/corpus/correct, tests/corpus/notebooks).
A real class is compared with all 14 as the background that tells idioms (code two
solutions share) from copies; here the 14 are split instead, some into the class, the
rest into the background, so no solution judges its own pairs: the fixed split the tests
use (FIXED_CLASS), then --splits random splits for each class size in --class-sizes.
For each threshold it prints how many copies score at least that against their source,
and how many honest pairs do.

Time. A class of N distinct submissions made from the corpus's blocks, read and
compared, for each N in --sizes (the 14 solutions as background, as in a real run).

    python benchmarks/bench_similarity.py [--sizes 50 100 200 300] [--splits 8]
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "tests"))  # tests/kit.py, which the tests import
sys.path.insert(0, str(ROOT / "tests" / "copying"))

from grader import copying  # noqa: E402
from test_copying import FIXED_CLASS  # noqa: E402  (the split the tests assert on)

COPIES = ROOT / "tests" / "corpus" / "copies"


def honest_files() -> dict[str, Path]:
    files = [ROOT / "solutions" / "transfer_learning.py",
             *sorted((ROOT / "tests" / "corpus" / "correct").glob("*")),
             *sorted((ROOT / "tests" / "corpus" / "notebooks").glob("*.ipynb"))]
    return {p.stem: p for p in files}


def copies() -> list[dict]:
    return yaml.safe_load((COPIES / "copies.yaml").read_text())




def measure(class_names, texts: dict[str, str], given: list[str]) -> dict:
    """Scores of each copy (of a source in the class) against its source, and of every
    honest pair of the class, with the other solutions as the background."""
    entries = [e for e in copies() if Path(e["source"]).stem in class_names]
    codes = [copying.Code(name, texts[name]) for name in sorted(class_names)]
    codes += [copying.read_code("copy:" + e["file"], COPIES / e["file"]) for e in entries]
    background = [text for name, text in texts.items() if name not in class_names]
    result = copying.compare(codes, given, keep_below=True, background=background)
    score = {frozenset((p.a, p.b)): p.score for p in result.pairs}
    names = sorted(class_names)
    return {"copies": {e["file"]: score.get(frozenset(("copy:" + e["file"], Path(e["source"]).stem)), 0.0)
                       for e in entries},
            "levels": {e["file"]: e["level"] for e in entries},
            "honest": {(a, b): score.get(frozenset((a, b)), 0.0)
                       for i, a in enumerate(names) for b in names[i + 1:]}}


def table(copy_scores: list[float], honest_scores: list[float], thresholds: list[float]) -> None:
    print(f"  highest honest pair {max(honest_scores):.3f}, lowest copy {min(copy_scores):.3f}")
    print("  threshold  copies found  honest pairs flagged")
    for t in thresholds:
        print(f"    {t:.2f}     {sum(v >= t for v in copy_scores):3d} / {len(copy_scores)}"
              f"      {sum(v >= t for v in honest_scores):3d} / {len(honest_scores)}")


def quality(splits: int, sizes: list[int], thresholds: list[float]) -> None:
    texts = {name: copying.read_code(name, path).text for name, path in honest_files().items()}
    given = copying.given_code()
    print(f"k = {copying.K} tokens, window {copying.GUARANTEE - copying.K + 1}; idioms: held by "
          f"{copying.IDIOM}+ background solutions or more than {copying.COMMON} submissions")
    found = measure(FIXED_CLASS, texts, given)
    print(f"fixed split (the tests'): {len(FIXED_CLASS)} solutions and {len(found['copies'])} copies "
          f"in the class, {len(texts) - len(FIXED_CLASS)} in the background")
    for name, value in sorted(found["copies"].items(), key=lambda kv: kv[1]):
        print(f"    {value:.3f}  {name:36s} {found['levels'][name]}")
    top = sorted(found["honest"].items(), key=lambda kv: -kv[1])[:3]
    print("  highest honest pairs: " + ", ".join(f"{a}/{b} {v:.3f}" for (a, b), v in top))
    table(list(found["copies"].values()), list(found["honest"].values()), thresholds)
    rng = random.Random(0)
    for size in sizes:
        copy_scores, honest_scores = [], []
        for _ in range(splits):
            found = measure(set(rng.sample(sorted(texts), size)), texts, given)
            copy_scores += found["copies"].values()
            honest_scores += found["honest"].values()
        print(f"{splits} random splits, {size} solutions in the class, {len(texts) - size} in the background:")
        table(copy_scores, honest_scores, thresholds)


def timing(sizes: list[int]) -> None:
    """A class of N distinct submissions, each made of the imports of one corpus module and
    top-level blocks drawn from several (so that no fingerprint is in every one)."""
    modules = [p.read_text() for p in honest_files().values() if p.suffix == ".py"]
    modules += [(COPIES / e["file"]).read_text() for e in copies() if e["file"].endswith(".py")]
    blocks = [b for text in modules for b in text.split("\n\n\n")[1:]]
    rng = random.Random(0)
    print("submissions  pairs    read (s)  compare (s)  total (s)")
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            folder = Path(tmp) / str(n)
            folder.mkdir()
            paths = []
            for i in range(n):
                head = rng.choice(modules).split("\n\n\n")[0]
                target = folder / f"s{i:03d}.py"
                target.write_text("\n\n\n".join([head, *rng.sample(blocks, 8)]) + "\n")
                paths.append(target)
            start = time.perf_counter()
            codes = [copying.read_code(p.stem, p) for p in paths]
            read = time.perf_counter() - start
            result = copying.compare(codes, copying.given_code(),
                                        background=copying.background_code())
            total = time.perf_counter() - start
            print(f"  {n:5d}   {n * (n - 1) // 2:6d}    {read:7.2f}   {result.seconds:9.2f}   {total:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[50, 100, 200, 300])
    parser.add_argument("--splits", type=int, default=8)
    parser.add_argument("--class-sizes", type=int, nargs="*", default=[4, 7, 10])
    parser.add_argument("--thresholds", type=float, nargs="*", default=[0.35, 0.4, 0.45, 0.5, 0.55])
    args = parser.parse_args()
    quality(args.splits, args.class_sizes, args.thresholds)
    if args.sizes:
        timing(args.sizes)


if __name__ == "__main__":
    main()
