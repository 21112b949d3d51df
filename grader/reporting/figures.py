"""The class report's figures (matplotlib, Agg), drawn from `numbers.gather`'s numbers.
"""
from __future__ import annotations

import io
import textwrap
import warnings

from ..records.gradebook import GRADED, NEEDS_REVIEW, TO_GRADE
from ..names import shown
from .numbers import COLORS, DPI


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


def png(figure) -> bytes:
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

