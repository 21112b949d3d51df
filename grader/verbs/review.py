"""`grader review OUT`: a local web page where TAs go through a batch and grade the
manual items (the written questions a person grades).

The page reads the gradebook `grader batch` left in OUT and shows:

- `/`: the class, with each submission's autograded score, where its manual grading
  stands (to grade, graded, needs review: graded, but the answer changed since), its
  integrity flags and the submissions `grader similarity` found it close to; filtered
  and sorted by query parameters (a plain GET form, so it works without JavaScript).
- `/s/STUDENT`: one submission: its autograded items and their feedback, its flags, the
  training curves of its own run (SVG drawn here, in Python), the held-out accuracy and
  its bounds, and each manual item: the prompt, the answer and a grading form. Previous
  and next follow the list's filter and sort (carried in the query string).
- `/q/ITEM?i=N`: one manual item across the class, submission after submission;
  `&anon=1` hides the names: submissions are numbered in an order drawn from their
  content, and the page (URLs and hidden fields included) names no one: forms name the
  submission by an opaque reference, and the student's name is blanked from the texts
  it shows (the answer, why it could not be read, a conflict's message).

Grading. A form carries the rubric lines as checkboxes, a score, a comment, and the
version and answer digest the page was loaded with. The score saved is the score field
when it holds a number (ticking lines fills it in with their sum kept within 0..points,
rubric.ManualItem.score_of, so a score typed after ticking wins), else the ticked lines'
score; a form with neither is refused, never saved as 0. The save keys save the form
holding the focus, else the one changed, else nothing. The server checks everything again: a score outside 0..points, or a line that
does not exist, is refused (400); a grade someone saved since the page was loaded is
never overwritten (gradebook.Conflict, 409). After each save grades.csv, feedback/,
gradescope/ and moodle.csv are rewritten (records.exports.write_all).

Security. Students' answers, names, feedback and flags are untrusted data. Markdown is
rendered by markdown-it-py with raw HTML off (a student's tags show as text) and cleaned
by nh3 (a short list of tags, links to http, https and mailto only); answer images are
put in <img src="data:..."> by the template, never by the student's Markdown; every other
text is escaped by Jinja, and names (file names, so anything) are shown as one printable
line (similarity.shown: a right-to-left override or a zero-width space is spelled out, not
obeyed). An answer, however long its text or tall its images, stays in a box of bounded
height above its grading form. Every response carries a strict Content-Security-Policy (no
inline script or style, nothing from another origin: the page works offline). The server
listens on 127.0.0.1 by default and answers only requests whose Host names it (127.0.0.1,
localhost, [::1], the --host given and the address it printed; on every interface, also
any IP address and this machine's name; any port, for SSH tunnels): a page of another site
whose name was pointed at 127.0.0.1 (DNS rebinding) gets 403. Every request, static
files included, needs the random token printed with the URL: given once as ?token=, it
becomes an HttpOnly, SameSite=Strict cookie. The token is never put in a command line
(every local user can read those): as Jupyter does, the browser is opened on a page only
the TA can read (mode 0600, in a new 0700 folder, deleted when the review stops) that
sends it on to the URL (browser_page). Only POSTs change anything, each with a CSRF
token of its own (and refused when the browser says it comes from another origin). It is
served by waitress, several threads, one SQLite connection per request.
"""
from __future__ import annotations

import contextlib
import hashlib
import hmac
import ipaddress
import json
import math
import os
import re
import secrets
import shutil
import socket
import sys
import tempfile
import threading
import time
import webbrowser
from pathlib import Path
from urllib.parse import quote, urlencode

from markupsafe import Markup, escape

from ..engine import FLAG_KINDS
from ..errors import KitError
from ..records import exports
from ..records.gradebook import GRADED, NEEDS_REVIEW, TO_GRADE, Conflict, open_existing
from ..rubric import ManualItem
from ..names import shown_text
from ..names import shown

PACKAGE = Path(__file__).resolve().parent.parent
TEMPLATES = PACKAGE / "templates" / "review"
STATIC = PACKAGE / "static" / "review"

CSP = ("default-src 'none'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-DNS-Prefetch-Control": "off",  # a link in an answer must not tell its author it was read
}
COOKIE_PREFIX = "grader_review_"
"""+ a digest of the token: two reviews on one machine (cookies ignore ports) keep theirs"""
MAX_COMMENT = 20_000
MAX_QUERY = 200
MAX_CURVE_POINTS = 600
IMAGE_MIMES = ("image/png", "image/jpeg")
BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
LINE_INDEX = re.compile(r"[0-9]{1,4}")

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

SORTS = {"name": "name", "score": "autograded score, highest first",
         "low": "autograded score, lowest first", "manual": "manual grading, open first",
         "status": "status, problems first"}
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

def _same(given, secret: str) -> bool:
    return isinstance(given, str) and hmac.compare_digest(given.encode(), secret.encode())


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
HOST = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::[0-9]{1,5})?")
"""a Host header: a name or an address (IPv6 in brackets), and a port"""


def host_allowed(header: str, names, any_address: bool = False) -> bool:
    """Whether a request's Host `header` names this review: one of `names` (lower case, an
    IPv6 address in brackets) or, with `any_address` (listening on every interface), any IP
    address. Any port (an SSH tunnel may forward another one). What this refuses is the name
    of another site made to point here (DNS rebinding): its pages would be same-origin."""
    match = HOST.fullmatch(header)
    name = match[1] if match else ""
    if name.lower() in names:
        return True
    try:
        return any_address and bool(ipaddress.ip_address(name.strip("[]")))
    except ValueError:
        return False


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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


def create_app(out: Path, token: str, grader: str = ""):
    """The review's Flask application on the gradebook in `out`; every request needs
    `token` (see the module's docstring); grades are saved under the name `grader`."""
    import jinja2
    from flask import Flask, abort, make_response, redirect, render_template, request, url_for

    out = Path(out)
    open_existing(out).close()  # now, in one line, if OUT holds no gradebook
    app = Flask(__name__, template_folder=str(TEMPLATES), static_folder=str(STATIC),
                static_url_path="/static")
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20
    app.jinja_env.undefined = jinja2.StrictUndefined
    # points as every export writes them (records.exports.points: rounded once, to the hundredth)
    app.jinja_env.filters["g"] = lambda v: exports.points(v) if isinstance(v, (int, float)) else v
    app.jinja_env.filters["when"] = lambda t: time.strftime("%Y-%m-%d %H:%M", time.localtime(t))
    app.jinja_env.filters["shown"] = shown  # names and texts with a student's file name in them
    app.jinja_env.filters["text"] = shown_text  # messages and notes: their lines kept
    csrf = secrets.token_urlsafe(24)
    ref_key = secrets.token_bytes(32)
    cookie = COOKIE_PREFIX + hashlib.sha256(token.encode()).hexdigest()[:12]
    save_lock = threading.Lock()  # one save and exports rewrite at a time in this server
    app.config.update(REVIEW_OUT=out, REVIEW_CSRF=csrf, REVIEW_COOKIE=cookie,
                      REVIEW_HOSTS=set(LOOPBACK_NAMES), REVIEW_ANY_ADDRESS=False)  # serve() adds

    def ref(student: str) -> str:
        """An opaque name of a submission for forms and URLs (anonymous grading)."""
        return hmac.new(ref_key, student.encode(), "sha256").hexdigest()[:24]

    @contextlib.contextmanager
    def gradebook():
        book = open_existing(out)
        try:
            yield book
        finally:
            book.close()

    def refused(message: str):
        response = make_response(f"403 Forbidden: {message}\n", 403)
        response.mimetype = "text/plain"
        return response

    @app.before_request
    def guard():
        host = request.headers.get("Host", "")
        if not host_allowed(host, app.config["REVIEW_HOSTS"], app.config["REVIEW_ANY_ADDRESS"]):
            return refused(f"expected a request to this review's own address "
                           f"({', '.join(sorted(app.config['REVIEW_HOSTS']))}); found Host "
                           f"{host[:100]!r}. Open the URL `grader review` printed.")
        given = request.args.get("token")
        if given is not None and request.method in ("GET", "HEAD"):
            if not _same(given, token):
                return refused("wrong token. Open the URL `grader review` printed, with its "
                               "?token=..., again; each start of the review has a new one.")
            query = urlencode([(k, v) for k, v in request.args.items(multi=True) if k != "token"])
            # never "//host": a path that starts so would send the browser elsewhere
            response = redirect("/" + quote(request.path.lstrip("/")) + ("?" + query if query else ""))
            response.set_cookie(cookie, token, httponly=True, samesite="Strict", path="/")
            return response
        if not _same(request.cookies.get(cookie), token):
            return refused("this page needs the token `grader review` printed with its URL "
                           "(http://.../?token=...). Open that URL; each start has a new one.")
        if request.method == "POST":
            if not _same(request.form.get("csrf"), csrf):
                return refused("expected the form's CSRF token; found none or a stale one. "
                               "Reload the page and save again.")
            # a browser names the page a form came from; under Referrer-Policy: no-referrer
            # Chromium says "null". Another origin is refused even with the right tokens.
            origin = request.headers.get("Origin")
            if origin and origin not in ("null", request.host_url.rstrip("/")):
                return refused(f"expected a form from this page; found one from {origin[:100]}.")
        return None

    @app.after_request
    def headers(response):
        response.headers.update(HEADERS)
        return response

    def page(template: str, status: int = 200, **context):
        with gradebook() as book:
            exercise = book.get_meta("title") or "Exercise"
        base = {"exercise": exercise, "grader": grader, "csrf": csrf, "notice": "", "error": "",
                "flag_kinds": FLAG_KINDS}
        context = {**base, **context}
        if request.args.get("exports") == "failed" and not context["error"]:
            context["error"] = ("Saved in the gradebook, but grades.csv and the other exports could "
                                f"not be rewritten in {out}: fix the folder, then run `grader export`.")
        return render_template(template, **context), status

    def manual_view(book, student: str, answers: dict, problem: str, grades: dict,
                    statuses: dict, anon: bool, draft: dict | None, only: str | None = None):
        """What the template needs of each manual item of `student` (or only `only`): the
        prompt and answer rendered, and the form's values: the TA's refused entry (`draft`,
        {item: values}), else the grade given, else empty."""
        if anon:
            problem = redact(problem, student)
        views = []
        for item in book.manual_items():
            if only and item["id"] != only:
                continue
            answer, grade = answers.get(item["id"]), grades.get(item["id"])
            text = (answer or {}).get("text", "")
            if anon:
                text = redact(text, student)
            digest = (answer or {}).get("digest", "")
            if draft and item["id"] in draft:
                values = draft[item["id"]]
            elif grade:
                values = {"score": f"{grade['score']:g}", "ticked": grade["ticked"],
                          "comment": grade["comment"], "version": grade["version"], "digest": digest}
            else:
                values = {"score": "", "ticked": [], "comment": "", "version": 0, "digest": digest}
            status = statuses.get(item["id"], TO_GRADE)
            changed = None
            if status == NEEDS_REVIEW and grade and answer is not None and grade.get("digest") != digest:
                before = redact(grade["graded_text"], student) if anon else grade["graded_text"]
                changed = answer_diff(before, text) if grade["graded_text"] else []
            views.append({
                **item, "prompt_html": render_markdown(item.get("prompt", "")),
                "status": status, "problem": problem, "changed": changed,
                "answer": answer is not None, "answer_html": render_markdown(text) if answer else "",
                "images": images_of(answer), "grade": grade, **values,
                "ticked": set(values["ticked"])})
        return views

    def saved_notice(book, item: str, who: str, label_of) -> str:
        """"Saved ...", from a redirect's ?saved=ITEM&who=REF."""
        student = {ref(s["student"]): s["student"] for s in book.submissions()}.get(who)
        items = {m["id"]: m for m in book.manual_items()}
        grade = next((g for g in book.manual(student) if g["item"] == item), None) if student else None
        if grade is None or item not in items:
            return ""
        rubric = ManualItem.from_dict(items[item]).score_of(grade["ticked"])
        note = (f" (the ticked lines give {rubric:g}; the score typed was kept)"
                if grade["ticked"] and abs(rubric - grade["score"]) > 1e-9 else "")
        return (f"Saved {items[item]['title']} of {label_of(student)}: {grade['score']:g} / "
                f"{items[item]['points']:g}{note}.")

    # -- the class list

    @app.get("/")
    def index():
        state = list_state(request.args)
        with gradebook() as book:
            rows = class_rows(book)
            manual_items = book.manual_items()
        counts = {m["id"]: {s: sum(r["manual"][m["id"]] == s for r in rows)
                            for s in (TO_GRADE, NEEDS_REVIEW, GRADED)} for m in manual_items}
        return page("list.html", rows=select(rows, state), total=len(rows), state=state,
                    manual_items=manual_items, counts=counts, sorts=SORTS,
                    manual_filters=MANUAL_FILTERS, status_filters=STATUS_FILTERS)

    # -- one submission

    def submission_page(student: str, state: dict, status: int = 200, notice: str = "",
                        error: str = "", draft: dict | None = None):
        with gradebook() as book:
            sub = book.submission(student)
            if sub is None:
                abort(404)
            order = [r["student"] for r in select(class_rows(book), state, keep=student)]
            at = order.index(student)
            grades = {g["item"]: g for g in book.manual(student)}
            manual = manual_view(book, student, book.answers(student), sub["answers_problem"],
                                 grades, book.manual_status(student), False, draft)
            items = book.items(student)
            flags = book.flags(student)
            similar = book.similar(student)
            if not notice and request.args.get("saved"):
                notice = saved_notice(book, request.args["saved"], request.args.get("who", ""),
                                      lambda s: s)
        training = []
        for item in items:
            details = item["details"] if isinstance(item["details"], dict) else {}
            curves = details.get("curves") if isinstance(details.get("curves"), dict) else {}
            charts = [(name, curve_svg(curves[name], name)) for name in
                      sorted(curves, key=lambda n: (n not in ("loss", "accuracy"), n))[:4]
                      if isinstance(name, str)]
            before_after = details.get("train_accuracy")
            if not (isinstance(before_after, list) and len(before_after) == 2
                    and all(_number(v) is not None for v in before_after)):
                before_after = None
            if charts or before_after:
                training.append({"item": item, "charts": [c for c in charts if c[1] is not None],
                                 "train_accuracy": before_after})
        accuracy = []
        for item in items:
            details = item["details"] if isinstance(item["details"], dict) else {}
            if "accuracy" in details:
                numbers = {k: _number(details.get(k)) for k in ("accuracy", "lower", "upper", "images")}
                accuracy.append({"item": item, "svg": accuracy_svg(details), **numbers})
        hidden = {"view": "s", "ref": ref(student), **state}
        return page("submission.html", status, sub=sub, items=items, flags=flags,
                    similar=similar, manual=manual, training=training, accuracy=accuracy,
                    state=state, hidden=hidden, position=at + 1, count=len(order),
                    prev=order[at - 1] if at > 0 else None,
                    next=order[at + 1] if at + 1 < len(order) else None,
                    notice=notice, error=error, anon=False, label=student)

    @app.get("/s/<student>")
    def submission(student):
        return submission_page(student, list_state(request.args))

    # -- one manual item across the class

    def question_page(item_id: str, anon: bool, index: int | None = None, student: str | None = None,
                      status: int = 200, error: str = "", draft: dict | None = None):
        with gradebook() as book:
            item = next((m for m in book.manual_items() if m["id"] == item_id), None)
            if item is None:
                abort(404)
            rows = class_rows(book)
            order = [r["student"] for r in (anonymous_order(rows) if anon else rows)]
            if student in order:
                index = order.index(student) + 1
            index = min(max(index or 1, 1), max(len(order), 1))
            current = order[index - 1] if order else None

            def label_of(name):
                if not anon:
                    return name
                return f"Submission {order.index(name) + 1}" if name in order else "a submission"

            manual, sub = [], None
            if current:
                sub = book.submission(current)
                grades = {g["item"]: g for g in book.manual(current)}
                manual = manual_view(book, current, book.answers(current), sub["answers_problem"],
                                     grades, book.manual_status(current), anon, draft, only=item_id)
            notice = ""
            if request.args.get("saved") and status == 200:
                notice = saved_notice(book, request.args["saved"], request.args.get("who", ""), label_of)
        statuses = {r["student"]: r["manual"][item_id] for r in rows}
        open_after = [i + 1 for i in list(range(index, len(order))) + list(range(0, index - 1))
                      if statuses[order[i]] != GRADED]
        graded = sum(s == GRADED for s in statuses.values())
        if anon and current:
            error = redact(error, current)
        hidden = {"view": "q", "ref": ref(current) if current else "", **({"anon": "1"} if anon else {})}
        return page("question.html", status, item=item, manual=manual, anon=anon,
                    index=index, count=len(order), graded=graded, hidden=hidden,
                    label=label_of(current) if current else "",
                    student=None if anon else current,
                    prev=index - 1 if index > 1 else None,
                    next=index + 1 if index < len(order) else None,
                    next_open=open_after[0] if open_after else None,
                    notice=notice, error=error, state={})

    @app.get("/q/<item>")
    def question(item):
        try:
            index = int(request.args.get("i", "1"))
        except ValueError:
            index = 1
        return question_page(item, request.args.get("anon") == "1", index)

    # -- saving a grade (the only change the page makes)

    @app.post("/save")
    def save():
        form = request.form
        view, anon = form.get("view"), form.get("anon") == "1"
        state = list_state(form)
        with gradebook() as book:
            refs = {ref(s["student"]): s["student"] for s in book.submissions()}
            student = refs.get(form.get("ref", ""))
            item = next((m for m in book.manual_items() if m["id"] == form.get("item")), None)
            if student is None or item is None or view not in ("s", "q"):
                abort(404)

            def again(status: int, message: str, draft=None):
                if view == "q":
                    return question_page(item["id"], anon, student=student, status=status,
                                         error=message, draft=draft)
                return submission_page(student, state, status=status, error=message, draft=draft)

            try:
                grade = parse_grade(form, item)
            except Invalid as exc:
                return again(400, f"Not saved: {exc}", {item["id"]: {
                    "score": form.get("score", "")[:30],
                    "ticked": [int(v) for v in form.getlist("line") if LINE_INDEX.fullmatch(v)],
                    "comment": form.get("comment", "")[:MAX_COMMENT],
                    "version": max(_int(form.get("version")), 0),
                    "digest": form.get("digest", "")[:128]}})
            exported = True
            try:
                with save_lock:
                    book.save_manual(student, item["id"], grade["score"], grade["ticked"],
                                     grade["comment"], grade["digest"], grader, grade["version"])
                    try:  # this student's files: the save says when one was not written
                        exported = not exports.write_all(book, out, only=student)
                    except OSError:
                        exported = False
            except Conflict as exc:
                lines = ", ".join(f"{item['lines'][i]['points']:+g}" for i in grade["ticked"]) or "none"
                return again(409, f"Not saved: {exc} Your entry: score {grade['score']:g}, "
                                  f"lines ticked: {lines}, comment: {grade['comment'][:300]!r}.")
            # where to go next: this page again, or with "Save and next" the next one
            rows = class_rows(book)
        order = [r["student"] for r in (anonymous_order(rows) if view == "q" and anon
                                        else rows if view == "q" else select(rows, state, keep=student))]
        at = order.index(student)
        if form.get("then") == "next" and at + 1 < len(order):
            at += 1
        who = {"saved": item["id"], "who": ref(student), **({} if exported else {"exports": "failed"})}
        if view == "q":
            return redirect(url_for("question", item=item["id"], i=at + 1,
                                    **({"anon": "1"} if anon else {}), **who))
        return redirect(url_for("submission", student=order[at], **state, **who,
                                _anchor=f"m-{item['id']}" if order[at] == student else None))

    @app.errorhandler(404)
    def not_found(_):
        return page("missing.html", 404)

    @app.errorhandler(413)
    def too_large(_):
        response = make_response("413: expected a form of at most 1 MB; found a larger one.\n", 413)
        response.mimetype = "text/plain"
        return response

    return app


def _int(value, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


# --- serving -------------------------------------------------------------------------------

def serve(app, host: str = "127.0.0.1", port: int = 0, threads: int = 4):
    """A waitress server for `app`, bound (port 0: a free one) but not yet running:
    (server, base URL). Run it with server.run() (in a thread, in tests); stop it with
    shutdown(server, thread)."""
    from waitress import create_server

    server = create_server(app, host="127.0.0.1" if host == "localhost" else host, port=port,
                           threads=threads, ident="grader-review")
    bound_host, bound_port = ((server.effective_host, server.effective_port)
                              if hasattr(server, "effective_port") else server.effective_listen[0])
    names, any_address = set(LOOPBACK_NAMES), bound_host in ("0.0.0.0", "::")
    if ":" not in host:  # a name given to --host, as the TA may type it
        names.add(host.lower())
    if any_address:
        bound_host = socket.gethostname()
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    if hasattr(app, "config"):  # the Host headers it answers to (create_app's guard)
        app.config.update(REVIEW_HOSTS=names | {shown_host.lower()}, REVIEW_ANY_ADDRESS=any_address)
    return server, f"http://{shown_host}:{bound_port}/"


def shutdown(server, thread: threading.Thread | None = None) -> None:
    """Stop a server `serve` made: its run() returns, its threads end. `thread`: the one
    running it, if not this one (its loop then closes the sockets itself: closing them
    under a running select() fails)."""
    from waitress import wasyncore
    from waitress.server import BaseWSGIServer

    sockets = getattr(server, "_map", None) or getattr(server, "map", {})
    if thread is not None and thread.is_alive():
        first = server if isinstance(server, BaseWSGIServer) else next(
            s for s in list(sockets.values()) if isinstance(s, BaseWSGIServer))
        try:
            first.trigger.pull_trigger(lambda: wasyncore.close_all(sockets))
        except OSError:  # its trigger is closed already: its loop is ending on its own
            pass
        thread.join(10)
        wasyncore.close_all(sockets, ignore_all=True)  # if the loop ended before the pull
    else:
        wasyncore.close_all(sockets)
    server.task_dispatcher.shutdown()


REDIRECT_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="0;url={url}">
<meta name="referrer" content="no-referrer">
<title>grader review</title>
<script>window.location.replace({url_js});</script>
</head>
<body>
<p>Opening the review. If nothing happens, <a href="{url}">follow this link</a>.</p>
</body>
</html>
"""
"""the page `browser_page` writes: it sends the browser on to the review's URL"""


@contextlib.contextmanager
def browser_page(link: str):
    """A page that sends the browser on to `link` (the URL with its token), opened in the
    browser, removed with its folder on exit; yields its path (None when it could not be
    written). As Jupyter does: the browser is started on file://... of a file only its
    owner can read (0600, in a fresh 0700 folder), never on the URL itself, which would
    put the token in the browser's command line, readable by every local user
    (/proc/PID/cmdline)."""
    folder = page = None
    try:
        folder = Path(tempfile.mkdtemp(prefix="grader-review-"))  # 0700, owned by the TA
        page = folder / "open.html"
        fd = os.open(page, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(REDIRECT_PAGE.format(url=escape(link),
                                         url_js=json.dumps(link).replace("<", "\\u003c")))
    except OSError as exc:
        print(f"grader review: could not write the page that opens the browser ({exc}); "
              "open the URL above.", file=sys.stderr)
        page = None
    try:
        if page is not None:
            try:
                webbrowser.open(page.as_uri())
            except Exception:  # no browser here: the printed URL is enough
                pass
        yield page
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


HELP = "TAs: a local web page to go through a batch and grade the manual items"


def add_arguments(parser) -> None:
    parser.add_argument("out", help="the --out folder of `grader batch`")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s, this machine only)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--grader", default=os.environ.get("USER", ""),
                        help="your name, saved with each grade (default: $USER)")
    parser.add_argument("--no-browser", action="store_true", help="print the URL, open no browser")


def execute(args) -> None:
    main(args.out, host=args.host, port=args.port, grader=args.grader,
         open_browser=not args.no_browser)


def main(out: str, host: str = "127.0.0.1", port: int = 0, grader: str = "",
         open_browser: bool = True) -> None:
    token = secrets.token_urlsafe(24)
    app = create_app(Path(out), token, grader)
    if not _loopback(host):
        print(f"warning: --host {host} is not this machine only: anyone who can reach it and "
              "sees the token can read and change grades, and plain http carries the token "
              "unencrypted. Prefer the default 127.0.0.1 (with an SSH tunnel from elsewhere).",
              file=sys.stderr)
    try:
        server, url = serve(app, host, port)
    except OSError as exc:
        raise KitError(f"{host}:{port}: expected an address to listen on; could not bind it "
                       f"({exc.strerror or exc}). Leave --port out for a free one, or pick "
                       "another.") from None
    link = f"{url}?token={token}"
    # The token is printed: the terminal is the TA's own (Jupyter prints it too), and it is
    # how to open the review without a browser here or from elsewhere through a tunnel. It
    # is never put in a command line: the browser gets a private file (browser_page).
    print(f"grader review of {out}: {link}  (Ctrl-C stops it)", flush=True)
    try:
        with browser_page(link) if open_browser else contextlib.nullcontext():
            server.run()
    except KeyboardInterrupt:
        pass
    finally:
        shutdown(server)
    print("grader review stopped.")
