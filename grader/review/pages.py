"""What the review's pages show of a submission: its answers' Markdown and images, its
training curves and held-out accuracy as inline SVG, and what changed in an answer.
"""
from __future__ import annotations

import math
import re

from markupsafe import Markup, escape




MAX_CURVE_POINTS = 600
IMAGE_MIMES = ("image/png", "image/jpeg")
BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")

# --- Markdown: students' answers and the rubric's prompts --------------------------------

TAGS = {"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s", "code",
        "pre", "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td"}
ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
URL_SCHEMES = {"http", "https", "mailto"}
_markdown = None


def render_markdown(text: str) -> Markup:
    """`text` (Markdown nobody vetted) as HTML safe to put in the page: raw HTML is shown
    as text, then nh3 keeps only TAGS and ATTRIBUTES and links to URL_SCHEMES (relative
    links and images are dropped; images are the template's business)."""
    global _markdown
    import nh3
    from markdown_it import MarkdownIt

    if _markdown is None:
        _markdown = MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"])
    html = _markdown.render(str(text))
    return Markup(nh3.clean(html, tags=TAGS, attributes=ATTRIBUTES, url_schemes=URL_SCHEMES,
                            url_relative="deny", link_rel="noopener noreferrer",
                            clean_content_tags={"script", "style"}, strip_comments=True))


def images_of(answer: dict | None) -> list[dict]:
    """The answer's images the template may show: PNG or JPEG, base64 only."""
    images = (answer or {}).get("images") or []
    return [i for i in images if isinstance(i, dict) and i.get("mime") in IMAGE_MIMES
            and isinstance(i.get("data"), str) and BASE64.fullmatch(i["data"])]


def redact(text: str, name: str) -> str:
    """`text` with `name` (a student's) blanked wherever it stands as a word, any case."""
    if not name:
        return text
    return re.sub(rf"(?<![A-Za-z0-9]){re.escape(name)}(?![A-Za-z0-9])", "[name hidden]", text,
                  flags=re.IGNORECASE)


# --- figures, drawn here as SVG ----------------------------------------------------------

def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def curve_points(raw) -> list[tuple[float, float]]:
    """[[step, value], ...] from a gradebook's details (written from the submission's own
    logs, so anything): finite pairs only, at most MAX_CURVE_POINTS (evenly thinned)."""
    points = []
    for pair in raw[:100_000] if isinstance(raw, list) else []:
        if isinstance(pair, (list, tuple)) and len(pair) == 2:
            x, y = _number(pair[0]), _number(pair[1])
            if x is not None and y is not None:
                points.append((x, y))
    if len(points) > MAX_CURVE_POINTS:
        stride = math.ceil(len(points) / MAX_CURVE_POINTS)
        points = points[::stride] + ([points[-1]] if (len(points) - 1) % stride else [])
    return points


def _g(value: float) -> str:
    return f"{value:.3g}"


def _span(low: float, high: float, pad: float) -> tuple[float, float]:
    """low..high widened by `pad` each way when it is a single value (by more when the value
    is so large that adding `pad` would change nothing: a step of 2**60, a loss of 1e17)."""
    if high == low:
        pad = max(pad, abs(low) * 1e-3)
        low, high = low - pad, high + pad
    return low, high


def curve_svg(raw, label: str, width: int = 420, height: int = 200) -> Markup | None:
    """A line chart of one curve (loss, accuracy) as inline SVG, None without a point."""
    points = curve_points(raw)
    if not points:
        return None
    left, right, top, bottom = 52, 14, 26, 34
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = _span(min(xs), max(xs), 1.0)
    y0, y1 = _span(min(ys), max(ys), 0.5)
    if not all(math.isfinite(d) and d > 0 for d in (x1 - x0, y1 - y0)):
        return None
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x):
        return left + (x - x0) / (x1 - x0) * plot_w

    def py(y):
        return top + (y1 - y) / (y1 - y0) * plot_h

    line = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
    first, last = points[0], points[-1]
    name = escape(label)
    summary = escape(f"{label}: {len(points)} points, {_g(first[1])} at step {_g(first[0])}, "
                     f"{_g(last[1])} at step {_g(last[0])}")
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="{summary}"><title>{summary}</title>']
    for value in (y0, (y0 + y1) / 2, y1):
        y = py(value)
        parts.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}"/>'
                     f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{escape(_g(value))}</text>')
    parts.append(f'<line class="axis" x1="{left}" y1="{top + plot_h}" x2="{width - right}" '
                 f'y2="{top + plot_h}"/>')
    for value, anchor in ((x0, "start"), (x1, "end")):
        parts.append(f'<text class="tick" x="{px(value):.1f}" y="{top + plot_h + 16}" '
                     f'text-anchor="{anchor}">{escape(_g(value))}</text>')
    parts.append(f'<text class="axis-label" x="{left + plot_w / 2:.1f}" y="{height - 4}" '
                 f'text-anchor="middle">step</text>')
    parts.append(f'<polyline class="curve curve-{escape(re.sub(r"[^a-z0-9_-]", "", label.lower()))}" '
                 f'points="{line}"/>')
    parts.append(f'<circle class="last" cx="{px(last[0]):.1f}" cy="{py(last[1]):.1f}" r="3"/>')
    parts.append(f'<text class="chart-title" x="{left}" y="14">{name}</text></svg>')
    return Markup("".join(parts))


def accuracy_svg(details: dict, width: int = 420, height: int = 50) -> Markup | None:
    """The held-out accuracy on a 0..1 bar, the band from no points (lower) to full points
    (upper) shaded; None when the details do not hold three numbers."""
    if not isinstance(details, dict):
        return None
    accuracy, lower, upper = (_number(details.get(k)) for k in ("accuracy", "lower", "upper"))
    if accuracy is None or lower is None or upper is None:
        return None
    left, right = 10, 10

    def px(v):
        return left + min(max(v, 0.0), 1.0) * (width - left - right)

    summary = escape(f"accuracy {accuracy:.3f}; no points at {lower:g} or below, "
                     f"full points at {upper:g} or above")
    return Markup(
        f'<svg class="gauge" viewBox="0 0 {width} {height}" role="img" aria-label="{summary}">'
        f'<title>{summary}</title>'
        f'<rect class="track" x="{left}" y="10" width="{width - left - right}" height="14"/>'
        f'<rect class="band" x="{px(lower):.1f}" y="10" width="{max(px(upper) - px(lower), 0):.1f}" height="14"/>'
        f'<line class="marker" x1="{px(accuracy):.1f}" y1="4" x2="{px(accuracy):.1f}" y2="30"/>'
        f'<text class="tick" x="{left}" y="{height - 6}">0</text>'
        f'<text class="tick" x="{px(lower):.1f}" y="{height - 6}" text-anchor="middle">{lower:g}</text>'
        f'<text class="tick" x="{px(upper):.1f}" y="{height - 6}" text-anchor="middle">{upper:g}</text>'
        f'<text class="tick" x="{width - right}" y="{height - 6}" text-anchor="end">1</text></svg>')


# --- the class list: rows, filters, order -------------------------------------------------

def answer_diff(before: str, now: str, context: int = 2) -> list[tuple[str, str]]:
    """The answer as graded against the answer now, line by line: [(kind, line)] with kind
    "del" (only in the graded one), "add" (only in the new one), "same" (context) or
    "skip" (unchanged lines left out). Shown escaped, never rendered."""
    import difflib

    old_lines, new_lines = before.splitlines(), now.splitlines()
    rows: list[tuple[str, str]] = []
    for group in difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False).get_grouped_opcodes(context):
        if rows:
            rows.append(("skip", "..."))
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                rows += [("same", "  " + line) for line in old_lines[i1:i2]]
            else:
                rows += [("del", "- " + line) for line in old_lines[i1:i2]]
                rows += [("add", "+ " + line) for line in new_lines[j1:j2]]
    return rows


