"""What the tests of `grader review` share (and docs/screenshots.py): a review served by
waitress in a thread, headless Chromium from the Debian packages driven by Selenium, a
test client that presented the token, and the hidden fields of a grading form."""
from __future__ import annotations

import contextlib
import html
import re
import shutil
import threading

import pytest

from grader.verbs import review

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="browser tests need chromium and chromedriver on PATH (Debian packages chromium "
           "and chromium-driver)")


@contextlib.contextmanager
def served(app):
    """The base URL of `app` served by waitress in a thread, stopped afterwards."""
    server, url = review.serve(app)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        yield url
    finally:
        review.shutdown(server, thread)


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 1000, *extra: str):
    """Headless Chromium driven by Selenium (selenium from the [test] extra)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     f"--window-size={width},{height}", "--disable-gpu", *extra):
        options.add_argument(argument)
    options.binary_location = CHROMIUM or "/usr/bin/chromium"
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER or "/usr/bin/chromedriver"))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


def logged_in(app, token: str):
    """A test client that presented the token once (so it holds the cookie)."""
    client = app.test_client()
    assert client.get(f"/?token={token}").status_code == 302
    return client


def hidden_fields(page: str) -> dict[str, str]:
    """The hidden fields of the page's first grading form (csrf, item, version, digest...)."""
    form = page[page.index('<form class="grade"'):]
    form = form[:form.index("</form>")]
    return {html.unescape(k): html.unescape(v) for k, v in
            re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', form)}


def wait(driver, condition, seconds: float = 15):
    """What `condition(driver)` returns once it is truthy (Selenium's WebDriverWait)."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, seconds).until(lambda d: condition(d))


def keys(driver, *sequence) -> None:
    """Type `sequence` into the page, as a person's keyboard would."""
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(*sequence).perform()


def ctrl(driver, key) -> None:
    """Ctrl + `key`."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    ActionChains(driver).key_down(Keys.CONTROL).send_keys(key).key_up(Keys.CONTROL).perform()


ITEM = "compare_scratch"
"""the class fixture's written question"""


def grade_of(out, student: str, item: str = ITEM) -> dict | None:
    """The grade `student` was given for `item` in the batch folder `out`, or None."""
    from grader.records.gradebook import Gradebook

    book = Gradebook(out / "gradebook.sqlite")
    try:
        return next((m for m in book.manual(student) if m["item"] == item), None)
    finally:
        book.close()


def csv_score(out, student: str, item: str = ITEM) -> str:
    """`student`'s cell of `item` in the folder's grades.csv ("" when not graded)."""
    import csv

    with open(out / "grades.csv", newline="") as f:
        return next(row for row in csv.DictReader(f) if row["student"] == student)[item]
