"""The grading corpus: correct solutions written in other styles, and broken variants.

A corpus folder holds `correct/` (modules and notebooks that must earn full marks on
every item), `notebooks/` (correct notebooks as students write them, untagged, graded the
same way but not calibrated on) and `variants.yaml`, where each broken variant names the correct solution it
is built on, the text edits that make one mistake, and the exact items that mistake
costs. `grader calibrate` trains both kinds; the test suite grades both.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from .errors import KitError
from .paths import course_root, solution


def default_corpus() -> Path:
    """tests/corpus in the course folder."""
    return course_root() / "tests" / "corpus"
REFERENCE = "reference"  # the name variants use for solutions/transfer_learning.py

VARIANT_KEYS = {
    "name": "unique name of the mistake",
    "base": f"a file in correct/ (or {REFERENCE!r} for the marked reference solution)",
    "edits": "list of [old text, new text]; each old text must occur exactly once in the base",
    "loses": "the exact list of rubric item ids this mistake costs",
    "low": "true when every accuracy item must score 0 (calibration puts its bounds above these)",
    "why": "one line: what the mistake is",
    "says": "optional {item id it loses: words, or a list of words, its message must contain}: "
            "the cause it names",
    "not_says": "optional {item id: words, or a list of words, its message must not contain, in "
                "any case}: the plausible wrong causes it must not name",
    "may_lose": "optional list of items a chaotic run may or may not cost (say why in `why`; "
                "`says` may name them, for the runs that do)",
}


@dataclass(frozen=True)
class Variant:
    name: str
    base: str
    edits: tuple[tuple[str, str], ...]
    loses: frozenset[str]
    low: bool = False
    why: str = ""
    says: tuple[tuple[str, str], ...] = ()
    not_says: tuple[tuple[str, str], ...] = ()
    may_lose: frozenset[str] = frozenset()


def correct_solutions(corpus: Path | None = None, with_reference: bool = True) -> dict[str, Path]:
    """{name: path} of the correct solutions: the reference first, then correct/ sorted."""
    corpus = corpus or default_corpus()
    found = {REFERENCE: solution()} if with_reference else {}
    folder = Path(corpus) / "correct"
    if folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.suffix in (".py", ".ipynb") and not path.name.startswith(("_", ".")):
                found[path.stem] = path
    return found


def student_notebooks(corpus: Path | None = None) -> dict[str, Path]:
    """{name: path} of the correct notebooks written as students write them (untagged, the
    exercise's snippets and demo runs between the functions), in notebooks/. Graded like
    the correct solutions, but not part of calibration."""
    folder = Path(corpus or default_corpus()) / "notebooks"
    return {p.stem: p for p in sorted(folder.glob("*.ipynb"))} if folder.is_dir() else {}


def load_variants(corpus: Path | None = None) -> list[Variant]:
    path = Path(corpus or default_corpus()) / "variants.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise KitError(f"{path}: expected a YAML list of broken variants, could not read it "
                       f"({type(exc).__name__}).") from None
    if not isinstance(data, list):
        raise KitError(f"{path}: expected a list of variants, found {type(data).__name__}.")
    bases = correct_solutions(corpus)
    sources: dict[str, str] = {}  # each base read once
    variants, names = [], set()
    for index, raw in enumerate(data):
        where = f"{path}: variant {index}"
        if not isinstance(raw, dict) or set(raw) - set(VARIANT_KEYS) or \
                not {"name", "base", "edits", "loses"} <= set(raw):
            raise KitError(f"{where}: expected the keys {', '.join(VARIANT_KEYS)} "
                           f"(name, base, edits and loses required), found {raw!r:.120}.")
        if raw["name"] in names:
            raise KitError(f"{where}: the name {raw['name']!r} is used twice.")
        names.add(raw["name"])
        if raw["base"] not in bases:
            raise KitError(f"{where}: base {raw['base']!r} is not a correct solution; expected "
                           f"one of {', '.join(bases)}.")
        edits = tuple((str(old), str(new)) for old, new in raw["edits"])
        if raw["base"] not in sources:
            sources[raw["base"]] = bases[raw["base"]].read_text(encoding="utf-8")
        source = sources[raw["base"]]
        for old, _ in edits:
            if source.count(old) != 1:
                raise KitError(f"{where} ({raw['name']}): the text {old!r:.80} occurs "
                               f"{source.count(old)} times in {raw['base']}; expected once.")
        may_lose = frozenset(raw.get("may_lose") or ())
        says = _words(raw, "says", where, "items it loses or may lose", set(raw["loses"]) | may_lose)
        not_says = _words(raw, "not_says", where, "items", None)
        variants.append(Variant(raw["name"], raw["base"], edits, frozenset(raw["loses"]),
                                bool(raw.get("low", False)), str(raw.get("why", "")),
                                says, not_says, may_lose))
    return variants


def _words(raw: dict, key: str, where: str, what: str, items: set | None) -> tuple:
    """((item id, words), ...) from `key`: {item id: words or [words, ...]}, each item one of
    `items` (any item when None; the test checks those against the rubric)."""
    found = raw.get(key) or {}
    ok = isinstance(found, dict) and all(
        isinstance(item, str) and (items is None or item in items) and
        (isinstance(words, str) and words or isinstance(words, list) and words and
         all(isinstance(w, str) and w for w in words))
        for item, words in found.items())
    if not ok:
        raise KitError(f"{where} ({raw['name']}): expected {key!r} to map {what} to words of "
                       f"their message (a text or a list of texts), found {found!r:.120}.")
    return tuple((item, w) for item, words in found.items()
                 for w in ([words] if isinstance(words, str) else words))


def variant_items(variant: Variant, items: list, corpus: Path | None = None) -> list:
    """The rubric items a variant is graded on: the visible ones whose check can reach the
    edited code, and each hidden one that runs the same check as an item the variant must
    lose (or any accuracy item for a low variant).

    A visible item whose check calls none of the functions the edits touch runs exactly the
    base solution's code, which earns full marks on every item; grading it again would only
    repeat that verdict. A hidden item whose check the variant passes in its visible form
    repeats that check with a longer budget, which the correct runs of calibration pass too."""
    from .exercise import load

    REGISTRY = load().checks
    USES = REGISTRY.uses

    lost_checks = {i.check for i in items if i.id in variant.loses}
    if variant.low:  # every item scored between calibrated bounds
        lost_checks |= {name for name, c in REGISTRY.items() if c.calibration and c.calibration.kind == "range"}
    touched = touched_functions(variant, corpus)

    def reached(item) -> bool:
        uses = USES[item.check]
        return touched is None or uses is None or bool(touched & set(uses))

    return [i for i in items if (i.visibility == "visible" and reached(i)) or i.check in lost_checks]


def touched_functions(variant: Variant, corpus: Path | None = None) -> set[str] | None:
    """The contract functions whose code the variant's edits change, directly or through
    the module's own functions and classes they refer to; None when an edit lies outside
    every top-level function and class (then anything may change)."""
    import ast

    from .exercise import load

    CONTRACT = load().contract

    base = correct_solutions(corpus)[variant.base]
    if base.suffix != ".py":
        return None
    source = base.read_text(encoding="utf-8")
    tree = ast.parse(source)
    units = {node.name: node for node in tree.body
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))}
    def unit_at(start: int, end: int) -> str | None:
        """The top-level function or class holding source[start:end] whole."""
        first, last = source.count("\n", 0, start) + 1, source.count("\n", 0, max(end - 1, start)) + 1
        return next((name for name, node in units.items()
                     if node.lineno <= first and last <= node.end_lineno), None)

    touched = set()
    for old, _ in variant.edits:
        start = source.index(old)
        name = unit_at(start, start + len(old))
        if name is None:
            return None
        touched.add(name)
    refers = {name: {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} & set(units)
              for name, node in units.items()}
    changed = True
    while changed:  # a unit that refers to a touched unit is touched too
        changed = False
        for name, names in refers.items():
            if name not in touched and names & touched:
                touched.add(name)
                changed = True
    return touched & set(CONTRACT)


def write_variant(variant: Variant, dest: Path, corpus: Path | None = None) -> Path:
    """Write the broken copy into `dest` and return its path (same suffix as the base)."""
    base = correct_solutions(corpus)[variant.base]
    source = base.read_text(encoding="utf-8")
    for old, new in variant.edits:
        source = source.replace(old, new, 1)
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{variant.name}{base.suffix}"
    path.write_text(source, encoding="utf-8")
    return path
