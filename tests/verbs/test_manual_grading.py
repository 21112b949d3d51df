"""The part a person grades, end to end on the kit's exercise, as a course runs it: the
generated notebook with its written question answered (or not), a `grader batch`, every
answer graded with the keyboard in Chromium through `grader review` (the command, its
printed URL), then `grader report` and the exports holding the manual scores.

The batch runs a short rubric, the interface item and the written question: what is
tested here is the manual half, and the autograded items have their own tests.
"""
from __future__ import annotations

import base64
import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys

import nbformat
import pytest
import yaml

from grader import answers
from grader.records.gradebook import Gradebook
from kit import DEFAULT_RUBRIC, ROOT
from review_kit import chromium, ctrl, keys, needs_browser, wait

pytestmark = needs_browser
pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

ITEM = "compare_scratch"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(64)).decode()
SCORES = {"ada": "9", "bo": "0", "cy": "6.5", "dee": "4"}
ADA = "Transfer: 0.62 after 300 steps; from scratch: 0.31. The ImageNet filters carry over."
CY = "From scratch learns slower: 0.29 against 0.60, both after 300 steps."
DEE = "Transfer is better."


def _grader(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "grader", *args], capture_output=True, text=True,
                          timeout=600, **kwargs)


def _answered(text: str | None, plot: bool = False):
    """The generated instructor notebook, its answer cell written (None: left as generated)
    and, with `plot`, the comparison plot's output saved as a run of it would save it."""
    nb = nbformat.read(ROOT / "solutions" / "transfer_learning.ipynb", as_version=4)
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if answers.tag(ITEM) in tags and cell.cell_type == "markdown" and text is not None:
            cell.source = text
        if answers.tag(ITEM) in tags and cell.cell_type == "code" and plot:
            cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": PNG})]
    return nb


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """A class of four: two notebooks answered (one with its plot), one left unanswered,
    one .py in a folder with answers.md; graded by `grader batch` with a short rubric."""
    tmp = tmp_path_factory.mktemp("manual")
    submissions = tmp / "submissions"
    submissions.mkdir()
    nbformat.write(_answered(ADA, plot=True), str(submissions / "ada.ipynb"))
    nbformat.write(_answered(None), str(submissions / "bo.ipynb"))
    nbformat.write(_answered(DEE), str(submissions / "dee.ipynb"))
    folder = submissions / "cy"
    folder.mkdir()
    shutil.copy(ROOT / "solutions" / "transfer_learning.py", folder)
    (folder / "answers.md").write_text(f"# Answers\n\n## {ITEM}\n\n{CY}\n")
    data = yaml.safe_load(DEFAULT_RUBRIC.read_text())
    data["items"] = [i for i in data["items"] if i["id"] in ("interface", ITEM)]
    rubric = tmp / "rubric.yaml"
    rubric.write_text(yaml.safe_dump(data))
    out = tmp / "out"
    result = _grader("batch", str(submissions), "--out", str(out), "--rubric", str(rubric),
                     "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"manual items: 0 of 4 graded (4 to grade); grade them in `grader review {out}`" in result.stdout
    return out


def test_the_batch_keeps_each_answer_as_written(batch):
    book = Gradebook(batch / "gradebook.sqlite")
    try:
        found = {s["student"]: book.answers(s["student"]).get(ITEM) for s in book.submissions()}
    finally:
        book.close()
    assert found["ada"]["text"] == ADA and [i["data"] for i in found["ada"]["images"]] == [PNG]
    assert found["bo"] is None  # the generated placeholder is no answer
    assert found["cy"]["text"] == CY and found["dee"]["text"] == DEE


@pytest.fixture(scope="module")
def review(batch):
    """`grader review OUT` as a TA starts it; its URL as it prints it."""
    process = subprocess.Popen([sys.executable, "-m", "grader", "review", str(batch), "--no-browser",
                                "--grader", "ta-keyboard"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    match = re.search(r"(http://127\.0\.0\.1:\d+/)\?token=(\S+)", line)
    assert match, line + process.stderr.read()
    yield match.group(1), match.group(2)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=20) == 0
    assert "grader review stopped." in process.stdout.read()


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


def _shown(driver) -> str:
    """The student whose answer the page shows (the heading's first line)."""
    return driver.find_element(By.TAG_NAME, "h1").text.strip().splitlines()[0]


def test_a_ta_grades_every_answer_with_the_keyboard(batch, review, browser):
    base, token = review
    browser.get(f"{base}?token={token}")
    assert [a.text for a in browser.find_elements(By.CSS_SELECTOR, "a.row-link")] == sorted(SCORES)
    browser.get(f"{base}q/{ITEM}?i=1")
    graded = []
    for _ in SCORES:
        student = _shown(browser)
        page = browser.find_element(By.TAG_NAME, "main").text
        if student == "bo":
            assert "no answer" in page.lower()
        else:
            assert {"ada": ADA, "cy": CY, "dee": DEE}[student] in page
        keys(browser, "s")
        assert browser.switch_to.active_element.get_attribute("name") == "score"
        keys(browser, SCORES[student])
        ctrl(browser, Keys.ENTER)
        wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".notice"))
        graded.append(student)
        if len(graded) < len(SCORES):
            keys(browser, "j")
            wait(browser, lambda d: _shown(d) not in graded)
    assert sorted(graded) == sorted(SCORES)
    if os.environ.get("GRADER_SCREENSHOTS"):
        browser.save_screenshot(os.environ["GRADER_SCREENSHOTS"])


def test_the_grades_are_in_the_gradebook_the_exports_and_the_report(batch, review, browser):
    book = Gradebook(batch / "gradebook.sqlite")
    try:
        given = {m["student"]: m for m in book.manual()}
        status = {s["student"]: book.manual_status(s["student"]) for s in book.submissions()}
        autograded = {s["student"]: s["score"] for s in book.submissions()}
    finally:
        book.close()
    assert {s: f"{m['score']:g}" for s, m in given.items()} == SCORES
    assert {m["grader"] for m in given.values()} == {"ta-keyboard"}
    assert all(s == {ITEM: "graded"} for s in status.values())
    table = {r["student"]: r for r in csv.DictReader((batch / "grades.csv").open())}
    assert {s: r[ITEM] for s, r in table.items()} == SCORES
    assert all(r["manual"] == "graded" for r in table.values())
    assert {s: float(r["total"]) for s, r in table.items()} == {
        s: autograded[s] + float(SCORES[s]) for s in SCORES}
    moodle = {r["username"]: r for r in csv.DictReader((batch / "moodle.csv").open())}
    assert {s: float(r[next(k for k in r if k not in ("username", "feedback"))])
            for s, r in moodle.items()} == {s: float(table[s]["total"]) for s in SCORES}
    results = json.loads((batch / "gradescope" / "cy" / "results.json").read_text())
    assert [t["score"] for t in results["tests"] if t["number"] == ITEM] == [6.5]
    assert "graded by a person" in (batch / "feedback" / "cy.md").read_text()
    report = _grader("report", str(batch))
    assert report.returncode == 0, report.stderr
    assert "manual grading: 4 graded, 0 to grade, 0 need review" in report.stdout
    html = (batch / "report" / "report.html").read_text()
    assert "<script" not in html and html.count('src="data:image/png;base64,') >= 7
    exported = _grader("export", str(batch), "--released")
    assert exported.returncode == 0 and "for 4 submission(s)" in exported.stdout


def test_editing_the_written_questions_regrades_nothing(batch, review, browser):
    """A prompt reworded and a question added mid-grading: no submission is graded again
    (the batch hash leaves manual items out), the grades given stand, and the new question
    is to grade, its answers read again."""
    rubric = batch.parent / "rubric.yaml"
    data = yaml.safe_load(rubric.read_text())
    manual = next(i for i in data["items"] if i["id"] == ITEM)
    manual["prompt"] += "\nSay also which one you would pick for a new task.\n"
    data["items"].append({**manual, "id": "second", "title": "A second question"})
    rubric.write_text(yaml.safe_dump(data))
    result = _grader("batch", str(batch.parent / "submissions"), "--out", str(batch), "--rubric",
                     str(rubric), "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 submissions, 4 already graded, 0 to grade" in result.stderr
    book = Gradebook(batch / "gradebook.sqlite")
    try:
        assert {s["student"]: book.manual_status(s["student"]) for s in book.submissions()} == {
            s: {ITEM: "graded", "second": "to grade"} for s in SCORES}
        # read again for the current items: nobody answered the new one yet
        assert set(book.answers("cy")) == set(book.answers("ada")) == {ITEM}
    finally:
        book.close()


def test_an_answer_edited_alone_is_read_again_without_grading_the_code(batch):
    """dee rewrites the notebook's answer cell and cy the answers.md beside the module; the
    code is as it was: nothing is graded again (the code's hash is the key), both answers
    are read anew, and the grades given for the old ones need review."""
    submissions = batch.parent / "submissions"
    nbformat.write(_answered(DEE + " Because the features were learned already."), str(submissions / "dee.ipynb"))
    (submissions / "cy" / "answers.md").write_text(f"# Answers\n\n## {ITEM}\n\n{CY} Edited.\n")
    result = _grader("batch", str(submissions), "--out", str(batch), "--rubric",
                     str(batch.parent / "rubric.yaml"), "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 submissions, 4 already graded, 0 to grade" in result.stderr
    book = Gradebook(batch / "gradebook.sqlite")
    try:
        assert book.answers("dee")[ITEM]["text"].endswith("learned already.")
        assert book.answers("cy")[ITEM]["text"].endswith("Edited.")
        assert book.manual_status("dee")[ITEM] == book.manual_status("cy")[ITEM] == "needs review"
        assert book.manual_status("ada")[ITEM] == "graded"
    finally:
        book.close()
    # a change to the code is graded again
    nb = _answered(DEE)
    code = next(c for c in nb.cells if c.cell_type == "code" and "def preprocess" in c.source)
    code.source += "\n# a comment the student added\n"
    nbformat.write(nb, str(submissions / "dee.ipynb"))
    result = _grader("batch", str(submissions), "--out", str(batch), "--rubric",
                     str(batch.parent / "rubric.yaml"), "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "4 submissions, 3 already graded, 1 to grade" in result.stderr
