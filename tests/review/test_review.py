"""`grader review`: the token on every request, CSRF on every change, GETs that change
nothing, grades saved to the gradebook and the exports, conflicts and bad scores refused,
students' answers and names shown as inert data, anonymous grading that names no one,
and the figures drawn from untrusted details. Flask's test client against the class
fixture (no grading), plus one request through a real waitress server."""
from __future__ import annotations

import re
import shutil
import sqlite3
import threading
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

import class_fixture
from grader.errors import KitError
from grader.records.gradebook import GRADED, NEEDS_REVIEW, Gradebook
from grader.verbs import review
from grader import review as review_app
from grader.review import grades as review_grades
from grader.review import guard as review_guard
from grader.review import pages as review_pages
from grader.review import server as review_server
from review_kit import csv_score, grade_of, hidden_fields, logged_in

TOKEN = "test-token-0123456789abcdef"
ITEM = "compare_scratch"
NAMES = sorted([*class_fixture.STUDENTS, "gus"])


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return class_fixture.build(tmp_path_factory.mktemp("class") / "out")


@pytest.fixture
def out(built, tmp_path) -> Path:
    """A fresh copy of the class's batch folder for each test."""
    return Path(shutil.copytree(built, tmp_path / "out"))


@pytest.fixture
def app(out):
    return review_app.create_app(out, TOKEN, grader="ta-two")


@pytest.fixture
def client(app):
    """A client that presented the token once (so it holds the cookie)."""
    return logged_in(app, TOKEN)


def grade_form(client, url: str, **values) -> dict:
    """The grading form of the page at `url`, as loaded, with `values` filled in."""
    page = client.get(url).get_data(as_text=True)
    return {**hidden_fields(page), **values}


def snapshot(out: Path) -> tuple:
    db = sqlite3.connect(out / "gradebook.sqlite")
    try:
        dump = list(db.iterdump())
    finally:
        db.close()
    return dump, (out / "grades.csv").read_bytes(), (out / "moodle.csv").read_bytes()


def without_images(page: str) -> str:
    return re.sub(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]*", "data:", page)


# --- the token ------------------------------------------------------------------------------

def test_every_request_needs_the_token(app):
    anonymous = app.test_client()
    for url in ("/", "/s/ada", f"/q/{ITEM}", "/static/review.js", "/static/review.css"):
        refused = anonymous.get(url)
        assert refused.status_code == 403, url
        assert refused.mimetype == "text/plain" and b"token" in refused.data
    assert anonymous.get("/?token=wrong").status_code == 403
    assert anonymous.get("/?token=").status_code == 403

    first = anonymous.get(f"/s/ada?sort=score&token={TOKEN}")
    assert first.status_code == 302
    assert first.headers["Location"] == "/s/ada?sort=score"  # the token left out
    cookie = first.headers["Set-Cookie"]
    assert f"={TOKEN}" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    page = anonymous.get("/")
    assert page.status_code == 200
    assert all(name.encode() in page.data for name in NAMES)
    assert anonymous.get("/static/review.js").status_code == 200
    assert anonymous.get("/static/review.css").mimetype == "text/css"

    stranger = app.test_client()
    stranger.set_cookie(app.config["REVIEW_COOKIE"], "not-the-token")
    assert stranger.get("/").status_code == 403


def test_token_redirect_stays_on_this_server(app):
    response = app.test_client().get("/", environ_overrides={"PATH_INFO": "//evil.example/x",
                                                             "QUERY_STRING": f"token={TOKEN}"})
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/") and not response.headers["Location"].startswith("//")


def test_security_headers_on_every_response(app, client):
    for response in (client.get("/"), client.get("/s/dee"), client.get("/static/review.js"),
                     app.test_client().get("/"), client.get("/s/nobody")):
        assert response.headers["Content-Security-Policy"] == review_guard.CSP
        assert "default-src 'none'" in review_guard.CSP and "script-src 'self'" in review_guard.CSP
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "no-referrer"
        assert response.headers["Cache-Control"] == "no-store"
    assert client.get("/s/nobody").status_code == 404
    assert client.get("/q/nothing").status_code == 404


def test_no_external_resources(client):
    for url in ("/", "/s/ada", f"/q/{ITEM}"):
        page = client.get(url).get_data(as_text=True)
        assert "style=" not in page and "<style" not in page  # the CSP forbids inline style
        for src in re.findall(r'(?:src|href)="([^"]*)"', page):
            assert src.startswith(("/", "#", "data:image/")) or src == "data:,", src
    assert b"http" not in client.get("/static/review.css").data


# --- changes: POST with CSRF only ----------------------------------------------------------

def test_post_without_or_with_a_wrong_csrf_token_is_refused(app, client, out):
    before = snapshot(out)
    form = grade_form(client, "/s/bo", score="5", comment="x")
    for csrf in (None, "", "wrong"):
        data = {k: v for k, v in form.items() if k != "csrf"}
        if csrf is not None:
            data["csrf"] = csrf
        refused = client.post("/save", data=data)
        assert refused.status_code == 403 and b"CSRF" in refused.data
    assert app.test_client().post("/save", data=form).status_code == 403  # no token cookie
    assert client.post("/save", data=form, headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.get("/save").status_code == 405
    assert snapshot(out) == before


def test_gets_change_nothing(client, out):
    before = snapshot(out)
    for url in ["/", "/?manual=open&sort=score&flagged=1&q=d", f"/q/{ITEM}", f"/q/{ITEM}?anon=1&i=3",
                f"/s/ada?saved={ITEM}&who=x", "/static/review.js",
                *(f"/s/{name}" for name in NAMES), *(f"/q/{ITEM}?i={i}" for i in range(1, 9))]:
        assert client.get(url).status_code == 200, url
    assert client.get(f"/save?item={ITEM}&score=3").status_code == 405
    assert snapshot(out) == before


def test_a_saved_grade_lands_in_the_gradebook_and_grades_csv(client, out):
    assert grade_of(out, "bo") is None and csv_score(out, "bo") == ""
    form = grade_form(client, "/s/bo", score="", comment="Numbers, <b>no</b> curves.")
    saved = client.post("/save", data={**form, "line": ["0", "2"]})
    assert saved.status_code == 302 and saved.headers["Location"].startswith("/s/bo?saved=")
    grade = grade_of(out, "bo")
    assert (grade["score"], grade["ticked"], grade["grader"], grade["version"]) == (8.0, [0, 2], "ta-two", 1)
    assert grade["comment"] == "Numbers, <b>no</b> curves."
    assert csv_score(out, "bo") == "8"
    page = client.get(saved.headers["Location"]).get_data(as_text=True)
    assert "Saved Written question" in page and "8 / 10" in page
    assert "Numbers, &lt;b&gt;no&lt;/b&gt; curves." in page  # the comment is escaped too
    listing = client.get("/").get_data(as_text=True)
    assert re.search(r">bo</a>.*?manual-graded", listing, re.S)


def test_a_typed_score_wins_over_the_ticked_lines(client, out):
    form = grade_form(client, "/s/eve", score="7.5", comment="")
    client.post("/save", data={**form, "line": ["0", "1", "2"]})
    grade = grade_of(out, "eve")
    assert (grade["score"], grade["ticked"]) == (7.5, [0, 1, 2])
    assert csv_score(out, "eve") == "7.5"
    page = client.get(f"/s/eve?saved={ITEM}&who={form['ref']}").get_data(as_text=True)
    assert "the ticked lines give 10; the score typed was kept" in page
    # with the score empty the lines decide, clamped to 0..points: -3 alone gives 0
    form = grade_form(client, "/s/eve", score="")
    client.post("/save", data={**form, "line": ["3"]})
    assert grade_of(out, "eve")["score"] == 0.0


def test_conflicting_saves_keep_the_first(client, out):
    first = grade_form(client, "/s/fay", score="6", comment="first")
    second = grade_form(client, "/s/fay", score="3", comment="second")  # loaded at the same version
    assert first["version"] == second["version"] == "0"
    assert client.post("/save", data=first).status_code == 302
    refused = client.post("/save", data=second)
    assert refused.status_code == 409
    page = refused.get_data(as_text=True)
    assert "Not saved" in page and "ta-two saved a grade" in page and "reload" in page
    assert "comment: &#39;second&#39;" in page  # what the TA typed, so it is not lost
    assert 'name="version" value="1"' in page  # the form now holds the grade saved since
    grade = grade_of(out, "fay")
    assert (grade["score"], grade["comment"], grade["version"]) == (6.0, "first", 1)
    assert csv_score(out, "fay") == "6"
    # ada was graded (version 1) by ta-one: a form that says version 0 is refused too
    stale = {**grade_form(client, "/s/ada", score="1"), "version": "0"}
    assert client.post("/save", data=stale).status_code == 409
    assert grade_of(out, "ada")["score"] == 10.0


@pytest.mark.parametrize("score", ["11", "-1", "abc", "nan", "inf", "1e999", "10.0001"])
def test_scores_outside_zero_to_points_are_refused(client, out, score):
    before = snapshot(out)
    response = client.post("/save", data=grade_form(client, "/s/bo", score=score))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "expected a score from 0 to 10" in page
    assert snapshot(out) == before


@pytest.mark.parametrize("fields", [{"line": "4"}, {"line": "-1"}, {"line": "x"}, {"line": "\u00b2"},
                                    {"version": "x"}, {"version": "-1"},
                                    {"comment": "c" * (review_grades.MAX_COMMENT + 1)}])
def test_other_bad_fields_are_refused(client, out, fields):
    before = snapshot(out)
    assert client.post("/save", data={**grade_form(client, "/s/bo", score="5"), **fields}).status_code == 400
    assert snapshot(out) == before
    assert client.post("/save", data={**grade_form(client, "/s/bo"), "ref": "nobody"}).status_code == 404
    assert client.post("/save", data={**grade_form(client, "/s/bo"), "item": "other"}).status_code == 404


def test_a_form_with_neither_a_score_nor_a_line_saves_nothing(client, out):
    """A save key pressed by reflex must not record a 0 as "graded"."""
    before = snapshot(out)
    refused = client.post("/save", data=grade_form(client, "/s/bo", score=""))
    assert refused.status_code == 400 and snapshot(out) == before
    assert "expected a score or a ticked rubric line" in refused.get_data(as_text=True)
    ticked = client.post("/save", data={**grade_form(client, "/s/bo", score=""), "line": "3"})
    assert ticked.status_code in (302, 303)  # a deduction alone: 0, but a grade given


# --- untrusted data shown as data ----------------------------------------------------------

class Elements(HTMLParser):
    """Every start tag of a page with its attributes."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_a_hostile_answer_is_inert(client):
    page = client.get("/s/dee").get_data(as_text=True)
    answer = page[page.index('<div class="answer markdown">'):]
    answer = answer[:answer.index("</div>")]
    assert "Transfer wins." in answer and "&lt;script&gt;" in answer  # shown, as text
    for bad in ("<script", "<iframe", "<style", "<img", "<a href=\"javascript"):
        assert bad not in answer.lower()
    parser = Elements()
    parser.feed(page)
    assert [t for t, _ in parser.tags if t in ("iframe", "style", "object", "embed", "base")] == []
    assert [a.get("src") for t, a in parser.tags if t == "script"] == ["/static/review.js"]
    for tag, attrs in parser.tags:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        assert not any("javascript:" in (value or "").lower() for value in attrs.values()), (tag, attrs)
        if tag == "img":
            assert attrs["src"].startswith("data:image/png;base64,")


def test_markdown_keeps_only_safe_links():
    out = str(review_pages.render_markdown(
        "[a](https://example.org) [m](mailto:x@example.org) [b](javascript:alert(1)) [c](/s/ada) "
        "[d](data:text/html,x) ![e](https://example.org/t.png)\n\n<b onclick=x>raw</b>"))
    assert '<a href="https://example.org" rel="noopener noreferrer">a</a>' in out
    assert 'href="mailto:x@example.org"' in out
    assert "href=\"/s" not in out and "data:" not in out.replace("[d](data:", "") and "<img" not in out
    assert "&lt;b onclick=x&gt;raw&lt;/b&gt;" in out


def test_names_feedback_and_flags_are_escaped(out):
    book = Gradebook(out / "gradebook.sqlite")
    book.db.execute("UPDATE items SET message = '<script>window.__pwned=6</script>' WHERE student = 'fay'")
    book.db.execute("UPDATE flags SET detail = '<img src=x onerror=alert(1)>' WHERE student = 'fay'")
    book.set_similar([("fay", "<b>bo</b>", 0.9)])
    book.close()
    client = review_app.create_app(out, TOKEN).test_client()
    client.get(f"/?token={TOKEN}")
    for url in ("/", "/s/fay", "/?q=%3Cb%3E"):
        page = client.get(url).get_data(as_text=True)
        assert "<script>window" not in page and "<img src=x" not in page and "<b>bo" not in page
    assert "&lt;script&gt;window.__pwned=6" in client.get("/s/fay").get_data(as_text=True)


def test_no_answer_and_an_unreadable_notebook(client):
    cy = client.get("/s/cy").get_data(as_text=True)
    assert "No answer." in cy and 'class="answer markdown"' not in cy
    gus = client.get("/s/gus").get_data(as_text=True)
    assert "The answers could not be read: gus.ipynb: could not be read as a notebook" in gus
    assert "No answer." not in gus
    assert "expected a Jupyter notebook" in gus  # why the submission failed
    assert "No answer." not in client.get("/s/bo").get_data(as_text=True)


# --- grading by question --------------------------------------------------------------------

def test_grading_by_question_with_names_hidden_names_no_one(client, out):
    seen = set()
    for i in range(1, len(NAMES) + 1):
        page = without_images(client.get(f"/q/{ITEM}?anon=1&i={i}").get_data(as_text=True))
        for name in NAMES:
            assert not re.search(rf"\b{name}\b", page, re.I), (i, name)
        assert f"Submission {i}" in page
        seen.add(hidden_fields(page)["ref"])
        if "could not be read" in page:
            assert "[name hidden].ipynb" in page  # gus's file name, blanked
    assert len(seen) == len(NAMES)  # each index is another submission
    # the order is the same on another start (another server, another token)
    again = review_app.create_app(out, "another-token").test_client()
    again.get("/?token=another-token")
    first = without_images(client.get(f"/q/{ITEM}?anon=1&i=1").get_data(as_text=True))
    other = without_images(again.get(f"/q/{ITEM}?anon=1&i=1").get_data(as_text=True))
    assert re.search(r'name="digest" value="(\w*)"', first)[1] == re.search(r'name="digest" value="(\w*)"', other)[1]


def test_saving_with_names_hidden(client, out):
    order = []
    for i in range(1, len(NAMES) + 1):
        form = grade_form(client, f"/q/{ITEM}?anon=1&i={i}")
        order.append(form)
    i = next(i for i, f in enumerate(order, 1) if f["version"] == "0" and f["digest"])
    saved = client.post("/save", data={**order[i - 1], "score": "4", "then": "next"})
    assert saved.status_code == 302
    location = saved.headers["Location"]
    assert f"i={i + 1}" in location and "anon=1" in location
    assert not any(re.search(rf"\b{n}\b", location) for n in NAMES)
    page = client.get(location).get_data(as_text=True)
    assert f"Saved Written question: transfer learning against training from scratch of Submission {i}" in page
    book = Gradebook(out / "gradebook.sqlite")
    graded = [m["student"] for m in book.manual() if m["score"] == 4.0]
    book.close()
    assert len(graded) == 1
    # a conflict on that page: the message (which names the student) is blanked
    refused = client.post("/save", data={**order[i - 1], "score": "5"})
    assert refused.status_code == 409
    text = without_images(refused.get_data(as_text=True))
    assert "[name hidden], compare_scratch" in text and not re.search(rf"\b{graded[0]}\b", text)


def test_grading_by_question_with_names(client):
    page = client.get(f"/q/{ITEM}?i=2").get_data(as_text=True)
    assert 'href="/s/bo"' in page and 'rel="next" href="/q/compare_scratch?i=3"' in page
    assert 'id="next-open" href="/q/compare_scratch?i=3"' in page
    assert client.get(f"/q/{ITEM}?i=99").status_code == 200  # clamped to the last one
    assert client.get(f"/q/{ITEM}?i=x").status_code == 200


# --- the list -------------------------------------------------------------------------------

def rows_of(client, query: str = "") -> list[str]:
    page = client.get("/" + query).get_data(as_text=True)
    return re.findall(r'class="row-link" href="[^"]*">([^<]*)</a>', page)


def test_list_filters_sorts_and_follows_them(client):
    assert rows_of(client) == NAMES
    assert rows_of(client, "?flagged=1") == ["dee", "fay"]
    assert rows_of(client, "?manual=graded") == ["ada"]
    assert rows_of(client, "?manual=todo") == [n for n in NAMES if n != "ada"]
    assert rows_of(client, "?status=failed") == ["gus"]
    assert rows_of(client, "?q=INTRO") == ["dee"]  # a flag's kind
    assert rows_of(client, "?sort=score")[0] == "ada" and rows_of(client, "?sort=low")[0] == "gus"
    assert rows_of(client, "?sort=status")[0] == "gus"
    assert rows_of(client, "?sort=bogus&manual=bogus") == NAMES
    dee = client.get("/s/dee?flagged=1").get_data(as_text=True)
    assert 'rel="next" href="/s/fay?flagged=1"' in dee and 'rel="prev"' not in dee
    assert "1 of 2" in dee
    # the page it is on stays in the order when the filter would drop it
    assert 'rel="next" href="/s/bo?manual=todo"' in client.get("/s/ada?manual=todo").get_data(as_text=True)


def test_needs_review_after_the_answer_changed(client, out):
    book = Gradebook(out / "gradebook.sqlite")
    book.db.execute("UPDATE answers SET text = 'rewritten', digest = 'changed' WHERE student = 'ada'")
    statuses = book.manual_statuses()
    assert all(statuses[n] == book.manual_status(n) for n in NAMES)  # the bulk rule is the same
    assert statuses["ada"] == {ITEM: NEEDS_REVIEW}
    book.close()
    assert rows_of(client, "?manual=review") == ["ada"]
    assert re.search(r">ada</a>.*?1 needs review", client.get("/").get_data(as_text=True), re.S)
    page = client.get("/s/ada").get_data(as_text=True)
    assert "the answer changed since" in page and "rewritten" in page
    client.post("/save", data=grade_form(client, "/s/ada", score="9"))
    book = Gradebook(out / "gradebook.sqlite")
    assert book.manual_status("ada") == {ITEM: GRADED}
    book.close()


# --- figures ----------------------------------------------------------------------------------

def test_training_curves_and_accuracy_are_drawn(client):
    page = client.get("/s/ada").get_data(as_text=True)
    assert page.count('<svg class="chart"') == 2 and 'class="curve curve-loss"' in page
    assert '<svg class="gauge"' in page and "Accuracy 0.930" in page
    assert "Training accuracy 0.100 before training, 0.930 after." in page


def test_figures_survive_hostile_details():
    assert review_pages.curve_svg("nope", "loss") is None
    assert review_pages.curve_svg([["a", 1], [1, float("nan")], [True, 2]], "loss") is None
    assert review_pages.curve_svg([[1e308, 0], [-1e308, 1]], "loss") is None
    one = str(review_pages.curve_svg([[0, 1]], "<b>x</b>"))
    assert "<b>" not in one and "&lt;b&gt;" in one
    many = review_pages.curve_points([[i, i] for i in range(10_000)])
    assert len(many) <= review_pages.MAX_CURVE_POINTS + 1 and many[-1] == (9999.0, 9999.0)
    assert review_pages.accuracy_svg({"accuracy": "0.9", "lower": 0, "upper": 1}) is None
    assert "marker" in str(review_pages.accuracy_svg({"accuracy": 2.0, "lower": 0.1, "upper": 0.8}))


# --- the verb ---------------------------------------------------------------------------------

def test_a_folder_without_a_gradebook_is_one_clear_error(tmp_path):
    with pytest.raises(KitError, match="expected the output folder of `grader batch`"):
        review_app.create_app(tmp_path, TOKEN)
    with pytest.raises(KitError):
        review.main(str(tmp_path), open_browser=False)


def test_loopback_hosts():
    assert review_guard._loopback("127.0.0.1") and review_guard._loopback("localhost") and review_guard._loopback("::1")
    assert not review_guard._loopback("0.0.0.0") and not review_guard._loopback("192.168.1.5")


def test_served_by_waitress(app):
    server, url = review.serve(app)
    assert url.startswith("http://127.0.0.1:") and url.endswith("/")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with opener.open(f"{url}?token={TOKEN}", timeout=10) as response:
            page = response.read().decode()
            assert response.status == 200 and response.url == url
            assert response.headers["Content-Security-Policy"] == review_guard.CSP
        assert "ada" in page
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=10)
        assert refused.value.code == 403
    finally:
        review.shutdown(server, thread)
    assert not thread.is_alive()


def test_main_prints_the_url_opens_it_and_serves(out, monkeypatch, capsys):
    made, opened = {}, []
    real_serve = review.serve

    def serve(app, host, port):
        made["server"], url = real_serve(app, host, port)
        return made["server"], url

    monkeypatch.setattr(review, "serve", serve)
    monkeypatch.setattr(review_server.webbrowser, "open", opened.append)
    thread = threading.Thread(target=review.main, args=(str(out),), kwargs={"grader": "ta"}, daemon=True)
    thread.start()
    for _ in range(100):
        if opened:
            break
        thread.join(0.05)
    [page] = opened  # a file that sends the browser on to the URL (test_review_attacks)
    assert page.startswith("file:///") and page.endswith(".html")
    link = re.search(r"http://127\.0\.0\.1:\d+/\?token=[\w-]{32}", capsys.readouterr().out).group()
    assert link not in page and link.split("=")[1] not in page
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
    with opener.open(link, timeout=10) as response:
        assert response.status == 200
    review.shutdown(made["server"], thread)
    assert not thread.is_alive()
    assert "grader review stopped." in capsys.readouterr().out


def test_main_warns_off_loopback_and_explains_a_busy_port(out, monkeypatch, capsys):
    def busy(app, host, port):
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(review, "serve", busy)
    with pytest.raises(KitError, match=r"0\.0\.0\.0:8000: expected an address to listen on; could not "
                                       r"bind it \(Address already in use\)"):
        review.main(str(out), host="0.0.0.0", port=8000, open_browser=False)
    assert "warning: --host 0.0.0.0 is not this machine only" in capsys.readouterr().err
