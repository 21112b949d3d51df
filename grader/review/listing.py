"""The class list: its rows read from the gradebook, and the filters, search and sort of
the page's form.
"""
from __future__ import annotations

import hashlib


from ..records import exports
from ..records.gradebook import GRADED, NEEDS_REVIEW, TO_GRADE



MAX_QUERY = 200
SORTS = {"name": "name", "score": "autograded score, highest first",
         "low": "autograded score, lowest first", "manual": "manual grading, open first",
         "status": "status, problems first"}
MANUAL_FILTERS = {"": "any", "open": "to grade or needs review", "todo": "to grade",
                  "review": "needs review", "graded": "all graded"}
STATUS_FILTERS = {"": "any", "graded": "graded", "failed": "failed (could not be read)",
                  "timed_out": "timed out"}
LIST_KEYS = ("q", "manual", "flagged", "status", "sort")


def list_state(values) -> dict[str, str]:
    """The list's filter and sort from query or form values: known values only, defaults
    left out, so they go back into URLs as they are."""
    state = {}
    q = str(values.get("q") or "").strip()[:MAX_QUERY]
    if q:
        state["q"] = q
    for key, allowed in (("manual", MANUAL_FILTERS), ("status", STATUS_FILTERS), ("sort", SORTS)):
        value = values.get(key) or ""
        if value in allowed and value not in ("", "name"):
            state[key] = value
    if values.get("flagged") == "1":
        state["flagged"] = "1"
    return state


def class_rows(book) -> list[dict]:
    """One row per submission, by name: scores, manual statuses, flags, similar ones."""
    manual_items = book.manual_items()
    ids = [m["id"] for m in manual_items]
    statuses = book.manual_statuses()
    flags, similar, given = {}, {}, {}
    for flag in book.flags():
        flags.setdefault(flag["student"], set()).add(flag["kind"])
    for pair in book.similar():
        similar.setdefault(pair["student"], []).append(pair)
    for grade in book.manual():
        given.setdefault(grade["student"], {})[grade["item"]] = grade["score"]
    rows = []
    for sub in book.submissions():
        student = sub["student"]
        status = statuses.get(student, {i: TO_GRADE for i in ids})
        open_ = [s for s in status.values() if s != GRADED]
        badges = [(s.replace(" ", "-"), f"{open_.count(s)} {s}") for s in (NEEDS_REVIEW, TO_GRADE)
                  if s in open_] or ([("graded", "graded")] if ids else [])
        rows.append({
            "student": student, "score": sub["score"], "max_score": sub["max_score"],
            "status": sub["status"], "content_hash": sub["content_hash"], "manual": status,
            "summary": exports.manual_summary(open_) if ids else "", "badges": badges,
            "manual_score": sum(given.get(student, {}).values()),
            "manual_graded": len(given.get(student, {})),
            "manual_max": sum(m["points"] for m in manual_items),
            "flags": sorted(flags.get(student, ())), "similar": similar.get(student, [])})
    return rows


def _matches(row: dict, state: dict) -> bool:
    statuses = set(row["manual"].values())
    wanted = {"open": statuses & {TO_GRADE, NEEDS_REVIEW}, "todo": TO_GRADE in statuses,
              "review": NEEDS_REVIEW in statuses, "graded": statuses <= {GRADED}}
    if state.get("manual") and not wanted[state["manual"]]:
        return False
    if state.get("status") and row["status"] != state["status"]:
        return False
    if state.get("flagged") and not (row["flags"] or row["similar"]):
        return False
    q = state.get("q", "").lower()
    if q:
        text = " ".join([row["student"], *row["flags"], *(p["other"] for p in row["similar"])])
        return q in text.lower()
    return True


def select(rows: list[dict], state: dict, keep: str | None = None) -> list[dict]:
    """The rows the list shows for `state`, in its order; `keep`: a student kept even when
    the filter drops it (the one a page is on, just graded out of a "to grade" filter)."""
    shown = [r for r in rows if r["student"] == keep or _matches(r, state)]
    rank = {NEEDS_REVIEW: 0, TO_GRADE: 1, GRADED: 2}
    keys = {"name": lambda r: (r["student"],),
            "score": lambda r: (-r["score"], r["student"]),
            "low": lambda r: (r["score"], r["student"]),
            "manual": lambda r: (min((rank[s] for s in r["manual"].values()), default=2), r["student"]),
            "status": lambda r: (r["status"] == "graded", r["student"])}
    return sorted(shown, key=keys[state.get("sort", "name")])


def anonymous_order(rows: list[dict]) -> list[dict]:
    """The rows in an order that does not follow the names (nor reveal them): by a digest
    of each submission's content hash, the same on every start while the batch is."""
    def key(row):
        return hashlib.sha256(f"review-order\0{row['content_hash']}\0{row['student']}".encode()).hexdigest()
    return sorted(rows, key=key)


# --- the application ---------------------------------------------------------------------

