"""What batch grading hands out: a CSV of all students, per-student feedback, and
Gradescope results.json files. All are rebuilt from the gradebook."""
from __future__ import annotations

import csv
import io
import json

RELEASED_ALWAYS = {"visible"}


def shown(visibility: str, released: bool) -> bool:
    """May a student see this item now? Hidden items never; after_due_date and
    after_published ones once the grades are released."""
    return visibility in RELEASED_ALWAYS or (released and visibility in ("after_due_date", "after_published"))


def grades_csv(rows: list[dict], items_of, item_ids: list[str], flags_of=lambda s: []) -> str:
    """One row per student; `flags` lists the kinds of integrity flags raised, for review."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["student", *item_ids, "total", "max", "status", "flags"])
    for row in rows:
        scores = {i["item"]: i["score"] for i in items_of(row["student"])}
        kinds = sorted({f["kind"] for f in flags_of(row["student"])})
        writer.writerow([row["student"], *[f"{scores.get(i, 0):g}" for i in item_ids],
                         f"{row['score']:g}", f"{row['max_score']:g}", row["status"],
                         " ".join(kinds)])
    return buffer.getvalue()


def feedback_markdown(row: dict, items: list[dict], released: bool) -> str:
    visible = [i for i in items if shown(i["visibility"], released)]
    score = sum(i["score"] for i in visible)
    top = sum(i["max_score"] for i in visible)
    lines = [f"# Feedback for {row['student']}", ""]
    if row["message"]:
        lines += [f"**{row['message']}**", ""]
    lines += [f"Score shown: {score:g} / {top:g}", "", "| item | points | status | feedback |",
              "|---|---|---|---|"]
    for i in visible:
        message = i["message"].replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {i['title']} | {i['score']:g} / {i['max_score']:g} | {i['status']} | {message} |")
    notes = [n for n in (row.get("notes") or "").splitlines() if n]
    if notes:
        lines += ["", "Skipped when your notebook was imported (the rest was graded):", ""]
        lines += [f"- {n}" for n in notes]
    hidden = len(items) - len(visible)
    if hidden:
        lines += ["", f"{hidden} more item(s) will be shown when the grades are released."]
    return "\n".join(lines) + "\n"


def gradescope_results(row: dict, items: list[dict]) -> dict:
    """Gradescope's results.json: every item as a test with its own visibility."""
    status = {"passed": "passed"}
    output = row["message"] or f"graded with grader {row['grader_version']}"
    notes = [n for n in (row.get("notes") or "").splitlines() if n]
    if notes:
        output += "\nSkipped when your notebook was imported:\n" + "\n".join(notes)
    return {
        "score": row["score"],
        "execution_time": round(row["seconds"]),
        "output": output,
        "tests": [{"name": i["title"], "number": i["item"], "score": i["score"],
                   "max_score": i["max_score"], "status": status.get(i["status"], "failed"),
                   "output": f"{i['status']}: {i['message']}", "visibility": i["visibility"]}
                  for i in items],
    }


def results_json(row: dict, items: list[dict]) -> str:
    return json.dumps(gradescope_results(row, items), indent=2)
