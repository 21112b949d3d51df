"""The review's pages, as one Flask blueprint: the class list, a submission, one manual
item across the class, and saving a grade (the only change the page makes). Every view
reads the review's state (`Review`, in `current_app.extensions`); `guard` runs before
each request (see the package's docstring)."""
from __future__ import annotations

import contextlib
import hmac
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode

from flask import Blueprint, abort, current_app, make_response, redirect, render_template, request, url_for

from ..engine import FLAG_KINDS
from ..records import exports
from ..records.gradebook import GRADED, NEEDS_REVIEW, TO_GRADE, Conflict, open_existing
from ..rubric import ManualItem
from .grades import LINE_INDEX, MAX_COMMENT, Invalid, _int, parse_grade
from .guard import HEADERS, _same, host_allowed
from .listing import MANUAL_FILTERS, SORTS, STATUS_FILTERS, anonymous_order, class_rows, list_state, select
from .pages import _number, accuracy_svg, answer_diff, curve_svg, images_of, redact, render_markdown

bp = Blueprint("review", __name__)


@dataclass
class Review:
    """What every request of one review shares."""
    out: Path
    token: str
    grader: str
    csrf: str
    cookie: str
    ref_key: bytes
    save_lock: threading.Lock = field(default_factory=threading.Lock)
    """one save and exports rewrite at a time in this server"""

    def ref(self, student: str) -> str:
        """An opaque name of a submission for forms and URLs (anonymous grading)."""
        return hmac.new(self.ref_key, student.encode(), "sha256").hexdigest()[:24]

    @contextlib.contextmanager
    def gradebook(self):
        book = open_existing(self.out)
        try:
            yield book
        finally:
            book.close()


def _review() -> Review:
    return current_app.extensions["review"]


def refused(message: str):
    response = make_response(f"403 Forbidden: {message}\n", 403)
    response.mimetype = "text/plain"
    return response


@bp.before_app_request
def guard():
    review = _review()
    host = request.headers.get("Host", "")
    if not host_allowed(host, current_app.config["REVIEW_HOSTS"], current_app.config["REVIEW_ANY_ADDRESS"]):
        return refused(f"expected a request to this review's own address "
                       f"({', '.join(sorted(current_app.config['REVIEW_HOSTS']))}); found Host "
                       f"{host[:100]!r}. Open the URL `grader review` printed.")
    given = request.args.get("token")
    if given is not None and request.method in ("GET", "HEAD"):
        if not _same(given, review.token):
            return refused("wrong token. Open the URL `grader review` printed, with its "
                           "?token=..., again; each start of the review has a new one.")
        query = urlencode([(k, v) for k, v in request.args.items(multi=True) if k != "token"])
        # never "//host": a path that starts so would send the browser elsewhere
        response = redirect("/" + quote(request.path.lstrip("/")) + ("?" + query if query else ""))
        response.set_cookie(review.cookie, review.token, httponly=True, samesite="Strict", path="/")
        return response
    if not _same(request.cookies.get(review.cookie), review.token):
        return refused("this page needs the token `grader review` printed with its URL "
                       "(http://.../?token=...). Open that URL; each start has a new one.")
    if request.method == "POST":
        if not _same(request.form.get("csrf"), review.csrf):
            return refused("expected the form's CSRF token; found none or a stale one. "
                           "Reload the page and save again.")
        # a browser names the page a form came from; under Referrer-Policy: no-referrer
        # Chromium says "null". Another origin is refused even with the right tokens.
        origin = request.headers.get("Origin")
        if origin and origin not in ("null", request.host_url.rstrip("/")):
            return refused(f"expected a form from this page; found one from {origin[:100]}.")
    return None


@bp.after_app_request
def headers(response):
    response.headers.update(HEADERS)
    return response


def page(template: str, status: int = 200, **context):
    with _review().gradebook() as book:
        exercise = book.get_meta("title") or "Exercise"
    base = {"exercise": exercise, "grader": _review().grader, "csrf": _review().csrf, "notice": "", "error": "",
            "flag_kinds": FLAG_KINDS}
    context = {**base, **context}
    if request.args.get("exports") == "failed" and not context["error"]:
        context["error"] = ("Saved in the gradebook, but grades.csv and the other exports could "
                            f"not be rewritten in {_review().out}: fix the folder, then run `grader export`.")
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
    student = {_review().ref(s["student"]): s["student"] for s in book.submissions()}.get(who)
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


@bp.get("/")
def index():
    state = list_state(request.args)
    with _review().gradebook() as book:
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
    with _review().gradebook() as book:
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
    hidden = {"view": "s", "ref": _review().ref(student), **state}
    return page("submission.html", status, sub=sub, items=items, flags=flags,
                similar=similar, manual=manual, training=training, accuracy=accuracy,
                state=state, hidden=hidden, position=at + 1, count=len(order),
                prev=order[at - 1] if at > 0 else None,
                next=order[at + 1] if at + 1 < len(order) else None,
                notice=notice, error=error, anon=False, label=student)


@bp.get("/s/<student>")
def submission(student):
    return submission_page(student, list_state(request.args))

# -- one manual item across the class


def question_page(item_id: str, anon: bool, index: int | None = None, student: str | None = None,
                  status: int = 200, error: str = "", draft: dict | None = None):
    with _review().gradebook() as book:
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
    hidden = {"view": "q", "ref": _review().ref(current) if current else "", **({"anon": "1"} if anon else {})}
    return page("question.html", status, item=item, manual=manual, anon=anon,
                index=index, count=len(order), graded=graded, hidden=hidden,
                label=label_of(current) if current else "",
                student=None if anon else current,
                prev=index - 1 if index > 1 else None,
                next=index + 1 if index < len(order) else None,
                next_open=open_after[0] if open_after else None,
                notice=notice, error=error, state={})


@bp.get("/q/<item>")
def question(item):
    try:
        index = int(request.args.get("i", "1"))
    except ValueError:
        index = 1
    return question_page(item, request.args.get("anon") == "1", index)

# -- saving a grade (the only change the page makes)


@bp.post("/save")
def save():
    form = request.form
    view, anon = form.get("view"), form.get("anon") == "1"
    state = list_state(form)
    with _review().gradebook() as book:
        refs = {_review().ref(s["student"]): s["student"] for s in book.submissions()}
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
            with _review().save_lock:
                book.save_manual(student, item["id"], grade["score"], grade["ticked"],
                                 grade["comment"], grade["digest"], _review().grader, grade["version"])
                try:  # this student's files: the save says when one was not written
                    exported = not exports.write_all(book, _review().out, only=student)
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
    who = {"saved": item["id"], "who": _review().ref(student), **({} if exported else {"exports": "failed"})}
    if view == "q":
        return redirect(url_for("review.question", item=item["id"], i=at + 1,
                                **({"anon": "1"} if anon else {}), **who))
    return redirect(url_for("review.submission", student=order[at], **state, **who,
                            _anchor=f"m-{item['id']}" if order[at] == student else None))


@bp.app_errorhandler(404)
def not_found(_):
    return page("missing.html", 404)


@bp.app_errorhandler(413)
def too_large(_):
    response = make_response("413: expected a form of at most 1 MB; found a larger one.\n", 413)
    response.mimetype = "text/plain"
    return response
