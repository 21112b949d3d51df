"""How well behaviour and code together find disguised copies, and at what cost.

Every correct solution of the kit (solutions/, tests/corpus/correct, tests/corpus/notebooks),
the held-out independent solutions and every disguised copy (tests/corpus/copies, the
tuning split; tests/corpus/heldout and tests/corpus/blind, the held-out splits) are graded once by
`grader batch` on the embedded default, into --out (graded again only when a file or the
kit changed). Then, as in a real run, a class is compared with the kit's other solutions
as the background:

- each held-out split (HELD_OUT): the five sources of its copies, its independent
  solutions and its ten copies, with the other kit solutions as background;
- --splits random splits: a random half of the honest solutions with one random copy of
  each (when it has any), the rest as background;
- each pair of honest solutions alone, every other kit solution as background.

For each it prints which copies are reported with their source (by code at the threshold,
by behaviour, by either) and every pair of independent solutions reported. Then the time
behaviour costs in a class of 300 made from these (each given its own numbers, so nothing
is found for free), against the code comparison's.

    python benchmarks/bench_behaviour.py [--out /tmp/bench-behaviour] [--splits 20]
    python benchmarks/bench_behaviour.py --write-background   # tests/corpus/behaviour.json
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grader.copying import behaviour  # noqa: E402
from grader.records.gradebook import Gradebook  # noqa: E402
from grader import copying  # noqa: E402

CORPUS = ROOT / "tests" / "corpus"
BACKGROUND = CORPUS / "behaviour.json"


def kit_solutions() -> dict[str, Path]:
    files = [ROOT / "solutions" / "transfer_learning.py", *sorted((CORPUS / "correct").glob("*")),
             *sorted((CORPUS / "notebooks").glob("*.ipynb"))]
    return {("reference" if p.parent.name == "solutions" else p.stem): p for p in files}


HELD_OUT = ("heldout", "blind")
"""the splits the rule was not set on, each a folder of tests/corpus with a NAME.yaml of its
copies and independent solutions: heldout (written before the rule, looked at when it was
made stricter and when copies came to count as one witness) and blind (written after the
rule was last changed, by writers who had seen neither the detector nor the rule, and
graded once the rule was fixed)"""


def _split(name: str) -> dict:
    return yaml.safe_load((CORPUS / name / f"{name}.yaml").read_text())


def copies() -> list[dict]:
    """Every copy with its split, the name it is graded under and its source's name."""
    found = []
    for entry in yaml.safe_load((CORPUS / "copies" / "copies.yaml").read_text()):
        found.append({**entry, "split": "tuning", "path": CORPUS / "copies" / entry["file"]})
    for split in HELD_OUT:
        for entry in _split(split)["copies"]:
            found.append({**entry, "split": split, "path": CORPUS / split / entry["file"]})
    for entry in found:
        source = Path(entry["source"])
        entry["of"] = "reference" if source.parent.name == "solutions" else source.stem
        entry["name"] = "copy_" + Path(entry["file"]).stem
    return found


def independent(split: str | None = None) -> dict[str, Path]:
    """The independent solutions of one held-out split, or of all."""
    return {Path(e["file"]).stem: CORPUS / name / e["file"]
            for name in ((split,) if split else HELD_OUT) for e in _split(name)["independent"]}


def grade_all(out: Path, regrade: bool = False) -> dict[str, Path]:
    """Everything graded into out/gradebook.sqlite; {name: file}."""
    files = {**kit_solutions(), **independent(), **{c["name"]: c["path"] for c in copies()}}
    folder = out / "class"
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in files.items():
        target = folder / (name + path.suffix)
        if not target.exists() or target.read_bytes() != path.read_bytes():
            shutil.copyfile(path, target)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "grader", "batch", str(folder), "--out", str(out / "graded"),
                    "--no-progress", *(["--regrade"] if regrade else [])], check=True, cwd=ROOT)
    print(f"graded (or found graded) {len(files)} submissions in {time.perf_counter() - start:.0f} s")
    return files


def code_scores(names: list[str], files: dict[str, Path], background: list[str]) -> dict:
    codes = [copying.read_code(n, files[n]) for n in names]
    texts = [copying.read_code(n, files[n]).text for n in background]
    result = copying.compare(codes, copying.given_code(), keep_below=True, background=texts)
    return {frozenset((p.a, p.b)): p.score for p in result.pairs}


def judge(names: list[str], kept: dict, files: dict, background: list[str], copy_of: dict) -> dict:
    """Copies found (by code, behaviour, either) and honest pairs reported, for one class."""
    found = behaviour.compare({n: kept[n] for n in names if n in kept},
                              background={n: kept[n] for n in background if n in kept})
    alike = {frozenset((a.a, a.b)) for a in found.alike}
    code = code_scores(names, files, background)
    by_code = {pair for pair, score in code.items() if score >= copying.THRESHOLD}
    rows, honest = [], []
    for name in names:
        if name in copy_of:
            pair = frozenset((name, copy_of[name]))
            rows.append((name, code.get(pair, 0.0), pair in by_code, pair in alike))
    for pair in by_code | alike:
        a, b = sorted(pair)
        if a not in copy_of and b not in copy_of:
            honest.append((a, b, code.get(pair, 0.0), pair in alike))
    return {"copies": rows, "honest": honest, "idioms": found.idioms}


def own_choices(source: str, kept: dict) -> tuple[list[str], list[str]]:
    """The checks in which `source` ran as no other honest solution (kit or held-out
    independent) did, and the honest solutions that ran as it did in everything: a copy can
    be reported by behaviour only when its source has two such checks and no such twin."""
    mine = behaviour._prepared(behaviour.portable(kept[source]))
    others = {n: behaviour._prepared(behaviour.portable(kept[n]))
              for n in [*kit_solutions(), *independent()] if n != source and n in kept}
    own = sorted({name.split(": ", 1)[0] for name, spec in mine.items()
                  if not behaviour._degenerate(spec)
                  and not any(name in theirs and behaviour._same(spec, theirs[name]) for theirs in others.values())})
    twins = sorted(n for n, theirs in others.items() if behaviour._alike(mine, theirs) is not None)
    return own, twins


def held_out(kept: dict, files: dict, split: str) -> None:
    held = [c for c in copies() if c["split"] == split]
    sources = sorted({c["of"] for c in held})
    names = sources + sorted(independent(split)) + [c["name"] for c in held]
    background = [n for n in kit_solutions() if n not in sources]
    copy_of = {c["name"]: c["of"] for c in held}
    result = judge(names, kept, files, background, copy_of)
    print(f"\n{split} split: {len(sources)} sources, {len(independent(split))} independent "
          f"solutions, {len(held)} heavy copies; background: the kit's other {len(background)} "
          "solutions")
    print("  copy                              code   by code  by behaviour  its source's own checks")
    for name, score, by_code, by_behaviour in result["copies"]:
        own, twins = own_choices(copy_of[name], kept)
        print(f"  {name:32s} {score:5.2f}   {'yes' if by_code else 'no ':3s}      "
              f"{'yes' if by_behaviour else 'no ':3s}           {', '.join(own) or 'none'}"
              f"{'; ran as ' + ', '.join(twins) + ' in everything' if twins else ''}")
    rows = result["copies"]
    print(f"  found: by code {sum(r[2] for r in rows)}/{len(rows)}, by behaviour "
          f"{sum(r[3] for r in rows)}/{len(rows)}, by either {sum(r[2] or r[3] for r in rows)}/{len(rows)}")
    print(f"  independent pairs reported: {len(result['honest'])} {result['honest']}")
    for members in result["idioms"]:
        print(f"  ran alike, but not in {behaviour.RARE_CHECKS} checks their own way: {', '.join(members)}")


def random_splits(kept: dict, files: dict, splits: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    honest = sorted(kit_solutions()) + sorted(independent())
    by_source: dict[str, list[dict]] = {}
    for c in copies():
        by_source.setdefault(c["of"], []).append(c)
    totals = {"copies": 0, "code": 0, "behaviour": 0, "either": 0, "honest_pairs": 0, "reported": 0}
    levels: dict[str, list[int]] = {}
    for _ in range(splits):
        klass = sorted(rng.sample(honest, len(honest) // 2))
        chosen = [rng.choice(by_source[s]) for s in klass if s in by_source]
        background = [n for n in kit_solutions() if n not in klass]
        result = judge(klass + [c["name"] for c in chosen], kept, files, background,
                       {c["name"]: c["of"] for c in chosen})
        level = {c["name"]: c["level"] for c in chosen}
        for name, _, by_code, by_behaviour in result["copies"]:
            totals["copies"] += 1
            totals["code"] += by_code
            totals["behaviour"] += by_behaviour
            totals["either"] += by_code or by_behaviour
            levels.setdefault(level[name], [0, 0])[0] += by_code or by_behaviour
            levels[level[name]][1] += 1
        totals["honest_pairs"] += len(klass) * (len(klass) - 1) // 2
        totals["reported"] += len(result["honest"])
    print(f"\n{splits} random splits (half the honest solutions in the class, one copy of each):")
    print(f"  copies found: by code {totals['code']}/{totals['copies']}, by behaviour "
          f"{totals['behaviour']}/{totals['copies']}, by either {totals['either']}/{totals['copies']}")
    print("  by level (either): " + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in sorted(levels.items())))
    print(f"  independent pairs reported: {totals['reported']} of {totals['honest_pairs']}")


def honest_pairs(kept: dict) -> None:
    """Each pair of honest solutions as a class of two, with every other kit solution as
    the background: the pairs behaviour would report if the kit knew nothing of theirs."""
    honest = sorted(kit_solutions()) + sorted(independent())
    reported = []
    for k, a in enumerate(honest):
        for b in honest[k + 1:]:
            background = {n: kept[n] for n in kit_solutions() if n not in (a, b)}
            found = behaviour.compare({a: kept[a], b: kept[b]}, background=background)
            reported += [(x.a, x.b) for x in found.alike]
    total = len(honest) * (len(honest) - 1) // 2
    print(f"\neach pair of the {len(honest)} honest solutions alone, the rest as background: "
          f"{len(reported)} of {total} reported {reported}")


def timing(kept: dict, size: int = 300) -> None:
    """behaviour.compare on a class of `size` made from the graded behaviours, each given
    numbers of its own (a worst case: every exact value shared by many, nothing alike)."""
    rng = random.Random(1)
    base = list(kept.values())
    klass = {}
    for k in range(size):
        made = json.loads(json.dumps(base[k % len(base)]))
        for spec in made.values():
            if "numbers" in spec:
                spec["numbers"] = [v + rng.uniform(-1, 1) * 1e-2 for v in spec["numbers"]]
        klass[f"s{k:03d}"] = made
    start = time.perf_counter()
    found = behaviour.compare(klass)
    seconds = time.perf_counter() - start
    same = {name: json.loads(json.dumps(base[0])) for name in klass}  # every pair compared
    start = time.perf_counter()
    behaviour.compare(same)
    worst = time.perf_counter() - start
    print(f"\nbehaviour of {size} submissions compared in {seconds:.2f} s ({len(found.alike)} alike); "
          f"{worst:.2f} s when all {size} behave alike (one bucket: every pair compared); "
          "their code, in the same run:")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_similarity

    bench_similarity.timing([size])


def write_background(kept: dict) -> None:
    solutions = {name: kept[name] for name in sorted(kit_solutions()) if name in kept}
    missing = sorted(set(kit_solutions()) - set(solutions))
    if missing:
        raise SystemExit(f"no behaviour kept for {', '.join(missing)}: grade them first")
    BACKGROUND.write_text(json.dumps({
        "about": "What the kit's own correct solutions did when graded with the shipped rubric on "
                 "the embedded default: the background of what honest work converges on, for "
                 "grader copying. Written by benchmarks/bench_behaviour.py --write-background; "
                 "tests/test_corpus.py checks it against this session's gradings.",
        "solutions": solutions}, indent=1, sort_keys=True) + "\n")
    print(f"wrote {BACKGROUND.relative_to(ROOT)} ({len(solutions)} solutions)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="/tmp/bench-behaviour", type=Path)
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--write-background", action="store_true")
    parser.add_argument("--regrade", action="store_true", help="grade everything again (after the "
                        "checks changed what they keep)")
    args = parser.parse_args()
    files = grade_all(args.out, args.regrade)
    book = Gradebook(args.out / "graded" / "gradebook.sqlite")
    try:
        kept = behaviour.read(book)
    finally:
        book.close()
    if args.write_background:
        write_background(kept)
        return
    for split in HELD_OUT:
        held_out(kept, files, split)
    random_splits(kept, files, args.splits)
    honest_pairs(kept)
    timing(kept)


if __name__ == "__main__":
    main()
