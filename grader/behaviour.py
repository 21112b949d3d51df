"""Which submissions of a batch behaved alike when graded, for `grader similarity`.

Every submission is graded under the same seeds, batches and probe images, and each
check keeps a little of what the run did in its item's details, under "behaviour": numbers
(logits after training, the losses the run logged) or values (the pipeline's order and
ops, the checkpoint's keys and steps, the TensorBoard tags and the steps they were written
at). A copy does what its original does however its code was rewritten: renaming, another
model style, `fit` for a hand-written loop, comprehensions for loops leave every number the
same to the last digits. Independent solutions differ somewhere: measured on the kit's
own correct solutions, every pair differs in at least one behaviour (the README gives the
figures).

Two submissions behave alike when they kept at least MIN_COMPARED behaviours in common
and every one of them agrees: numbers within TOLERANCE of their scale, other values
exactly. What the skeleton pins (the loss, Adam at its learning rate, the logging code it
gives), honest students share: two of the kit's own 91 pairs of independent solutions
behave alike in every check, each pair a solution that follows the skeleton to the letter.
So, as for code, a behaviour is an idiom and counts for no one when IDIOM or more of the
kit's own independent solutions show it (the background, graded once in the shipped
setting: tests/corpus/behaviour.json), or the reference solution alone does (the
skeleton is made from it, so behaving as it does is following the skeleton), or more
than COMMON submissions of the class do.
Such groups are named in a notice, not reported. Nothing here reads code, runs anything
or changes a score.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

TOLERANCE = 1e-5
"""numbers agree when they differ by at most this share of their scale (the larger
absolute value, at least 1). Copies agree exactly at the six digits kept; Adam and AdamW at
the same learning rate differ by 3e-5 of it after the training item's steps."""
MIN_COMPARED = 6
"""behaviours two submissions must both have kept to be compared at all (a submission
whose checks mostly failed has kept few, and agreeing on two says little); of the 9 the
transfer-learning checks keep, 8 do not depend on the batch's private seed"""
COMMON = 3
"""a behaviour more than this many submissions show whole is an idiom of the class (the
skeleton followed to the letter): a ring of more copies than this is named, not reported"""
IDIOM = 2
"""a behaviour this many of the kit's own independent solutions show is an idiom"""


@dataclass
class Alike:
    """Two submissions that behaved alike, with what agreed."""
    a: str
    b: str
    agreed: list[str]
    """the behaviours compared, all of which agreed ("training: logits", ...)"""
    group: int
    """how many submissions of the class behave this way (2: these two alone)"""


@dataclass
class Comparison:
    alike: list[Alike] = field(default_factory=list)
    idioms: list[list[str]] = field(default_factory=list)
    """groups of more than COMMON submissions that behave alike (not reported)"""
    as_background: list[tuple[list[str], list[str]]] = field(default_factory=list)
    """(submissions, the kit's solutions) that behave alike, IDIOM or more of the latter:
    the behaviour honest work converges on (not reported)"""
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
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec["numbers"])
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
    if ("numbers" in first) != ("numbers" in second):
        return False
    if "numbers" not in first:
        return _key(first) == _key(second)
    x, y = first["numbers"], second["numbers"]
    if len(x) != len(y):
        return False
    scale = max([1.0, *map(abs, x), *map(abs, y)])
    return all(abs(a - b) <= TOLERANCE * scale for a, b in zip(x, y))


def _alike(x: dict, y: dict) -> list[str] | None:
    both = sorted(set(x) & set(y))
    if len(both) < MIN_COMPARED or any(not agree(x[name], y[name]) for name in both):
        return None
    return both


def compare(behaviours: dict[str, dict[str, dict]], common: int = COMMON,
            background: dict[str, dict[str, dict]] | None = None,
            given: frozenset[str] = frozenset()) -> Comparison:
    """Every pair that behaved alike in a group of at most `common`, and as fewer than
    IDIOM of the `background` solutions and none of those named in `given` (the solution
    the skeleton was made from: behaving as it does is following the skeleton). Pairs
    are compared only within a bucket of the same exact values (independent solutions
    rarely share them), so a class of hundreds costs little."""
    buckets: dict[tuple, list[str]] = {}
    for student in sorted(behaviours):
        kept = behaviours[student]
        signature = tuple(sorted((name, _key(spec)) for name, spec in kept.items()))
        buckets.setdefault(signature, []).append(student)
    # submissions that kept different sets of behaviours (one item failed) may still be
    # alike on what both kept: buckets are merged by what they share, below, only when
    # their common behaviours' exact values agree
    keys = list(buckets)
    pairs: dict[tuple[str, str], list[str]] = {}
    for i, first in enumerate(keys):
        for second in keys[i:]:
            if first is not second:
                a, b = dict(first), dict(second)
                shared = set(a) & set(b)
                if len(shared) < MIN_COMPARED or any(a[n] != b[n] for n in shared):
                    continue
            members = buckets[first] if first is second else None
            group_pairs = ([(x, y) for k, x in enumerate(members) for y in members[k + 1:]]
                           if members is not None else
                           [(x, y) for x in buckets[first] for y in buckets[second]])
            for x, y in group_pairs:
                agreed = _alike(behaviours[x], behaviours[y])
                if agreed is not None:
                    pairs[tuple(sorted((x, y)))] = agreed
    groups = _groups(pairs)
    result = Comparison(kept=len(behaviours))
    background = {name: portable(kept) for name, kept in (background or {}).items()}
    result.background_met = _met(background, behaviours)
    converged = set()
    for members in groups:
        like = sorted(name for name, theirs in background.items()
                      if _alike(portable(behaviours[members[0]]), theirs) is not None)
        if len(like) >= IDIOM or set(like) & given:
            result.as_background.append((members, like))
            converged.update(members)
        elif len(members) > common:
            result.idioms.append(members)
    size = {m: len(g) for g in groups for m in g}
    for (a, b), agreed in sorted(pairs.items()):
        if size[a] <= common and a not in converged:
            result.alike.append(Alike(a, b, agreed, size[a]))
    return result


def _met(background: dict, behaviours: dict, most: int = 20) -> bool:
    """Whether any of (at most `most` of) the submissions agrees with any of the kit's
    solutions in any behaviour: in the setting the background was graded in, the
    preprocessing alone of any correct submission does."""
    for mine in list(behaviours.values())[:most]:
        for theirs in background.values():
            if any(name in theirs and agree(spec, theirs[name]) for name, spec in mine.items()):
                return True
    return False


def _groups(pairs) -> list[list[str]]:
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
