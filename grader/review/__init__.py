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

import hashlib
import secrets
import time
from pathlib import Path

from ..names import shown, shown_text
from ..records import exports
from ..records.gradebook import open_existing
from .guard import LOOPBACK_NAMES, COOKIE_PREFIX
from .views import Review, bp

PACKAGE = Path(__file__).resolve().parent.parent
TEMPLATES = PACKAGE / "templates" / "review"
STATIC = PACKAGE / "static" / "review"


def create_app(out: Path, token: str, grader: str = ""):
    """The review's Flask application on the gradebook in `out`; every request needs
    `token` (see the module's docstring); grades are saved under the name `grader`."""
    import jinja2
    from flask import Flask

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
    review = Review(out, token, grader, csrf=secrets.token_urlsafe(24),
                    cookie=COOKIE_PREFIX + hashlib.sha256(token.encode()).hexdigest()[:12],
                    ref_key=secrets.token_bytes(32))
    app.extensions["review"] = review
    app.config.update(REVIEW_OUT=out, REVIEW_CSRF=review.csrf, REVIEW_COOKIE=review.cookie,
                      REVIEW_HOSTS=set(LOOPBACK_NAMES), REVIEW_ANY_ADDRESS=False)  # serve() adds
    app.register_blueprint(bp)
    return app
