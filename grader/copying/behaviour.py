"""Which submissions of a batch behaved alike when graded, for `grader similarity`.

Every submission is graded under the same seeds, batches and probe images, and each
check keeps a little of what the run did in its item's details, under "behaviour": numbers
(logits after training, the losses the run logged) or values (the pipeline's order and
ops, the checkpoint's objects and steps, the TensorBoard tags and the steps they were
written at). A copy does what its original does however its code was rewritten: renaming,
another model style, comprehensions for loops leave every number the same.

But the grader pins most of a run (the head starts at zeros, the batches and the frozen
layers are given), so honest runs agree in most behaviours too, and differ only where a
choice was left: the optimizer, the shuffle buffer, the tag names, the checkpoint's
objects. Two of the kit's 91 pairs of independent solutions behave alike in everything
kept; both follow the skeleton to the letter. So a pair is reported when every behaviour
both kept agrees (at least MIN_COMPARED; numbers within TOLERANCE of their size, other
values exactly) and, in RARE_CHECKS checks or more, they agree in a way of their own: a
value that none of the kit's own solutions shows (the background, graded once in the
shipped setting: tests/corpus/behaviour.json) and at most COMMON submissions of the class
show (those that ran alike with the pair counting once), and that is not degenerate
(logits that never moved). Pairs that behaved alike without that are named in a notice,
not reported. Nothing here reads code, runs anything or changes a score; it shows that
two runs were the same program, not who wrote it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

TOLERANCE = 1e-5
"""two numbers agree when they differ by at most this share of the larger of them (at
least 1). Copies agree exactly; Adam and AdamW at the same learning rate differ by 3e-5
after the training item's steps."""
LARGEST = 1e30
"""numbers kept are finite and smaller than this, or the behaviour is not read"""
MIN_COMPARED = 6
"""behaviours two submissions must both have kept to be compared at all (a submission
whose checks mostly failed has kept few, and agreeing on two says little); of the 9 the
transfer-learning checks keep, 7 do not depend on the batch's private seed"""
COMMON = 3
"""a value of a behaviour that more than this many submissions show is the class's.
Submissions that ran alike in everything count as one witness of a value (copies of one
program are one program), up to this many of them: more that ran alike are a crowd (the
skeleton followed), and a ring of more copies than this is named, not reported"""
RARE_CHECKS = 2
"""checks in which a pair must agree in a way of their own: a value no kit solution shows
and at most COMMON submissions do. One shared choice (a shuffle buffer, tag names,
another optimizer) is something two honest students can make; a copy carries them all."""


@dataclass
class Alike:
    """Two submissions that behaved alike, with what agreed."""
    a: str
    b: str
    agreed: list[str]
    """the behaviours compared, all of which agreed ("training: logits", ...)"""
    rare: list[str]
    """the checks in which they agreed in a way no kit solution and few submissions did"""


@dataclass
class Comparison:
    alike: list[Alike] = field(default_factory=list)
    idioms: list[list[str]] = field(default_factory=list)
    """groups joined by pairs that behaved alike, but in fewer than RARE_CHECKS checks in
    a way of their own: what the kit's solutions or many submissions also do (not
    reported)"""
    kept: int = 0
    """submissions with behaviour to compare"""
    background_met: bool = False
    """some submission agreed with some of the kit's own solutions in some behaviour (when
    none does, the background was graded in another setting and tells nothing)"""


def read(book) -> dict[str, dict[str, dict]]:
    """{student: {"item: name": {"numbers": [...]} or {"value": ...}}} from a gradebook's
    item details. What is not of that shape (a gradebook from before behaviour was kept,
    details a submission's process shaped) is left out."""
    found: dict[str, dict[str, dict]] = {}
    for row in book.submissions():
        student = row["student"]
        kept = {}
        for item in book.items(student):
            details = item.get("details")
            behaviour = details.get("behaviour") if isinstance(details, dict) else None
            if not isinstance(behaviour, dict):
                continue
            for name, spec in behaviour.items():
                if _valid(spec):
                    kept[f"{item['item']}: {name}"] = spec
        if kept:
            found[student] = kept
    return found


def _valid(spec) -> bool:
    if not isinstance(spec, dict) or not 1 <= len(spec) <= 2 or \
            (len(spec) == 2 and spec.get("within") != "batch"):
        return False
    if "numbers" in spec:
        return isinstance(spec["numbers"], list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool)
            and abs(v) < LARGEST for v in spec["numbers"])  # False for NaN and infinities
    return "value" in spec


def portable(kept: dict[str, dict]) -> dict[str, dict]:
    """The behaviours that do not depend on the batch's private seed (not marked "within":
    "batch"): those the kit's own solutions, graded once, can be held against."""
    return {name: spec for name, spec in kept.items() if spec.get("within") != "batch"}


def _key(spec: dict) -> str:
    """What two exact values must share to agree (numbers: only their count)."""
    if "numbers" in spec:
        return f"#{len(spec['numbers'])}"
    return json.dumps(spec["value"], sort_keys=True, separators=(",", ":"))


def agree(first: dict, second: dict) -> bool:
    prepared = _prepared({"first": first, "second": second})
    return _same(prepared["first"], prepared["second"])


def _prepared(kept: dict[str, dict]) -> dict[str, tuple]:
    """Each behaviour as compared: ("v", its exact key) or ("n", its numbers as an array,
    the largest of their absolute values), made once per submission."""
    import numpy as np

    found = {}
    for name, spec in kept.items():
        if "numbers" in spec:
            values = np.asarray(spec["numbers"], dtype=np.float64)
            found[name] = ("n", values, np.maximum(np.abs(values), 1.0))
        else:
            found[name] = ("v", _key(spec), None)
    return found


def _same(first: tuple, second: tuple) -> bool:
    import numpy as np

    if first[0] != second[0]:
        return False
    if first[0] == "v":
        return first[1] == second[1]
    if first[1].shape != second[1].shape:
        return False
    return bool(np.all(np.abs(first[1] - second[1]) <= TOLERANCE * np.maximum(first[2], second[2])))


def _alike(x: dict, y: dict) -> list[str] | None:
    """The behaviours two prepared submissions both kept, when there are MIN_COMPARED or
    more and every one agrees; else None."""
    both = sorted(set(x) & set(y))
    if len(both) < MIN_COMPARED or any(not _same(x[name], y[name]) for name in both):
        return None
    return both


def compare(behaviours: dict[str, dict[str, dict]], common: int = COMMON,
            background: dict[str, dict[str, dict]] | None = None) -> Comparison:
    """Every pair that behaved alike and, in RARE_CHECKS checks or more, in a way that
    none of the `background` solutions did and at most `common` submissions of the class
    did. Pairs are compared only within a bucket of the same exact values (independent
    solutions rarely share them), so a class of hundreds costs little."""
    prepared = {student: _prepared(kept) for student, kept in behaviours.items()}
    pairs = _alike_pairs(behaviours, prepared)
    result = Comparison(kept=len(behaviours))
    known = {name: _prepared(portable(kept)) for name, kept in (background or {}).items()}
    result.background_met = _met(known, prepared)
    held: dict[tuple[str, str], bool] = {}
    ring_of = {student: {student} for student in behaviours}
    for members in groups(pairs):
        for student in members:
            ring_of[student] = set(members)
    portable_names = {student: set(portable(kept)) for student, kept in behaviours.items()}

    def rare(student: str, name: str) -> bool:
        """Whether the student's value of this behaviour is its own: not a degenerate
        value, shown by none of the kit's solutions and by at most `common` submissions."""
        if (student, name) not in held:
            mine = prepared[student][name]
            ring = ring_of[student]
            # what depends on the batch's seed cannot be held against the kit's solutions:
            # it must agree, but is never a pair's own (the pipeline's order follows its
            # ops, which are). The submissions that ran alike with this one in everything
            # count once: copies of one program are one witness that a value is common,
            # not three (more of them than `common` are a crowd, and count each)
            held[(student, name)] = (
                name in portable_names[student] and not _degenerate(mine) and len(ring) <= common
                and not any(name in theirs and _same(mine, theirs[name]) for theirs in known.values())
                and 1 + sum(other not in ring and name in prepared[other]
                            and _same(mine, prepared[other][name]) for other in prepared) <= common)
        return held[(student, name)]

    explained: dict[tuple[str, str], list[str]] = {}
    for (a, b), agreed in sorted(pairs.items()):
        checks = sorted({name.split(": ", 1)[0] for name in agreed if rare(a, name)})
        if len(checks) >= RARE_CHECKS:
            result.alike.append(Alike(a, b, agreed, checks))
        else:
            explained[(a, b)] = checks
    for members in groups(explained):
        result.idioms.append(members)
    return result


def _alike_pairs(behaviours: dict, prepared: dict) -> dict[tuple[str, str], list[str]]:
    """{(a, b): the behaviours both kept} of every pair that behaved alike."""
    buckets: dict[tuple, list[str]] = {}
    for student in sorted(behaviours):
        signature = tuple(sorted((name, _key(spec)) for name, spec in behaviours[student].items()))
        buckets.setdefault(signature, []).append(student)
    # submissions that kept different sets of behaviours (one item failed) may still be
    # alike on what both kept: two buckets are compared when the exact values they share
    # agree
    keys = list(buckets)
    pairs: dict[tuple[str, str], list[str]] = {}
    for i, first in enumerate(keys):
        for second in keys[i:]:
            if first is not second:
                a, b = dict(first), dict(second)
                shared = set(a) & set(b)
                if len(shared) < MIN_COMPARED or any(a[n] != b[n] for n in shared):
                    continue
                candidates = [(x, y) for x in buckets[first] for y in buckets[second]]
            else:
                members = buckets[first]
                candidates = [(x, y) for k, x in enumerate(members) for y in members[k + 1:]]
            for x, y in candidates:
                agreed = _alike(prepared[x], prepared[y])
                if agreed is not None:
                    pairs[tuple(sorted((x, y)))] = agreed
    return pairs


def _degenerate(spec: tuple) -> bool:
    """A value that tells nothing of who wrote the code: numbers all equal (logits that
    never moved from zero, a diverged run's), an empty value."""
    import numpy as np

    if spec[0] == "n":
        return spec[1].size == 0 or bool(np.all(spec[1] == spec[1].flat[0]))
    return spec[1] in ("[]", "{}", '""', "null")


def _met(background: dict, behaviours: dict, most: int = 20) -> bool:
    """Whether some submission agrees with some of the kit's solutions in a behaviour
    whose numbers differ between the kit's own solutions (numbers that follow the
    choices made, so only the setting they were graded in can make them agree)."""
    varied = set()
    names = {name for theirs in background.values() for name, spec in theirs.items() if spec[0] == "n"}
    for name in names:
        values = [theirs[name] for theirs in background.values() if name in theirs]
        if any(not _same(values[0], other) for other in values[1:]):
            varied.add(name)
    for mine in list(behaviours.values())[:most]:
        for theirs in background.values():
            if any(name in theirs and name in mine and _same(mine[name], theirs[name]) for name in varied):
                return True
    return False


def groups(pairs) -> list[list[str]]:
    """The submissions joined by `pairs` ((a, b), ...), largest group first."""
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for a, b in pairs:
        parent[root(a)] = root(b)
    members: dict[str, list[str]] = {}
    for name in list(parent):
        members.setdefault(root(name), []).append(name)
    return sorted((sorted(m) for m in members.values()), key=lambda m: (-len(m), m))


def shown_values(spec: dict, most: int = 8) -> str:
    """A behaviour's first values, for a person to compare side by side."""
    if "numbers" in spec:
        numbers = spec["numbers"]
        text = ", ".join(f"{v:.6g}" for v in numbers[:most])
        return f"[{text}{', ...' if len(numbers) > most else ''}] ({len(numbers)} numbers)"
    text = json.dumps(spec["value"], sort_keys=True)
    return text if len(text) <= 160 else text[:157] + "..."
