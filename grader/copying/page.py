"""The similarity page: the reported pairs side by side, the shared code highlighted,
what their runs kept and their logged losses overlaid (templates/similarity.html)."""
from __future__ import annotations

from pathlib import Path

from ..names import shown, shown_text
from . import behaviour
from .code import Result

TEMPLATES = Path(__file__).resolve().parents[1] / "templates"


def _highlighted(text: str, spans: list[tuple[int, int]]):
    """`text` as HTML, the shared regions in <mark>: every character of it escaped, and
    every unprintable one but line breaks and tabs spelled out (`_code_shown`)."""
    from markupsafe import Markup, escape

    out, at = [], 0
    for start, end in sorted(spans):
        start, end = max(start, at), max(end, at)
        out.append(escape(shown_text(text[at:start])))
        out.append(Markup("<mark>") + escape(shown_text(text[start:end])) + Markup("</mark>"))
        at = end
    out.append(escape(shown_text(text[at:])))
    return Markup("").join(out)


def _page_value(value):
    """What the page shows of a `{{ value }}`: the code views as built (`_highlighted`),
    any other text (a student's name, a note, a group, a path, a notice) as one printable
    line (`names.shown`): a right-to-left override in a name cannot make it read as
    another student's."""
    from markupsafe import Markup

    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    return shown(value)


def _curves_svg(first: list, second: list, labels: tuple[str, str], width: int = 420,
                height: int = 120):
    """The losses two submissions logged, overlaid (the second dashed): equal runs draw one
    line. None when neither logged any."""
    from markupsafe import Markup, escape

    values = [v for v in (*first, *second) if isinstance(v, (int, float))]
    if not values:
        return None
    low, high = min(values), max(values)
    span = (high - low) or 1.0

    def line(points, style):
        if len(points) < 2:
            return ""
        step = (width - 20) / (len(points) - 1)
        xy = " ".join(f"{10 + k * step:.1f},{height - 10 - (v - low) / span * (height - 20):.1f}"
                      for k, v in enumerate(points))
        return f'<polyline fill="none" stroke-width="2" {style} points="{xy}"/>'

    blue = line(first, 'stroke="#1565c0"')
    orange = line(second, 'stroke="#e65100" stroke-dasharray="6 4"')
    return Markup(f'<svg width="{width}" height="{height}" role="img" aria-label="losses logged">'
                  f'{blue}{orange}</svg>') + Markup("<p>Losses logged: ") + escape(shown(labels[0])) \
        + Markup(" (blue), ") + escape(shown(labels[1])) \
        + Markup(f" (orange, dashed), from {low:.4g} to {high:.4g}.</p>")


def render(result: Result, title: str) -> str:
    import jinja2

    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                     undefined=jinja2.StrictUndefined,
                                     finalize=_page_value)
    texts = {c.student: c.text for c in result.codes}
    views = [(_highlighted(texts.get(p.a, ""), p.slices[0] if p.slices else ()),
              _highlighted(texts.get(p.b, ""), p.slices[1] if p.slices else ()))
             for p in result.pairs]
    rows, curves = [], []
    for pair in result.pairs:
        kept_a, kept_b = (result.behaviours.get(pair.a, {}), result.behaviours.get(pair.b, {}))
        agreed = pair.behaviour.agreed if pair.behaviour is not None else []
        rows.append([(name, behaviour.shown_values(kept_a[name]), behaviour.shown_values(kept_b[name]))
                     for name in agreed if name in kept_a and name in kept_b])
        curves.append(_curves_svg(result.losses.get(pair.a, []), result.losses.get(pair.b, []),
                                  (pair.a, pair.b)) if pair.behaviour is not None else None)
    return environment.get_template("similarity.html").render(
        title=title, codes=result.codes, compared=result.compared, seconds=result.seconds,
        threshold=result.threshold, pairs=result.pairs, groups=result.groups, views=views,
        too_little=result.too_little, notes=[c for c in result.codes if c.note],
        notices=result.notices, behaviour_kept=len(result.behaviours),
        behaviour_common=behaviour.COMMON, rare_checks=behaviour.RARE_CHECKS,
        behaviour_rows=rows, curves=curves,
        nearest=result.nearest()[:30])


# --- the verb ---------------------------------------------------------------------------
