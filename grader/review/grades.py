"""A manual grade as the page's form sends it, checked before it is saved.
"""
from __future__ import annotations

import math
import re


from ..rubric import ManualItem



MAX_COMMENT = 20_000
LINE_INDEX = re.compile(r"[0-9]{1,4}")
class Invalid(Exception):
    """A form's value the server refuses (400): the message says what and why."""


def parse_grade(form, item: dict) -> dict:
    """The grade a form holds for a manual `item` (a gradebook manual_items entry),
    checked: {score, ticked, comment, version, digest}. Invalid says what is wrong. The
    score is the typed one when there is one, else the ticked lines' (module docstring)."""
    manual = ManualItem.from_dict(item)
    try:
        version = int(form.get("version", ""))
    except ValueError:
        version = -1
    if version < 0:
        raise Invalid("expected the form's version (a whole number); found none. Reload the page.")
    digest = form.get("digest", "")
    if len(digest) > 128:
        raise Invalid("expected the answer's digest as the page gave it; found another. Reload the page.")
    ticked = []
    for value in form.getlist("line"):
        if not LINE_INDEX.fullmatch(value) or int(value) >= len(manual.lines):
            raise Invalid(f"expected rubric lines 0 to {len(manual.lines) - 1} of {item['id']}; "
                          f"found line {value[:20]!r}. Reload the page.")
        ticked.append(int(value))
    text = form.get("score", "").strip()
    if text:
        try:
            score = float(text.replace(",", "."))
        except ValueError:
            score = math.nan
        if not (math.isfinite(score) and 0 <= score <= manual.points):
            raise Invalid(f"expected a score from 0 to {manual.points:g} for {item['title']}; "
                          f"found {text[:30]!r}. Type a number in that range.")
        score = round(score, 4)
    elif ticked:
        score = manual.score_of(ticked)
    else:
        raise Invalid(f"expected a score or a ticked rubric line for {item['title']}; found "
                      "neither. Type a score (0 counts) or tick a line.")
    comment = form.get("comment", "").replace("\r\n", "\n")
    if len(comment) > MAX_COMMENT:
        raise Invalid(f"expected a comment of at most {MAX_COMMENT} characters; found "
                      f"{len(comment)}. Shorten it.")
    return {"score": score, "ticked": sorted(set(ticked)), "comment": comment, "version": version,
            "digest": digest}


def _int(value, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


# --- serving -------------------------------------------------------------------------------

