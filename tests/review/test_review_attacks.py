"""Attacks on `grader review`, `grader report` and the reading of answers (grader.answers),
each the regression test of a problem found by trying it: a student's notebook or zip of
any shape (it must never stop the batch, nor take gigabytes), a student's name of any
characters (a right-to-left override that reverses the score in "Saved ...: 7 / 10"),
training logs of any numbers (one huge step broke the submission's page), an answer whose
text or image is tall enough to push the grading form out of sight, and a page of another
site whose name points at 127.0.0.1 (DNS rebinding: only the review's own Host is served),
and a local user reading the browser's command line (the token goes in a private file).
Flask's test client on the class fixture with hostile students added; one waitress server
and one headless Chromium for the layout."""
from __future__ import annotations

import base64
import contextlib
import html
import http.client
import io
import json
import os
import re
import stat
import struct
import sys
import tempfile
import threading
import urllib.request
import webbrowser
import zipfile
import zlib
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

import pytest

import class_fixture
from grader import answers
from grader.answers import Answer, Answers
from grader.engine import Flag, ItemResult, Report
from grader.records.gradebook import Gradebook
from grader.verbs import report, review
from grader import review as review_app
from grader.review import guard as review_guard
from grader.review import pages as review_pages
from grader.review import server as review_server
from review_kit import chromium, hidden_fields, logged_in, needs_browser, served

TOKEN = "attack-token-0123456789abcdef"
ITEM = "compare_scratch"
RLO, ZWSP = "\u202e", "\u200b"  # right-to-left override, zero-width space
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()


def png(width: int, height: int) -> str:
    """A real PNG (1-bit grey, all black) of that size, base64."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = (b"\0" + b"\0" * ((width + 7) // 8)) * height
    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 9)) + chunk(b"IEND", b""))
    return base64.b64encode(data).decode()


HOSTILE = {  # student: (answer text, images, details of the training item, seconds)
    f"{RLO}evil": (f"I am {RLO}evil, see.", [], {}, 9000.0),
    f"ada{ZWSP}": ("Looks like ada in the list.", [], {}, 1.0),
    "huge": ("Logged at a huge step.", [], {"curves": {"loss": [[2 ** 60, 1.0]],
                                                       "accuracy": [[0, 1e17], [5, 1e17]]}}, 1.0),
    "tall": ("A tall picture.", [{"mime": "image/png", "data": png(800, 40_000)}], {}, 1.0),
    "long": ("line\\\n" * 3000, [], {}, 1.0),
}


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    """The class fixture, with the hostile students graded in it."""
    out = class_fixture.build(tmp_path_factory.mktemp("class") / "out")
    book = Gradebook(out / "gradebook.sqlite")
    for name, (text, images, details, seconds) in HOSTILE.items():
        result = ItemResult("training", "Training", 1.0, 2.0, "partial", "not learned enough",
                            seconds, "visible", details)
        book.record(name, f"submissions/{name}.ipynb", f"hash-{name}", "rubric",
                    Report(name, [result], seconds=seconds, flags=[Flag("subprocess", f"{name} ran sh")]),
                    "graded", answers=Answers({ITEM: Answer(text, images)}))
    book.set_similar([(f"{RLO}evil", "bo", 0.91)])
    book.close()
    return out


@pytest.fixture
def app(out):
    return review_app.create_app(out, TOKEN, grader="ta-attacks")


@pytest.fixture
def client(app):
    return logged_in(app, TOKEN)


def text_of(page: str) -> str:
    """A page without its URLs and images (where a name is percent-encoded, not shown)."""
    return re.sub(r'(href|src|action)="[^"]*"', "", page)


# --- DNS rebinding: only the review's own address --------------------------------------------

def test_a_page_of_another_site_pointed_here_is_refused(app, out):
    stranger = app.test_client()
    for host in ("evil.example", "evil.example:5000", "127.0.0.1.nip.io:5000", "localhost.evil.example",
                 "[::1]evil", "localhost:x"):
        refused = stranger.get(f"/?token={TOKEN}", headers={"Host": host})
        assert refused.status_code == 403 and "Set-Cookie" not in refused.headers, host
        assert b"found Host" in refused.data
    # even with the token's cookie and the form's CSRF token: the Host alone is refused
    client = app.test_client()
    client.get(f"/?token={TOKEN}")
    form = hidden_fields(client.get("/s/cy").get_data(as_text=True))
    rebound = app.test_client()
    rebound.set_cookie(app.config["REVIEW_COOKIE"], TOKEN, domain="evil.example")
    assert rebound.get("/", headers={"Host": "evil.example:5000"}).status_code == 403
    assert rebound.post("/save", data={**form, "score": "1"},
                        headers={"Host": "evil.example:5000", "Origin": "http://evil.example:5000"}).status_code == 403
    book = Gradebook(out / "gradebook.sqlite")
    assert [m for m in book.manual("cy")] == []
    book.close()
    for host in ("localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST:1"):
        assert stranger.get(f"/?token={TOKEN}", headers={"Host": host}).status_code == 302, host
    # listening on every interface: any IP address too (no one can point one elsewhere), no other name
    names = set(review_guard.LOOPBACK_NAMES)
    assert review_guard.host_allowed("192.168.1.5:8000", names, any_address=True)
    assert review_guard.host_allowed("[fe80::1]:8000", names, any_address=True)
    assert not review_guard.host_allowed("192.168.1.5:8000", names)
    assert not review_guard.host_allowed("evil.example:8000", names, any_address=True)


def test_the_served_review_answers_its_own_address_only(app):
    server, url = review.serve(app)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        port = int(url.rstrip("/").rsplit(":", 1)[1])

        def get(host: str) -> int:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                connection.request("GET", f"/?token={TOKEN}", headers={"Host": host})
                return connection.getresponse().status
            finally:
                connection.close()

        assert get(f"evil.example:{port}") == 403
        assert get(f"127.0.0.1:{port}") == get(f"localhost:{port}") == 302
        assert get("localhost:8000") == 302  # an SSH tunnel may forward another port
    finally:
        review.shutdown(server, thread)


# --- the token never in a command line (every local user reads those) -----------------------

@contextlib.contextmanager
def _main_running(out, monkeypatch, browser=None):
    """`review.main` serving `out` in a thread, webbrowser.open replaced by a recorder (then
    `browser`, if given); yields the arguments it was opened with, once it was; stops the
    server afterwards."""
    made, opened = {}, []
    real_serve = review.serve

    def serve(app, host, port):
        made["server"], url = real_serve(app, host, port)
        return made["server"], url

    def open_(url):
        opened.append(url)
        if browser:
            browser(url)

    monkeypatch.setattr(review, "serve", serve)
    monkeypatch.setattr(review_server.webbrowser, "open", open_)
    thread = threading.Thread(target=review.main, args=(str(out),), daemon=True)
    thread.start()
    for _ in range(200):
        if opened:
            break
        thread.join(0.05)
    try:
        yield opened
    finally:
        review.shutdown(made["server"], thread)
    assert not thread.is_alive()


def _printed_link(printed: str) -> tuple[str, str]:
    """The base URL and the token `grader review` printed."""
    match = re.search(r"(http://127\.0\.0\.1:\d+/)\?token=([\w-]{32})\s", printed)
    assert match, printed
    return match.group(1), match.group(2)


def _path(file_url: str) -> Path:
    assert file_url.startswith("file:///"), file_url
    return Path(url2pathname(urlparse(file_url).path))


def _redirect_of(page: str) -> set[str]:
    """Where the page sends the browser: its meta refresh, its script and its link."""
    meta = re.search(r'<meta http-equiv="refresh" content="0;url=([^"]*)">', page)
    script = re.search(r"<script>window\.location\.replace\((.*)\);</script>", page)
    link = re.search(r'<a href="([^"]*)">', page)
    assert meta and script and link, page
    return {html.unescape(meta.group(1)), json.loads(script.group(1)), html.unescape(link.group(1))}


def test_the_browser_is_opened_on_a_private_page_not_on_the_token(out, monkeypatch, capsys):
    with _main_running(out, monkeypatch) as opened:
        base, token = _printed_link(capsys.readouterr().out)
        [argument] = opened
        page = _path(argument)
        assert token not in argument and page.is_file()
        file, folder = page.stat(), page.parent.stat()
        assert stat.S_IMODE(file.st_mode) == 0o600 and stat.S_IMODE(folder.st_mode) == 0o700
        assert file.st_uid == folder.st_uid == os.getuid()
        assert page.parent != Path(tempfile.gettempdir())  # a folder of its own
        assert [p.name for p in page.parent.iterdir()] == [page.name]
        assert _redirect_of(page.read_text(encoding="utf-8")) == {f"{base}?token={token}"}
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with opener.open(f"{base}?token={token}", timeout=10) as response:  # where it sends
            assert response.status == 200 and response.url == base
    assert not page.exists() and not page.parent.exists()
    assert "grader review stopped." in capsys.readouterr().out


def test_the_browser_process_reads_the_token_from_the_page_never_from_its_argv(
        out, monkeypatch, tmp_path, capsys):
    """A browser process really started, as webbrowser starts one (BROWSER=... or a generic
    one): it records its command line as /proc/PID/cmdline shows it to everyone, and what
    it reads from the file it was given."""
    record = tmp_path / "browser.json"
    recorder = ("import json, os, sys, urllib.parse, urllib.request\n"
                "path = urllib.request.url2pathname(urllib.parse.urlparse(sys.argv[-1]).path)\n"
                "cmdline = open('/proc/self/cmdline', 'rb').read().decode() "
                "if os.path.exists('/proc/self/cmdline') else ' '.join(sys.argv)\n"
                f"json.dump({{'cmdline': cmdline, 'page': open(path).read()}}, open({str(record)!r}, 'w'))\n")
    browser = webbrowser.GenericBrowser([sys.executable, "-c", recorder, "%s"])
    with _main_running(out, monkeypatch, browser.open) as opened:
        base, token = _printed_link(capsys.readouterr().out)
        for _ in range(200):
            if record.exists() and record.stat().st_size:
                break
            threading.Event().wait(0.05)
        seen = json.loads(record.read_text())
    assert opened[0] in seen["cmdline"] and token not in seen["cmdline"]
    assert _redirect_of(seen["page"]) == {f"{base}?token={token}"}
    assert not _path(opened[0]).exists()


def test_the_page_is_removed_when_ctrl_c_stops_the_review(out, monkeypatch, capsys):
    seen = {}

    class Server:
        def run(self):
            page = _path(seen["opened"])
            seen["while serving"] = page.is_file(), page.parent.is_dir()
            raise KeyboardInterrupt

    monkeypatch.setattr(review, "serve", lambda app, host, port: (Server(), "http://127.0.0.1:1/"))
    monkeypatch.setattr(review, "shutdown", lambda server: seen.setdefault("shut", True))
    monkeypatch.setattr(review_server.webbrowser, "open", lambda url: seen.setdefault("opened", url))
    review.main(str(out))
    page = _path(seen["opened"])
    assert seen["while serving"] == (True, True) and seen["shut"]
    assert not page.exists() and not page.parent.exists()
    assert "grader review stopped." in capsys.readouterr().out


def test_the_page_escapes_the_url_it_sends_to(monkeypatch):
    opened = []
    monkeypatch.setattr(review_server.webbrowser, "open", opened.append)
    link = 'http://127.0.0.1:1/?token=a"><script>alert(1)</script>&x=\'</script>'
    with review_server.browser_page(link) as page:
        text = page.read_text(encoding="utf-8")
        assert opened == [page.as_uri()] and "<script>alert" not in text
        assert text.count("</script>") == 1  # its own
        assert _redirect_of(text) == {link}
    assert not page.exists()


def test_a_page_that_cannot_be_written_leaves_the_printed_url(out, monkeypatch, capsys):
    def full(**kw):
        raise OSError(28, "No space left on device")

    served = []
    monkeypatch.setattr(review_server.tempfile, "mkdtemp", full)
    monkeypatch.setattr(review_server.webbrowser, "open", lambda url: pytest.fail(f"opened {url}"))
    monkeypatch.setattr(review, "serve", lambda app, host, port: (
        type("S", (), {"run": lambda s: served.append(True)})(), "http://127.0.0.1:1/"))
    monkeypatch.setattr(review, "shutdown", lambda server: None)
    review.main(str(out))
    printed = capsys.readouterr()
    assert served == [True] and "http://127.0.0.1:1/?token=" in printed.out
    assert "could not write the page that opens the browser" in printed.err
    assert "No space left on device" in printed.err and "open the URL above" in printed.err


def test_no_browser_no_page(out, monkeypatch):
    monkeypatch.setattr(review_server.webbrowser, "open", lambda url: pytest.fail(f"opened {url}"))
    monkeypatch.setattr(review_server.tempfile, "mkdtemp", lambda **kw: pytest.fail("wrote a page"))
    monkeypatch.setattr(review, "serve", lambda app, host, port: (type("S", (), {"run": lambda s: None})(), "http://x/"))
    monkeypatch.setattr(review, "shutdown", lambda server: None)
    review.main(str(out), open_browser=False)


# --- names of any characters ----------------------------------------------------------------

def test_a_name_cannot_reverse_or_hide_what_the_page_says(client):
    rows = re.findall(r'class="row-link" href="[^"]*">([^<]*)</a>', client.get("/").get_data(as_text=True))
    assert r"\u202eevil" in rows and r"ada\u200b" in rows and "ada" in rows  # told apart
    name = f"{RLO}evil"
    page = client.get(f"/s/{name}").get_data(as_text=True)
    assert re.search(r"<title>\\u202eevil ·", page) and "<h1>\\u202eevil</h1>" in page
    saved = client.post("/save", data={**hidden_fields(page), "score": "7"})
    assert saved.status_code == 302
    notice = re.search(r'<p class="notice" role="status">(.*?)</p>', client.get(saved.headers["Location"]).get_data(as_text=True))[1]
    assert notice.endswith(r"of \u202eevil: 7 / 10.")  # not "of evil: 7 / 10." read as ".01 / 7 :live"
    similar = re.search(r"similar</span> to\s*<a [^>]*>([^<]*)</a>, score", client.get("/s/bo").get_data(as_text=True))
    assert similar[1] == r"\u202eevil"  # else ", score 0.91" reads "19.0 erocs ,"
    # with names hidden, the name is still blanked from the answer (before it is spelled out)
    count = len(re.findall(r'class="row-link"', client.get("/").get_data(as_text=True)))
    for i in range(1, count + 1):
        page = client.get(f"/q/{ITEM}?anon=1&i={i}").get_data(as_text=True)
        assert "evil" not in page and "\\u202e" not in page and RLO not in page, i


def test_the_report_spells_out_names_too(out, tmp_path, capsys):
    numbers = report.main(str(out), str(tmp_path / "report"))
    page = Path(numbers["html"]).read_text(encoding="utf-8")
    slowest = page[page.index("Slowest:"):]
    slowest = slowest[:slowest.index("</p>")]
    assert slowest.split()[1:3] == [r"\u202eevil", "(9000.0"] and RLO not in slowest  # the times read right
    assert r"<td>\u202eevil</td>" in page and r"<td>ada\u200b</td>" in page  # flags, similar pairs


# --- training curves of any numbers ------------------------------------------------------------

@pytest.mark.parametrize("raw", [[[2 ** 60, 1.0]], [[0, 1e17], [5, 1e17]], [[1.7e308, 0.0]],
                                 [[0, -1e300], [1, -1e300]], [[0, 5e-324]]])
def test_a_curve_of_one_huge_step_or_value_is_drawn(raw):
    svg = review_pages.curve_svg(raw, "loss")
    assert svg is not None and "polyline" in svg
    assert "nan" not in svg.lower() and "inf" not in svg.lower()


def test_the_page_of_a_run_logged_at_a_huge_step_opens(client):
    page = client.get("/s/huge")
    assert page.status_code == 200
    assert page.get_data(as_text=True).count('<svg class="chart"') == 2


# --- answers read from a notebook or a zip of any shape -------------------------------------

def _notebook(path: Path, *cells, **top) -> Path:
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": list(cells),
                                **top}))
    return path


def _cell(kind: str = "markdown", source="Transfer wins.", **more) -> dict:
    return {"cell_type": kind, "metadata": {"tags": [answers.tag(ITEM)]}, "source": source, **more}


@pytest.mark.parametrize("hostile", [
    {"metadata": {"tags": [answers.tag(ITEM)]}, "source": "a cell without a type"},
    _cell(source="", attachments={"a.png": {"image/png": [1, 2]}}),
    _cell("code", "", outputs=[{"output_type": "display_data", "data": {"image/png": [1, 2]}}]),
    _cell("code", "", outputs=["not an output"]),
    _cell(source="x", metadata=[1]), _cell(source=[1, 2]), "not a cell",
], ids=["no type", "attachment of numbers", "output of numbers", "output not a dict",
        "metadata not a dict", "source of numbers", "cell not a dict"])
def test_a_hostile_cell_never_stops_the_batch(tmp_path, hostile):
    good = _cell("code", "", outputs=[{"output_type": "display_data", "data": {"image/png": PNG}}])
    found = answers.extract(_notebook(tmp_path / "s.ipynb", hostile, _cell(), good), [ITEM])
    assert not found.problem
    assert found.items[ITEM].text == "Transfer wins." and found.items[ITEM].images == [
        {"mime": "image/png", "data": PNG}]


@pytest.mark.parametrize("document", [[], "text", {"nbformat": 3, "worksheets": []},
                                      {"nbformat": 4, "cells": "none"}, {"nbformat": "4"}])
def test_json_that_is_no_notebook_gives_a_problem_or_nothing(tmp_path, document):
    path = tmp_path / "odd.ipynb"
    path.write_text(json.dumps(document))
    found = answers.extract(path, [ITEM])
    assert found.items[ITEM].empty
    assert found.problem == "" or found.problem.startswith("odd.ipynb: could not be read as a notebook")


def test_a_notebook_of_many_small_values_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    # a 48 MB notebook of "[]," took all 24 GB of memory in nbformat (killed after 5 min)
    monkeypatch.setattr(answers, "MAX_JSON_VALUES", 1000)
    path = _notebook(tmp_path / "lists.ipynb", _cell(attachments={"a.png": {"image/png": [[]] * 2000}}))
    found = answers.extract(path, [ITEM])
    assert found.problem == "lists.ipynb: holds more than 1,000 JSON values; its answers were not read"
    # commas, brackets and quotes in a text are no values: a long answer is read
    text = "Transfer, \"[{wins}]\", " * 500
    found = answers.extract(_notebook(tmp_path / "text.ipynb", _cell(source=text)), [ITEM])
    assert not found.problem and found.items[ITEM].text == text.strip()


def test_an_encrypted_or_corrupt_zip_gives_a_problem(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("transfer_learning.py", "x = 1\n" * 100)
        zf.writestr("answers.md", "## compare_scratch\n\nTransfer wins.\n")
    data = buffer.getvalue()
    encrypted = bytearray(data)  # the "encrypted" flag on every member
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        for match in re.finditer(re.escape(signature), data):
            encrypted[match.start() + offset] |= 1
    corrupt = bytearray(data)
    start = data.index(b"transfer_learning.py") + len("transfer_learning.py")
    corrupt[start:start + 8] = b"\xff" * 8  # the deflate stream of the first member
    for name, content in (("locked.zip", encrypted), ("broken.zip", corrupt)):
        (tmp_path / name).write_bytes(bytes(content))
        found = answers.extract(tmp_path / name, [ITEM])
        assert found.items[ITEM].empty
        assert found.problem.startswith(f"{name}: could not be unpacked ("), found.problem


# --- the layout: an answer never pushes the form out of reach ---------------------------------

@pytest.fixture(scope="module")
def browser(out):
    pytest.importorskip("selenium.webdriver")
    with served(review_app.create_app(out, TOKEN, grader="ta-attacks")) as url, chromium() as driver:
        driver.get(f"{url}?token={TOKEN}")
        driver.base = url
        yield driver


@needs_browser
@pytest.mark.parametrize("student", ["tall", "long"])
def test_a_tall_answer_leaves_the_form_within_a_screen(browser, student):
    from selenium.webdriver.common.by import By

    browser.get(f"{browser.base}s/{student}")
    top = browser.find_element(By.CSS_SELECTOR, ".answer-box").location["y"]
    form = browser.find_element(By.CSS_SELECTOR, "form.grade").location["y"]
    assert form - top < 1000, (student, form - top)  # was 40 000 px below, past a black image
    for image in browser.find_elements(By.CSS_SELECTOR, ".answer-image"):
        assert 0 < image.size["height"] <= 700
