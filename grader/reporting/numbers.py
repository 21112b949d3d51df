"""The numbers of a class report, read from a gradebook: totals, items, the commonest
feedback, held-out accuracies, time, flags and manual grading.
"""
from __future__ import annotations

import json
import math
import re
import statistics
from collections import Counter, defaultdict

from ..engine import FLAG_KINDS
from ..records.gradebook import FLAG_MEANINGS, GRADED, MANUAL_STATUSES, NEEDS_REVIEW, TO_GRADE


FIGURES = ("scores", "items", "feedback", "accuracy", "time", "flags", "manual")
"""The figures, each written as NAME.png, in the order of the page."""
TOP_PER_ITEM = 5  # messages per item in the page's table
TOP_OVERALL = 10  # messages in the feedback figure
MESSAGE_CHARS = 120  # a normalised message is cut there
EXAMPLE_CHARS = 300  # an example message in the page is cut there
NOT_FEEDBACK = {"all good", ""}
DPI = 100
COLORS = {"bars": "#4c72b0", "second": "#dd8452", "mean": "#222222", "median": "#8c564b",
          "lower": "#d62728", "upper": "#2ca02c", TO_GRADE: "#bbbbbb", NEEDS_REVIEW: "#ff7f0e",
          GRADED: "#2ca02c", "flags": "#c44e52", "note": "#555555"}
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
FULL = 1e-9  # a score this close to the item's points is full marks

# --- the numbers -----------------------------------------------------------------------

def normalised(message: str) -> str:
    """A feedback message with what varies per student taken out: numbers as '#',
    whitespace collapsed, cut to MESSAGE_CHARS."""
    text = " ".join(NUMBER.sub("#", message).split())
    return text if len(text) <= MESSAGE_CHARS else text[:MESSAGE_CHARS - 3] + "..."


def _mean(values):
    return sum(values) / len(values) if values else None


def _accuracy_details(details) -> tuple[float, float, float] | None:
    """(accuracy, lower, upper) of an item's details, or None when it has none."""
    if not isinstance(details, dict) or not {"accuracy", "lower", "upper"} <= details.keys():
        return None
    try:
        values = tuple(float(details[k]) for k in ("accuracy", "lower", "upper"))
    except (TypeError, ValueError):
        return None
    return values if all(math.isfinite(v) for v in values) else None


def gather(book) -> dict:
    """Everything the report shows, computed from the gradebook."""
    rows = book.submissions()
    students = [r["student"] for r in rows]
    results = {s: {i["item"]: i for i in book.items(s)} for s in students}
    rubric_items = json.loads(book.get_meta("rubric_items") or "[]")
    order = [i["id"] for i in rubric_items]
    points = {i["id"]: float(i["points"]) for i in rubric_items}
    titles = {i["id"]: i["title"] for i in rubric_items}
    for student in students:  # items graded under another rubric than the last one recorded
        for item, result in results[student].items():
            if item not in points:
                order.append(item)
                points[item], titles[item] = float(result["max_score"]), result["title"]
    manual_items = book.manual_items()
    manual_ids = [m["id"] for m in manual_items]
    given = [m for m in book.manual() if m["student"] in results and m["item"] in manual_ids]
    manual_sum = defaultdict(float)
    for m in given:
        manual_sum[m["student"]] += m["score"]

    counts = {status: sum(r["status"] == status for r in rows)
              for status in ("graded", "failed", "timed_out")}
    auto_max = max((r["max_score"] for r in rows), default=sum(points.values()))
    max_total = auto_max + sum(float(m["points"]) for m in manual_items)
    totals = {r["student"]: round(r["score"] + manual_sum[r["student"]], 4) for r in rows}

    items = []
    for item in order:
        scores = [results[s][item]["score"] if item in results[s] else 0.0 for s in students]
        items.append(_item_stats(item, titles[item], points[item], False, scores))
    for m in manual_items:
        scores = [g["score"] for g in given if g["item"] == m["id"]]
        items.append(_item_stats(m["id"], m["title"], float(m["points"]), True, scores))

    return {"title": book.get_meta("title") or "Exercise", "submissions": len(rows),
            "counts": counts, "auto_max": auto_max, "max_total": max_total, "totals": totals,
            "mean_total": _mean(list(totals.values())),
            "median_total": statistics.median(totals.values()) if totals else None,
            "items": items,
            "failed": [{"student": r["student"], "status": r["status"], "message": r["message"]}
                       for r in rows if r["status"] != "graded"],
            **_messages(rows, results, order),
            "accuracy": _accuracies(students, results, order),
            "seconds": _seconds(rows),
            **_flags(book, set(students)),
            "manual": _manual(book, students, manual_items, given)}


def _item_stats(item: str, title: str, points: float, manual: bool, scores: list[float]) -> dict:
    """Pass rate (share at full marks) and mean score as a share of the points, over
    `scores`: every submission for an autograded item, the grades given for a manual one."""
    full = [s >= points - FULL for s in scores]
    mean = _mean(scores)
    return {"id": item, "title": title, "points": points, "manual": manual, "n": len(scores),
            "pass_rate": _mean(full),
            "mean_score": mean,
            "mean_fraction": None if mean is None else mean / points if points > 0 else 1.0}


def _messages(rows: list[dict], results: dict, order: list[str]) -> dict:
    """The feedback of the items that lost points, grouped by normalised message: per item
    (most common first) and the most common overall. A submission that could not be read
    is left out (its own message says why; its items say nothing more)."""
    groups: dict[str, dict[str, dict]] = {item: {} for item in order}
    for row in rows:
        if row["status"] == "failed":
            continue
        for item, result in results[row["student"]].items():
            message = " ".join(str(result["message"]).split())
            if result["score"] >= result["max_score"] - FULL or message.lower() in NOT_FEEDBACK:
                continue
            key = normalised(message)
            group = groups.setdefault(item, {}).setdefault(
                key, {"item": item, "message": key, "count": 0, "example": message[:EXAMPLE_CHARS]
                      + ("..." if len(message) > EXAMPLE_CHARS else "")})
            group["count"] += 1
    rank = {item: n for n, item in enumerate(groups)}
    per_item = {item: sorted(g.values(), key=lambda g: (-g["count"], g["message"]))
                for item, g in groups.items()}
    overall = sorted((g for gs in per_item.values() for g in gs),
                     key=lambda g: (-g["count"], rank[g["item"]], g["message"]))
    return {"messages": {item: gs for item, gs in per_item.items() if gs},
            "top_messages": overall[:TOP_OVERALL]}


def _accuracies(students: list[str], results: dict, order: list[str]) -> dict:
    """{item: accuracies, bounds and how many fell below, between and above them} of the
    items whose details hold a held-out accuracy with its bounds."""
    found = {}
    for item in order:
        measured = [(s, a) for s in students if item in results[s]
                    for a in [_accuracy_details(results[s][item]["details"])] if a]
        if not measured:
            continue
        values = [a for _, (a, _, _) in measured]
        lower, upper = Counter((lo, up) for _, (_, lo, up) in measured).most_common(1)[0][0]
        found[item] = {"values": values, "students": [s for s, _ in measured],
                       "lower": lower, "upper": upper, "mean": _mean(values),
                       "below": sum(v <= lower for v in values),
                       "above": sum(v >= upper for v in values),
                       "between": sum(lower < v < upper for v in values)}
    return found


def _seconds(rows: list[dict]) -> dict:
    values = [float(r["seconds"]) for r in rows]
    slowest = sorted(rows, key=lambda r: (-r["seconds"], r["student"]))[:5]
    return {"values": values, "mean": _mean(values),
            "median": statistics.median(values) if values else None,
            "max": max(values, default=None), "total": sum(values),
            "slowest": [{"student": r["student"], "seconds": r["seconds"]} for r in slowest]}


def _flags(book, students: set[str]) -> dict:
    """Flags by kind (engine.FLAG_KINDS order, then others, then `similar` pairs)."""
    flags = [f for f in book.flags() if f["student"] in students]
    pairs = {}
    evidence = {}
    for s in book.similar():  # each pair is recorded both ways
        if s["student"] in students and s["other"] in students:
            pairs[tuple(sorted((s["student"], s["other"])))] = s["score"]
            evidence[tuple(sorted((s["student"], s["other"])))] = s.get("evidence") or f"{s['score']:.2f}"
    kinds = [k for k in FLAG_KINDS if any(f["kind"] == k for f in flags)]
    kinds += sorted({f["kind"] for f in flags} - set(kinds))
    by_kind = {k: {"flags": sum(f["kind"] == k for f in flags),
                   "submissions": len({f["student"] for f in flags if f["kind"] == k}),
                   "description": FLAG_MEANINGS.get(k, "")} for k in kinds}
    if pairs:
        by_kind["similar"] = {"flags": len(pairs), "submissions": len({s for p in pairs for s in p}),
                              "description": FLAG_MEANINGS["similar"]}
    return {"flags": by_kind, "flag_list": flags,
            "similar": [{"a": a, "b": b, "score": score, "evidence": evidence[(a, b)]}
                        for (a, b), score in sorted(pairs.items(), key=lambda p: (-p[1], p[0]))],
            "flagged": sorted({f["student"] for f in flags} | {s for p in pairs for s in p})}


def _manual(book, students: list[str], manual_items: list[dict], given: list[dict]) -> dict:
    """{item: {to grade, needs review, graded: counts; mean: of the grades given}}."""
    progress = {m["id"]: {status: 0 for status in MANUAL_STATUSES} for m in manual_items}
    for student in students:
        for item, status in book.manual_status(student).items():
            if item in progress:
                progress[item][status] += 1
    for m in manual_items:
        scores = [g["score"] for g in given if g["item"] == m["id"]]
        progress[m["id"]].update(title=m["title"], points=float(m["points"]), given=len(scores),
                                 mean=_mean(scores))
    return progress


# --- the figures -----------------------------------------------------------------------

