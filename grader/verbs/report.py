"""`grader report OUT`: a class report of a batch, for the instructor.

Read from the gradebook only (nothing is graded or run): the distribution of the totals
(autograded score plus the manual grades given so far), each item's pass rate and mean
score, the most common feedback messages of the items that lost points, the held-out
accuracies against the rubric's bounds, the grading time, the integrity flags and the
progress of manual grading. One HTML file with every figure embedded (no scripts, no
external resources, every name and message from the gradebook escaped), the figures again
as PNG files, and a short summary in the terminal.

The report folder is written in a temporary folder beside it and moved into place at the
end: an error leaves the previous report, or nothing, never half of one.
"""
from __future__ import annotations

import base64
import io
import json
import math
import re
import statistics
import textwrap
import warnings
from collections import Counter, defaultdict
from pathlib import Path

from ..engine import FLAG_KINDS
from ..errors import KitError
from ..fsutil import atomic_path
from ..records.gradebook import FLAG_MEANINGS, GRADED, MANUAL_STATUSES, NEEDS_REVIEW, TO_GRADE, open_existing
from ..names import shown

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


HELP = "instructors: a one-file HTML report of a batch, with its figures as PNG files"


def add_arguments(parser) -> None:
    parser.add_argument("out", help="the --out folder of `grader batch`")
    parser.add_argument("--to", help="folder for report.html and the PNGs (default: OUT/report)")


def execute(args) -> None:
    main(args.out, dest=args.to)


def main(out: str, dest: str | None = None) -> dict:
    out = Path(out)
    book = open_existing(out)
    try:
        numbers = gather(book)
    finally:
        book.close()
    dest = Path(dest) if dest else out / "report"
    _check_dest(dest)
    numbers["html"] = str(dest / "report.html")
    numbers["figures"] = [f"{name}.png" for name in FIGURES]
    with atomic_path(dest) as tmp:
        tmp.mkdir(mode=0o700)  # grades and names: private, like the gradebook
        images = {}
        for name, figure in zip(FIGURES, draw(numbers)):
            data = _png(figure)
            (tmp / f"{name}.png").write_bytes(data)
            images[name] = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        (tmp / "report.html").write_text(render(numbers, images), encoding="utf-8")
    print(summary(numbers))
    return numbers


def _check_dest(dest: Path) -> None:
    """The report replaces `dest` as a whole: never a file, nor a folder of other things."""
    if dest.exists() and not dest.is_dir():
        raise KitError(f"{dest}: expected a folder for the report, found a file. Pass another "
                       "folder with --to.")
    if dest.is_dir():
        others = sorted(p.name for p in dest.iterdir()
                        if p.name != "report.html" and not (p.suffix == ".png" and p.is_file()))
        if others:
            raise KitError(f"{dest}: expected an empty folder or a previous report (it is replaced "
                           f"as a whole), found other files ({', '.join(others[:3])}). Pass a "
                           "new folder with --to.")


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

def _text(text: str, width: int = 60, lines: int = 2) -> str:
    """Untrusted text for a figure: one printable line wrapped, and no mathtext ($...$
    from a message would be parsed, and can fail)."""
    wrapped = textwrap.wrap(shown(text), width) or [""]
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        wrapped[-1] = wrapped[-1][:width - 3] + "..."
    return "\n".join(wrapped).replace("$", r"\$")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def _nothing(title: str, text: str):
    figure = _figure(8, 1.8)
    ax = figure.subplots()
    ax.set_axis_off()
    ax.set_title(title, fontsize=13)
    ax.text(0.5, 0.4, text, ha="center", va="center", transform=ax.transAxes,
            color=COLORS["note"], fontsize=12)
    return figure


def _integers(axis) -> None:
    from matplotlib.ticker import MaxNLocator

    axis.set_major_locator(MaxNLocator(integer=True))


def _percent(axis) -> None:
    from matplotlib.ticker import PercentFormatter

    axis.set_major_formatter(PercentFormatter(1.0))


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def draw(numbers: dict) -> list:
    """The figures, in FIGURES order (matplotlib, Agg: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    with warnings.catch_warnings():  # a glyph a message holds and the font lacks
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font")
        return [_scores(numbers), _items(numbers), _feedback(numbers), _accuracy(numbers),
                _time(numbers), _flag_figure(numbers), _manual_figure(numbers)]


def _scores(numbers: dict):
    title = "Total scores"
    totals = list(numbers["totals"].values())
    if not totals:
        return _nothing(title, "No submissions in the gradebook.")
    top = numbers["max_total"] or 1.0
    figure = _figure(8, 4.2)
    ax = figure.subplots()
    ax.hist(totals, bins=20, range=(0, top), color=COLORS["bars"], edgecolor="white")
    ax.axvline(numbers["mean_total"], color=COLORS["mean"], linestyle="--",
               label=f"mean {numbers['mean_total']:.1f}")
    ax.axvline(numbers["median_total"], color=COLORS["median"], linestyle=":",
               label=f"median {numbers['median_total']:.1f}")
    ax.set_xlim(0, top)
    ax.set_title(f"{title} of {len(totals)} submission(s)", fontsize=13)
    ax.set_xlabel(f"total (autograded + manual grades given so far), out of {numbers['max_total']:g}")
    ax.set_ylabel("submissions")
    _integers(ax.yaxis)
    ax.legend(loc="upper left")
    return figure


def _items(numbers: dict):
    from matplotlib.patches import Patch

    title = "Items: pass rate and mean score"
    items = numbers["items"]
    if not items:
        return _nothing(title, "No items in the rubric.")
    figure = _figure(9, 1.6 + 0.55 * len(items))
    ax = figure.subplots()
    labels = [f"{i['id']} (manual, {i['n']} graded)" if i["manual"] else i["id"] for i in items]
    for n, item in enumerate(items):
        if item["pass_rate"] is None:
            ax.text(0.01, n, "no grade given yet", va="center", color=COLORS["note"], fontsize=9)
            continue
        for offset, key, color in ((-0.2, "pass_rate", COLORS["bars"]),
                                   (0.2, "mean_fraction", COLORS["second"])):
            ax.barh(n + offset, item[key], height=0.38, color=color)
            ax.text(item[key] + 0.01, n + offset, f"{item[key]:.0%}", va="center", fontsize=8)
    ax.set_yticks(range(len(items)), [_text(label, 40) for label in labels])
    ax.set_ylim(len(items) - 0.5, -0.5)
    ax.set_xlim(0, 1.12)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    _percent(ax.xaxis)
    ax.set_xlabel("share of the submissions (manual items: of the grades given)")
    ax.set_title(title, fontsize=13)
    figure.legend(handles=[Patch(color=COLORS["bars"], label="pass rate (share at full marks)"),
                           Patch(color=COLORS["second"],
                                 label="mean score (share of the item's points)")],
                  loc="outside lower center", ncols=2, frameon=False)
    return figure


def _feedback(numbers: dict):
    title = "Most common feedback on the items that lost points"
    top = numbers["top_messages"]
    if not top:
        return _nothing(title, "No feedback: every item of every graded submission at full marks.")
    return _count_bars(title, [f"{g['item']}: {g['message']}" for g in top],
                       [g["count"] for g in top], [f" {g['count']}" for g in top],
                       "submissions (numbers in a message shown as #)", COLORS["bars"],
                       width=11, row=0.62, chars=70, room=1.12, fontsize=8.5)


def _count_bars(title: str, labels: list[str], counts: list[int], notes: list[str], xlabel: str,
                color: str, width: float, row: float, chars: int, room: float, fontsize=None):
    """A horizontal bar per label, largest first as given, each with its note at its end."""
    figure = _figure(width, 1.3 + row * len(labels))
    ax = figure.subplots()
    ax.barh(range(len(labels)), counts, color=color, height=0.6)
    for n, note in enumerate(notes):
        ax.text(counts[n], n, note, va="center", fontsize=9)
    ax.set_yticks(range(len(labels)), [_text(label, chars) for label in labels], fontsize=fontsize)
    ax.set_ylim(len(labels) - 0.5, -0.5)
    ax.set_xlim(0, max(counts) * room)
    _integers(ax.xaxis)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=13)
    return figure


def _accuracy(numbers: dict):
    title = "Held-out accuracy"
    found = numbers["accuracy"]
    if not found:
        return _nothing(title, "No item measured a held-out accuracy.")
    figure = _figure(8, 0.4 + 2.9 * len(found))
    axes = figure.subplots(len(found), 1, squeeze=False)[:, 0]
    for ax, (item, a) in zip(axes, found.items()):
        low = max(0.0, min(a["values"] + [a["lower"]]) - 0.05)
        high = min(1.0, max(a["values"] + [a["upper"]]) + 0.05)
        if high <= low:
            low, high = 0.0, 1.0
        ax.hist(a["values"], bins=40, range=(low, high), color=COLORS["bars"], edgecolor="white")
        ax.axvline(a["lower"], color=COLORS["lower"], linestyle="--",
                   label=f"no points at or below {a['lower']:.3g}")
        ax.axvline(a["upper"], color=COLORS["upper"], linestyle="--",
                   label=f"full points from {a['upper']:.3g}")
        ax.set_xlim(low, high)
        _integers(ax.yaxis)
        ax.set_title(_text(f"{item}: {len(a['values'])} submission(s), {a['below']} at or below, "
                           f"{a['between']} between, {a['above']} at or above the bounds", 90),
                     fontsize=11)
        ax.set_xlabel("accuracy on held-out images")
        ax.set_ylabel("submissions")
        ax.legend(loc="best", fontsize=8)
    return figure


def _time(numbers: dict):
    title = "Grading time per submission"
    seconds = numbers["seconds"]
    if not seconds["values"]:
        return _nothing(title, "No submissions in the gradebook.")
    figure = _figure(8, 3.8)
    ax = figure.subplots()
    top = max(seconds["max"], 1.0) * 1.02
    ax.hist(seconds["values"], bins=20, range=(0, top),
            color=COLORS["bars"], edgecolor="white")
    ax.axvline(seconds["median"], color=COLORS["median"], linestyle=":",
               label=f"median {seconds['median']:.1f} s")
    ax.set_xlim(0, top)
    _integers(ax.yaxis)
    ax.set_title(f"{title} (total {seconds['total'] / 60:.1f} min)", fontsize=13)
    ax.set_xlabel("seconds")
    ax.set_ylabel("submissions")
    ax.legend(loc="best")
    return figure


def _flag_figure(numbers: dict):
    title = "Integrity flags by kind"
    flags = numbers["flags"]
    if not flags:
        return _nothing(title, "No flags.")
    kinds = list(flags)
    counts = [flags[k]["submissions"] for k in kinds]
    notes = [f" {flags[k]['submissions']} submission(s), {flags[k]['flags']} "
             f"{'pair(s)' if k == 'similar' else 'flag(s)'}" for k in kinds]
    return _count_bars(title, kinds, counts, notes, "submissions flagged", COLORS["flags"],
                       width=8, row=0.5, chars=30, room=1.6)


def _manual_figure(numbers: dict):
    title = "Manual grading progress"
    manual = numbers["manual"]
    if not manual:
        return _nothing(title, "No manual items in this rubric.")
    figure = _figure(8, 1.7 + 0.5 * len(manual))
    ax = figure.subplots()
    ids = list(manual)
    left = [0] * len(ids)
    for status in (GRADED, NEEDS_REVIEW, TO_GRADE):
        counts = [manual[i][status] for i in ids]
        ax.barh(range(len(ids)), counts, left=left, height=0.6, color=COLORS[status], label=status)
        for n, count in enumerate(counts):
            if count:
                ax.text(left[n] + count / 2, n, str(count), ha="center", va="center", fontsize=9)
        left = [a + b for a, b in zip(left, counts)]
    ax.set_yticks(range(len(ids)), [_text(i, 30) for i in ids])
    ax.set_ylim(len(ids) - 0.5, -0.5)
    ax.set_xlim(0, max(max(left), 1))
    _integers(ax.xaxis)
    ax.set_xlabel("submissions")
    ax.set_title(title, fontsize=13)
    figure.legend(loc="outside lower center", ncols=3, frameon=False)
    return figure


# --- the page and the summary ----------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Report: {{ n.title }}</title>
<style>
body { font-family: sans-serif; max-width: 70em; margin: 1em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: .5em 0 1em; }
th, td { border: 1px solid #ccc; padding: .25em .5em; text-align: left; vertical-align: top; }
td.num { text-align: right; white-space: nowrap; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
.note { color: #555; }
.msg { font-family: monospace; font-size: 90%; word-break: break-word; }
</style></head><body>
<h1>Report: {{ n.title }}</h1>
<p>{{ n.submissions }} submission(s): {{ n.counts.graded }} graded, {{ n.counts.failed }} could not
be read, {{ n.counts.timed_out }} timed out.
{% if n.totals %}Total (autograded + manual grades given so far): mean {{ "%.1f"|format(n.mean_total) }},
median {{ "%.1f"|format(n.median_total) }}, out of {{ "%g"|format(n.max_total) }}
(autograded {{ "%g"|format(n.auto_max) }}).{% endif %}</p>

<h2 id="scores">Total scores</h2>
<img src="{{ images.scores }}" alt="histogram of the total scores">
{% if n.failed %}<h3>Not graded in full</h3>
<table><tr><th>submission</th><th>status</th><th>message</th></tr>
{% for f in n.failed %}<tr><td>{{ f.student|shown }}</td><td>{{ f.status }}</td>
<td class="msg">{{ f.message }}</td></tr>{% endfor %}</table>{% endif %}

<h2 id="items">Items</h2>
<p class="note">Pass rate: the share of the submissions at full marks (those that could not be read
count as 0); mean: the mean score as a share of the item's points. Manual items: over the grades
given so far.</p>
<img src="{{ images['items'] }}" alt="pass rate and mean score per item">
<table><tr><th>item</th><th>title</th><th>points</th><th>pass rate</th><th>mean score</th><th>over</th></tr>
{% for i in n['items'] %}<tr><td>{{ i.id }}{% if i.manual %} (manual){% endif %}</td><td>{{ i.title }}</td>
<td class="num">{{ "%g"|format(i.points) }}</td>
{% if i.pass_rate is none %}<td colspan="2" class="note">no grade given yet</td>
{% else %}<td class="num">{{ "%.0f%%"|format(100 * i.pass_rate) }}</td>
<td class="num">{{ "%.2f"|format(i.mean_score) }} ({{ "%.0f%%"|format(100 * i.mean_fraction) }})</td>{% endif %}
<td class="num">{{ i.n }}</td></tr>{% endfor %}</table>

<h2 id="feedback">Feedback</h2>
<p class="note">The messages of the items that lost points, grouped with their numbers replaced by #
(one example shown as given); submissions that could not be read are left out.</p>
<img src="{{ images.feedback }}" alt="most common feedback messages">
{% if n.messages %}<table><tr><th>item</th><th>submissions</th><th>message (normalised)</th><th>example</th></tr>
{% for item, groups in n.messages.items() %}{% for g in groups[:top] %}<tr>
{% if loop.first %}<td rowspan="{{ groups[:top]|length }}">{{ item }}{% if groups|length > top %}
<br><span class="note">{{ groups|length - top }} more</span>{% endif %}</td>{% endif %}
<td class="num">{{ g.count }}</td><td class="msg">{{ g.message }}</td><td class="msg">{{ g.example }}</td>
</tr>{% endfor %}{% endfor %}</table>{% else %}<p>No item lost points.</p>{% endif %}

<h2 id="accuracy">Held-out accuracy</h2>
<img src="{{ images.accuracy }}" alt="held-out accuracies with the rubric's bounds">
{% if n.accuracy %}<table><tr><th>item</th><th>submissions</th><th>mean</th><th>no points at or below</th>
<th>full points from</th><th>at or below</th><th>between</th><th>at or above</th></tr>
{% for item, a in n.accuracy.items() %}<tr><td>{{ item }}</td><td class="num">{{ a['values']|length }}</td>
<td class="num">{{ "%.3f"|format(a.mean) }}</td><td class="num">{{ "%.3g"|format(a.lower) }}</td>
<td class="num">{{ "%.3g"|format(a.upper) }}</td><td class="num">{{ a.below }}</td>
<td class="num">{{ a.between }}</td><td class="num">{{ a.above }}</td></tr>{% endfor %}</table>{% endif %}

<h2 id="time">Grading time</h2>
<img src="{{ images.time }}" alt="grading time per submission">
{% if n.seconds['values'] %}<p>Mean {{ "%.1f"|format(n.seconds.mean) }} s, median
{{ "%.1f"|format(n.seconds.median) }} s, longest {{ "%.1f"|format(n.seconds.max) }} s, total
{{ "%.1f"|format(n.seconds.total / 60) }} min. Slowest:
{% for s in n.seconds.slowest %}{{ s.student|shown }} ({{ "%.1f"|format(s.seconds) }} s){% if not loop.last %}, {% endif %}{% endfor %}.</p>{% endif %}

<h2 id="flags">Integrity flags</h2>
<p class="note">Advice for a person to review (grader flags OUT): a flag never changes a score by itself.</p>
<img src="{{ images.flags }}" alt="integrity flags by kind">
{% if n.flags %}<table><tr><th>kind</th><th>meaning</th><th>submissions</th><th>flags</th></tr>
{% for kind, f in n.flags.items() %}<tr><td>{{ kind }}</td><td>{{ f.description }}</td>
<td class="num">{{ f.submissions }}</td><td class="num">{{ f.flags }}{% if kind == "similar" %} pair(s){% endif %}</td></tr>{% endfor %}</table>
{% if n.flag_list %}<table><tr><th>submission</th><th>kind</th><th>detail</th></tr>
{% for f in n.flag_list %}<tr><td>{{ f.student|shown }}</td><td>{{ f.kind }}</td><td class="msg">{{ f.detail }}</td></tr>{% endfor %}</table>{% endif %}
{% if n.similar %}<table><tr><th>submission</th><th>submission</th><th>similarity</th></tr>
{% for p in n.similar %}<tr><td>{{ p.a|shown }}</td><td>{{ p.b|shown }}</td><td>{{ p.evidence|shown }}</td></tr>{% endfor %}</table>{% endif %}
{% else %}<p>No flags.</p>{% endif %}

<h2 id="manual">Manual grading</h2>
<img src="{{ images.manual }}" alt="manual grading progress">
{% if n.manual %}<table><tr><th>item</th><th>title</th><th>points</th><th>graded</th><th>needs review</th>
<th>to grade</th><th>mean score given</th></tr>
{% for item, m in n.manual.items() %}<tr><td>{{ item }}</td><td>{{ m.title }}</td>
<td class="num">{{ "%g"|format(m.points) }}</td><td class="num">{{ m["graded"] }}</td>
<td class="num">{{ m["needs review"] }}</td><td class="num">{{ m["to grade"] }}</td>
<td class="num">{% if m.mean is none %}-{% else %}{{ "%.2f"|format(m.mean) }} of {{ m.given }}{% endif %}</td></tr>
{% endfor %}</table>{% else %}<p>No manual items in this rubric.</p>{% endif %}
</body></html>
"""


def render(numbers: dict, images: dict[str, str]) -> str:
    """The page: every value from the gradebook escaped (autoescape), students' names as
    printable text (similarity.shown), images as data: URIs."""
    import jinja2

    environment = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    environment.filters["shown"] = shown  # a name as one printable line: no bidi override, no line break
    return environment.from_string(PAGE).render(n=numbers, images=images, top=TOP_PER_ITEM)


def summary(numbers: dict) -> str:
    """A few lines for the terminal."""
    counts = numbers["counts"]
    lines = [f"report of {numbers['submissions']} submission(s): graded {counts['graded']}, "
             f"failed {counts['failed']}, timed out {counts['timed_out']}"]
    if numbers["totals"]:
        lines.append(f"total: mean {numbers['mean_total']:.1f}, median {numbers['median_total']:.1f} "
                     f"/ {numbers['max_total']:g} (manual grades given so far included)")
    rated = sorted((i for i in numbers["items"] if i["pass_rate"] is not None and not i["manual"]),
                   key=lambda i: i["pass_rate"])[:3]
    if rated:
        lines.append("lowest pass rates: " + ", ".join(f"{i['id']} {i['pass_rate']:.0%}" for i in rated))
    flags = numbers["flags"]
    flag_count = sum(f["flags"] for k, f in flags.items() if k != "similar")
    lines.append(f"flags: {flag_count} flag(s), {len(numbers['flagged'])} submission(s) to review"
                 + (f", {flags['similar']['flags']} similar pair(s)" if "similar" in flags else "")
                 if flags else "flags: none")
    if numbers["manual"]:
        done = {s: sum(m[s] for m in numbers["manual"].values()) for s in MANUAL_STATUSES}
        lines.append(f"manual grading: {done[GRADED]} graded, {done[TO_GRADE]} to grade, "
                     f"{done[NEEDS_REVIEW]} need review")
    lines.append(f"report: {shown(numbers['html'])}")
    return "\n".join(lines)
