"""grader.answers: students' answers to the manual items, read without running anything."""
from __future__ import annotations

import base64
import json
import zipfile

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from grader import answers
from grader.answers import PLACEHOLDER, tag

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()
IDS = ["compare", "second"]


def _notebook(path, cells):
    nbformat.write(new_notebook(cells=cells), str(path))
    return path


def test_markdown_answers_images_and_what_counts_as_no_answer(tmp_path):
    plot = new_code_cell("plt.show()", metadata={"tags": ["experiment", tag("compare")]})
    plot.outputs = [new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"}),
                    new_output("display_data", data={"image/png": "not base64 !!"}),
                    new_output("display_data", data={"image/png": base64.b64encode(b"GIF89a").decode()})]
    pasted = new_markdown_cell("See the figure: ![x](attachment:a.png)",
                               metadata={"tags": [tag("compare")]})
    pasted["attachments"] = {"a.png": {"image/png": PNG}}
    path = _notebook(tmp_path / "s.ipynb", [
        new_markdown_cell("**Transfer** wins: 0.62 against 0.31.", metadata={"tags": [tag("compare")]}),
        plot, pasted,
        new_markdown_cell(PLACEHOLDER, metadata={"tags": [tag("second")]}),
        new_markdown_cell("not tagged, not an answer"),
        new_markdown_cell("an item the rubric does not have", metadata={"tags": [tag("other")]}),
    ])
    found = answers.extract(path, IDS)
    compare = found.items["compare"]
    assert compare.text == "**Transfer** wins: 0.62 against 0.31.\n\nSee the figure: ![x](attachment:a.png)"
    # the valid PNGs only (an invalid base64 or a GIF under image/png is dropped), in order
    assert [i["data"] for i in compare.images] == [PNG, PNG]
    assert found.items["second"].empty and not found.problem  # the placeholder is no answer
    assert set(found.items) == set(IDS)


def test_the_digest_follows_the_answer(tmp_path):
    one = answers.Answer("0.62 against 0.31")
    assert one.digest == answers.Answer("0.62 against 0.31\n").digest  # trailing space: same answer
    assert one.digest != answers.Answer("0.62 against 0.35").digest
    assert one.digest != answers.Answer("0.62 against 0.31", [{"mime": "image/png", "data": PNG}]).digest


def test_bounds_on_what_is_kept(tmp_path):
    many = new_code_cell("", metadata={"tags": [tag("compare")]})
    many.outputs = [new_output("display_data", data={"image/png": PNG})] * (answers.MAX_IMAGES + 4)
    long = new_markdown_cell("x" * (answers.MAX_TEXT + 100), metadata={"tags": [tag("compare")]})
    found = answers.extract(_notebook(tmp_path / "s.ipynb", [many, long]), IDS).items["compare"]
    assert len(found.images) == answers.MAX_IMAGES
    assert len(found.text) < answers.MAX_TEXT + 100 and found.text.endswith("longer than the grader keeps]")


def test_an_unreadable_notebook_says_why(tmp_path):
    path = tmp_path / "broken.ipynb"
    path.write_text("{ not json")
    found = answers.extract(path, IDS)
    assert found.problem.startswith("broken.ipynb: could not be read as a notebook")
    assert all(a.empty for a in found.items.values())
    tags_not_a_list = tmp_path / "odd.ipynb"
    nb = new_notebook(cells=[new_markdown_cell("hi")])
    nb.cells[0].metadata["tags"] = "answer:compare"  # a string where the format wants a list
    tags_not_a_list.write_text(json.dumps(nb))
    assert answers.extract(tags_not_a_list, IDS).items["compare"].empty


ANSWERS_MD = f"""# Answers

Text before any heading is not read.

## compare

Transfer wins, 0.62 against 0.31.

## second

{PLACEHOLDER}
"""


def test_a_py_submission_answers_in_answers_md_beside_it(tmp_path):
    folder = tmp_path / "ada"
    folder.mkdir()
    (folder / "transfer_learning.py").write_text("x = 1\n")
    (folder / "answers.md").write_text(ANSWERS_MD)
    found = answers.extract(folder, IDS)
    assert found.items["compare"].text == "Transfer wins, 0.62 against 0.31."
    assert found.items["second"].empty
    archive = tmp_path / "bo.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(folder / "transfer_learning.py", "work/transfer_learning.py")
        zf.write(folder / "answers.md", "work/answers.md")
    assert answers.extract(archive, IDS).items["compare"].text == "Transfer wins, 0.62 against 0.31."
    lone = tmp_path / "cy.py"
    lone.write_text("x = 1\n")
    assert answers.extract(lone, IDS).items["compare"].empty
    (tmp_path / "answers.md").write_text(ANSWERS_MD)  # in a batch's folder: nobody's
    assert answers.extract(lone, IDS).items["compare"].empty
    assert answers.extract(lone, IDS, own_folder=True).items["compare"].text.startswith("Transfer")
    (tmp_path / "cy.answers.md").write_text(ANSWERS_MD)
    assert answers.extract(lone, IDS).items["compare"].text.startswith("Transfer wins")


def test_one_manual_item_takes_a_file_without_headings(tmp_path):
    assert answers.from_markdown("Just my answer.\n", ["compare"]).items["compare"].text == "Just my answer."
    assert answers.from_markdown("Just my answer.\n", IDS).items["compare"].empty


def test_a_zip_that_cannot_be_opened_says_why(tmp_path):
    archive = tmp_path / "bad.zip"
    archive.write_bytes(b"PK not really")
    found = answers.extract(archive, IDS)
    assert "bad.zip: expected a zip archive" in found.problem
