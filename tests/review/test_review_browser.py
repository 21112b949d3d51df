"""`grader review` in a real browser: headless Chromium driven by Selenium against the
review served by waitress in a thread, on the class fixture. The keyboard shortcuts, the
rubric lines filling in the score, saving with Ctrl+Enter into the gradebook and
grades.csv, anonymous grading walked with j/k, a hostile answer that runs nothing, a
wrong token refused and a conflicting save shown, not applied. One browser for the
module; each test uses its own students."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import class_fixture
from grader.records.gradebook import Gradebook
from grader.verbs import review
from grader import review as review_app
from review_kit import csv_score, grade_of, chromium, ctrl, keys, needs_browser, served, wait

pytestmark = needs_browser
pytest.importorskip("selenium.webdriver", reason="browser tests need selenium (pip install .[test])")
from selenium.common.exceptions import NoAlertPresentException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

TOKEN = "browser-token-0123456789abcdef"
ITEM = "compare_scratch"
NAMES = sorted([*class_fixture.STUDENTS, "gus"])


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    return class_fixture.build(tmp_path_factory.mktemp("class") / "out")


@pytest.fixture(scope="module")
def url(out):
    """The base URL of the review, served by waitress in a thread for the module."""
    with served(review_app.create_app(out, TOKEN, grader="ta-browser")) as base:
        yield base


@pytest.fixture(scope="module")
def browser(url):
    with chromium() as driver:
        driver.get(f"{url}?token={TOKEN}")  # the token once: the cookie afterwards
        yield driver


def test_list_then_save_with_the_keyboard(browser, url, out):
    browser.get(url)
    assert browser.current_url == url  # the token left the address bar
    rows = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "a.row-link")]
    assert rows == NAMES
    browser.find_element(By.LINK_TEXT, "bo").click()
    wait(browser, lambda d: d.current_url.endswith("/s/bo"))
    keys(browser, "s")
    score = browser.switch_to.active_element
    assert score.get_attribute("name") == "score"
    keys(browser, "7")
    ctrl(browser, Keys.ENTER)
    notice = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".notice"))[0]
    assert "Saved" in notice.text and "7 / 10" in notice.text
    grade = grade_of(out, "bo")
    assert (grade["score"], grade["grader"], grade["version"]) == (7.0, "ta-browser", 1)
    assert csv_score(out, "bo") == "7"
    # j follows the list's order to the next submission
    keys(browser, "j")
    wait(browser, lambda d: d.current_url.split("?")[0].endswith("/s/cy"))


def test_ticking_lines_fills_in_the_score(browser, url, out):
    browser.get(f"{url}s/eve")
    boxes = browser.find_elements(By.CSS_SELECTOR, "form.grade input.line")
    score = browser.find_element(By.CSS_SELECTOR, "form.grade input.score")
    assert len(boxes) == 4 and score.get_attribute("value") == ""
    boxes[0].click()
    boxes[2].click()
    assert score.get_attribute("value") == "8"
    boxes[3].click()  # -3
    assert score.get_attribute("value") == "5"
    boxes[0].click()
    boxes[2].click()  # only the deduction: clamped to 0
    assert score.get_attribute("value") == "0"
    # with unsaved changes, j warns once and leaves only when pressed again
    keys(browser, "j")
    hint = browser.find_element(By.ID, "key-hint")
    assert hint.is_displayed() and "Unsaved changes" in hint.text
    assert browser.current_url.endswith("/s/eve")
    assert grade_of(out, "eve") is None


def test_grading_with_names_hidden_walks_with_j(browser, url):
    browser.get(f"{url}q/{ITEM}?anon=1")
    for i in (1, 2, 3):
        wait(browser, lambda d: f"Submission {i}" in d.find_element(By.TAG_NAME, "h1").text)
        page = re.sub(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]*", "", browser.page_source)
        assert not [n for n in NAMES if re.search(rf"\b{n}\b", page)], i
        if i < 3:
            keys(browser, "j")
    keys(browser, "k")
    wait(browser, lambda d: "Submission 2" in d.find_element(By.TAG_NAME, "h1").text)
    assert "anon=1" in browser.current_url and "i=2" in browser.current_url


def test_a_hostile_answer_runs_nothing(browser, url):
    browser.get(f"{url}s/dee")
    answer = browser.find_element(By.CSS_SELECTOR, ".answer")
    assert "<script>" in answer.text  # shown as what the student typed
    assert browser.execute_script("return window.__pwned === undefined") is True
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.text
    assert browser.find_element(By.TAG_NAME, "body").is_displayed()  # its <style> did not apply
    assert browser.find_elements(By.CSS_SELECTOR, ".answer a[href], .answer img, iframe") == []
    # the page's own script did run (the shortcuts dialog opens)
    keys(browser, "?")
    assert browser.find_element(By.ID, "shortcuts").is_displayed()
    keys(browser, Keys.ESCAPE)


def test_a_wrong_token_is_refused(browser, url):
    browser.get(f"{url}?token=not-the-token")
    assert "403 Forbidden" in browser.find_element(By.TAG_NAME, "body").text
    assert "token" in browser.find_element(By.TAG_NAME, "body").text


def test_a_conflicting_save_is_shown_and_not_applied(browser, url, out):
    browser.get(f"{url}s/fay")
    # someone else saves a grade after the page was loaded (version 0)
    book = Gradebook(out / "gradebook.sqlite")
    digest = book.answers("fay")[ITEM]["digest"]
    book.save_manual("fay", ITEM, 3.0, [], "from the other TA", digest, "ta-other", 0)
    book.close()
    keys(browser, "s")
    keys(browser, "9")
    ctrl(browser, "s")
    error = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".error"))[0]
    assert "Not saved" in error.text and "ta-other saved a grade" in error.text
    grade = grade_of(out, "fay")
    assert (grade["score"], grade["comment"], grade["grader"]) == (3.0, "from the other TA", "ta-other")
    # the form now shows the grade saved in between
    assert browser.find_element(By.CSS_SELECTOR, "form.grade input.score").get_attribute("value") == "3"


def test_a_save_key_with_nothing_entered_saves_nothing(browser, url, out):
    browser.get(f"{url}s/cy")
    ctrl(browser, Keys.ENTER)
    hint = wait(browser, lambda d: d.find_element(By.ID, "key-hint").is_displayed()
                and d.find_element(By.ID, "key-hint"))
    assert "Nothing to save" in hint.text and grade_of(out, "cy") is None


def test_number_keys_tick_the_rubric_lines(browser, url, out):
    browser.get(f"{url}s/dee")
    labels = browser.find_elements(By.CSS_SELECTOR, "form.grade .line-key")
    assert [k.text for k in labels] == ["1", "2", "3", "4"]  # each line shows its key
    score = browser.find_element(By.CSS_SELECTOR, "form.grade input.score")
    keys(browser, "1")
    keys(browser, "3")
    assert score.get_attribute("value") == "8"  # 4 + 4, as a click would
    keys(browser, "4")  # the -3 line
    assert score.get_attribute("value") == "5"
    keys(browser, "1")  # untick
    assert score.get_attribute("value") == "1"
    keys(browser, "9")  # no ninth line: nothing happens
    boxes = browser.find_elements(By.CSS_SELECTOR, "form.grade input.line")
    assert [b.is_selected() for b in boxes] == [False, False, True, True]
    ctrl(browser, Keys.ENTER)  # ticked by key, the form counts as changed and saves
    notice = wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".notice"))[0]
    assert "Saved" in notice.text and "1 / 10" in notice.text
    grade = grade_of(out, "dee")
    assert grade["score"] == 1.0 and grade["ticked"] == [2, 3]


def test_a_changed_answer_shows_what_changed_since_it_was_graded(browser, url, out):
    """ada's answer was graded; she edits one sentence and is graded again by the batch: the
    review shows the two texts' difference, escaped, beside the form."""
    from grader.answers import Answer, Answers
    from grader.engine import ItemResult, Report

    book = Gradebook(out / "gradebook.sqlite")
    graded = book.manual("ada")[0]["graded_text"]
    assert graded == class_fixture.GOOD  # kept when it was graded
    row = book.submission("ada")
    report = Report("ada", [ItemResult(i["item"], i["title"], i["score"], i["max_score"], i["status"],
                                       i["message"], 0.0, i["visibility"]) for i in book.items("ada")])
    edited = class_fixture.GOOD.replace("**0.62**", "**0.71**") + "\n\n<b>Added</b> after grading."
    book.record("ada", row["source"], "edited", "rubric", report, "graded",
                answers=Answers({ITEM: Answer(edited)}))
    book.close()
    browser.get(f"{url}s/ada")
    changed = browser.find_element(By.CSS_SELECTOR, "details.changed")
    added = [e.text for e in changed.find_elements(By.CSS_SELECTOR, ".d-add")]
    removed = [e.text for e in changed.find_elements(By.CSS_SELECTOR, ".d-del")]
    assert any("**0.71**" in line for line in added) and any("**0.62**" in line for line in removed)
    assert "+ <b>Added</b> after grading." in added  # shown as text, not rendered
    assert "needs review" in browser.find_element(By.CSS_SELECTOR, "section.manual").text
