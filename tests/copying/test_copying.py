"""`grader similarity`: disguised copies found, honest solutions not flagged, the given
code never counted, unreadable code read as text, the page safe to open, and the
advisory entries in `grader flags`."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

from grader import copying
from grader.copying import code as code_mod, fingerprints
from grader.engine import ItemResult, Report
from grader.errors import KitError
from grader.records.gradebook import Gradebook
from kit import ROOT

CORPUS = ROOT / "tests" / "corpus"
COPIES = CORPUS / "copies"
# Every copy's source and two more solutions form the class; the other seven independent
# solutions are the background that tells idioms from copies (a real run has all 14).
FIXED_CLASS = ("transfer_learning", "sequential_fit", "functional_adamw", "custom_tfnn_layers",
               "untagged_subclassed_globals", "subclassed_eager", "untagged_kit_data")
# measured at the shipped threshold (benchmarks/bench_similarity.py; docs/copying.md's table)
COPIES_FOUND = 13


def honest_files() -> dict[str, Path]:
    files = [ROOT / "solutions" / "transfer_learning.py", *sorted((CORPUS / "correct").glob("*")),
             *sorted((CORPUS / "notebooks").glob("*.ipynb"))]
    return {p.stem: p for p in files}


@pytest.fixture(scope="module")
def given():
    return copying.given_code()


@pytest.fixture(scope="module")
def class_result(given):
    """The class: FIXED_CLASS and the 15 disguised copies; the rest as background."""
    entries = yaml.safe_load((COPIES / "copies.yaml").read_text())
    assert {Path(e["source"]).stem for e in entries} <= set(FIXED_CLASS)
    files = honest_files()
    codes = [copying.read_code(name, files[name]) for name in FIXED_CLASS]
    codes += [copying.read_code("copy:" + e["file"], COPIES / e["file"]) for e in entries]
    background = [copying.read_code(n, p).text for n, p in files.items() if n not in FIXED_CLASS]
    return entries, copying.compare(codes, given, background=background)


def test_disguised_copies_are_found_against_their_source(class_result):
    entries, result = class_result
    reported = {frozenset((p.a, p.b)) for p in result.pairs}
    found = [e["file"] for e in entries
             if frozenset(("copy:" + e["file"], Path(e["source"]).stem)) in reported]
    assert len(found) == COPIES_FOUND, sorted(set(e["file"] for e in entries) - set(found))
    # every light disguise (names, comments, layout) is found
    assert {e["file"] for e in entries if e["level"] == "light"} <= set(found)


def test_no_honest_pair_is_flagged(class_result):
    _, result = class_result
    honest = set(FIXED_CLASS)
    flagged = [p.label() for p in result.pairs if p.a in honest and p.b in honest]
    assert flagged == []
    # nor a copy against a solution it was not made from
    entries, _ = class_result
    source = {"copy:" + e["file"]: Path(e["source"]).stem for e in entries}
    wrong = [p.label() for p in result.pairs
             if (p.a in source and p.b in honest and source[p.a] != p.b)
             or (p.b in source and p.a in honest and source[p.b] != p.a)]
    assert wrong == []


def test_copies_of_one_source_form_a_group(class_result):
    _, result = class_result
    groups = [set(g) for g in result.groups]
    assert any({"sequential_fit", "copy:sequential_fit__light.py",
                "copy:sequential_fit__medium.py"} <= g for g in groups), result.groups


def test_the_given_code_never_counts(given):
    skeleton_py = copying.read_code("skeleton_py", ROOT / "skeletons" / "transfer_learning.py")
    skeleton_nb = copying.read_code("skeleton_nb", ROOT / "skeletons" / "transfer_learning.ipynb")
    empty = copying.Code("empty", "")
    honest = copying.read_code("honest", ROOT / "tests" / "corpus" / "correct" / "sequential_fit.py")
    result = copying.compare([skeleton_py, skeleton_nb, empty,
                                 copying.Code("skeleton_again", skeleton_py.text), honest], given)
    assert result.pairs == []
    assert set(result.too_little) == {"skeleton_py", "skeleton_nb", "empty", "skeleton_again"}
    assert honest.own > copying.MIN_OWN


def test_names_comments_and_order_are_ignored(given):
    source = (CORPUS / "correct" / "sequential_fit.py").read_text()
    renamed = source
    for old, new in (("images", "pictures"), ("labels", "targets"), ("model", "net")):
        renamed = renamed.replace(old, new)
    # the functions in reverse order, every comment and blank line gone
    blocks = renamed.split("\n\n\n")
    disguised = "\n\n\n".join(reversed(blocks))
    disguised = "\n".join(line.split("  #")[0] for line in disguised.splitlines()
                          if line.strip() and not line.lstrip().startswith("#"))
    result = copying.compare([copying.Code("a", source), copying.Code("b", disguised)],
                                given, keep_below=True)
    assert result.pairs[0].score > 0.9


NO_OPS = {  # changes that leave the program as it was: each is seen through
    "a form feed in a comment": lambda t: "# setup\x0c)\x0c)\x0c)\n" + t,
    "an import before every statement": lambda t: "\n".join(
        "import os; " + line if line and not line[0].isspace() and not line.startswith(
            ("def ", "class ", "@", "#", ")", "]", "}", '"', "'", "from ", "import ")) else line
        for line in t.splitlines()),
    "trailing commas": lambda t: t.replace("=True)", "=True,)").replace("name)", "name,)"),
    "imports by other spellings": lambda t: t.replace(
        "import tensorflow as tf\n", "tf = __import__('tensorflow')\nkeras_api = tf.keras\n"),
    "pass and strings as comments": lambda t: "\n".join(
        line[:len(line) - len(line.lstrip())] + repr(line.strip()[2:]) + "; pass"
        if line.lstrip().startswith("# ") else line for line in t.splitlines()),
    "a byte order mark": lambda t: "\ufeff" + t,
}


@pytest.mark.parametrize("change", sorted(NO_OPS))
def test_changes_that_leave_the_program_as_it_was_are_seen_through(given, change):
    source = (CORPUS / "correct" / "functional_adamw.py").read_text()
    changed = NO_OPS[change](source)
    assert changed != source
    compile(changed.removeprefix("\ufeff"), "changed", "exec")  # still a valid program
    codes = [copying.Code("a", source), copying.Code("b", changed.removeprefix("\ufeff"))
             if change != "a byte order mark" else copying.Code("b", changed)]
    result = copying.compare(codes, given, keep_below=True)
    assert result.pairs and result.pairs[0].score > 0.9, (change, result.pairs[:1])


def test_a_byte_order_mark_is_read_past(given, tmp_path):
    source = (CORPUS / "correct" / "functional_adamw.py").read_text()
    (tmp_path / "bom.py").write_text("\ufeff" + source, encoding="utf-8")
    code = copying.read_code("bom", tmp_path / "bom.py")
    assert code.text == source and code.note == ""


def test_given_code_stays_given_when_students_bind_what_it_leaves_open(given):
    """The skeleton reads names the student binds (its training loop's `step`): two
    untouched skeletons that each bind one of them are still the given code only."""
    skeleton = (ROOT / "skeletons" / "transfer_learning.py").read_text()
    a = copying.Code("a", skeleton + "\nstep = None\n")
    b = copying.Code("b", skeleton + "\nstep = 0\n")
    result = copying.compare([a, b], given, keep_below=True)
    assert result.pairs == [] and set(result.too_little) == {"a", "b"}


@pytest.mark.slow
def test_hostile_code_is_read_without_harm(given, tmp_path):
    deep = tmp_path / "deep.py"
    deep.write_text("x = 1" + " + 1" * 5000 + "\n")
    huge = tmp_path / "huge.py"
    huge.write_text("x = 1\n" * (code_mod.MAX_TEXT // 4))
    codes = [copying.read_code("deep", deep), copying.read_code("huge", huge)]
    copying.compare(codes, given)
    assert "RecursionError" in codes[0].note or "MemoryError" in codes[0].note
    assert len(codes[1].text) <= code_mod.MAX_TEXT and "longer than" in codes[1].note


def test_code_that_cannot_be_read_is_compared_as_text_and_says_so(given, tmp_path):
    source = CORPUS / "correct" / "functional_adamw.py"
    broken = tmp_path / "broken.py"
    broken.write_text(source.read_text().replace("def build_model(", "def build_model((", 1))
    notebook = tmp_path / "broken.ipynb"
    good = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source.read_text())])
    notebook.write_text(nbformat.writes(good)[:-40])  # cut short: not JSON any more
    import zipfile
    refused = tmp_path / "refused.zip"  # the grader refuses it (a path out of the archive)
    with zipfile.ZipFile(refused, "w") as archive:
        archive.writestr("../evil.txt", "x")
        archive.writestr("work/transfer_learning.py", source.read_text())
    codes = [copying.read_code("source", source), copying.read_code("broken", broken),
             copying.read_code("notebook", notebook), copying.read_code("refused", refused)]
    result = copying.compare(codes, given)
    notes = {c.student: c.note for c in codes}
    assert "does not parse" in notes["broken"] and "read as text" in notes["broken"]
    assert "recovered" in notes["notebook"]
    assert "outside the archive" in notes["refused"] and "transfer_learning.py" in notes["refused"]
    reported = {frozenset((p.a, p.b)) for p in result.pairs}
    assert frozenset(("source", "broken")) in reported
    assert frozenset(("source", "notebook")) in reported
    assert frozenset(("source", "refused")) in reported


def test_the_page_shows_student_code_as_text(given):
    source = (CORPUS / "correct" / "functional_adamw.py").read_text()
    hostile = source + '\nNOTE = "</pre><script>alert(1)</script><img src=x onerror=alert(2)>"\n'
    result = copying.compare([copying.Code("a", hostile), copying.Code("b<script>", hostile)],
                                given)
    page = copying.render(result, "class <b>1</b>")
    assert "<script>" not in page and "<img" not in page and "<b>1" not in page
    assert "&lt;script&gt;alert(1)" in page and "<mark>" in page


def _book(out: Path, sources: dict[str, Path]) -> None:
    out.mkdir()
    book = Gradebook(out / "gradebook.sqlite")
    for student, path in sources.items():
        report = Report(student, [ItemResult("interface", "Interface", 5, 5, "passed", "", 0.0)])
        book.record(student, str(path), "hash", "rubric", report, "graded")
    book.close()


def test_verb_records_advisory_flags_and_writes_the_page(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    source = (CORPUS / "correct" / "subclassed_fit.py").read_text()
    (subs / "ann.py").write_text(source)
    (subs / "bob.py").write_text(source.replace("images", "imgs").replace("# ", "# note: "))
    (subs / "cat.py").write_text((CORPUS / "correct" / "table_driven.py").read_text())
    (subs / "dan.py").write_text((ROOT / "skeletons" / "transfer_learning.py").read_text())
    out = tmp_path / "out"
    _book(out, {p.stem: p for p in sorted(subs.iterdir())})
    run = subprocess.run([sys.executable, "-m", "grader", "similarity", str(out)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "ann and bob" in run.stdout and "not compared" in run.stdout and "dan" in run.stdout
    page = (out / "similarity.html").read_text()
    assert "ann" in page and "bob" in page and "<mark>" in page
    flags = subprocess.run([sys.executable, "-m", "grader", "flags", str(out)],
                           capture_output=True, text=True, cwd=ROOT)
    assert "similar to bob" in flags.stdout and "similar to ann" in flags.stdout
    assert copying.shown("carol\nfake (10 / 10, graded)") == "carol\\nfake (10 / 10, graded)"
    assert "cat" not in flags.stdout
    # advisory: no score moved
    book = Gradebook(out / "gradebook.sqlite")
    assert {r["student"]: r["score"] for r in book.submissions()} == \
        {"ann": 5, "bob": 5, "cat": 5, "dan": 5}
    # a regraded submission's entries go until the next comparison
    book.record("bob", str(subs / "bob.py"), "other", "rubric",
                Report("bob", [ItemResult("interface", "Interface", 5, 5, "passed", "", 0.0)]), "graded")
    assert book.similar() == []
    book.close()


def _book_with_behaviour(out: Path, sources: dict[str, tuple[Path, dict]]) -> None:
    """A gradebook whose items kept the behaviour given (as "item: name" -> values)."""
    out.mkdir()
    book = Gradebook(out / "gradebook.sqlite")
    for student, (path, kept) in sources.items():
        by_item: dict[str, dict] = {}
        for key, spec in kept.items():
            item, name = key.split(": ", 1)
            by_item.setdefault(item, {})[name] = spec
        items = [ItemResult(item, item, 1, 1, "passed", "", 0.0, "visible", {"behaviour": found})
                 for item, found in by_item.items()]
        items.append(ItemResult("curves", "c", 1, 1, "passed", "", 0.0, "visible",
                                {"curves": {"loss": [[1, 2.3], [2, 1.7], [3, 0.9]]}}))
        book.record(student, str(path), "hash", "rubric", Report(student, items), "graded")
    book.close()


def _moved(kept: dict, checks=("training", "checkpoint")) -> dict:
    """A kit solution's behaviour with the numbers of `checks` moved, as another choice of
    optimizer moves them: a run no kit solution made."""
    return {key: ({**spec, "numbers": [v * 1.01 + 0.1 for v in spec["numbers"]]}
                  if "numbers" in spec and key.split(": ")[0] in checks else spec)
            for key, spec in kept.items()}


def test_copies_that_ran_alike_are_reported_whatever_their_code(tmp_path):
    """A held-out heavy copy scores far under the code threshold against its source, and
    ran as it did, in two checks a way no kit solution ran: reported, with the behaviour
    beside the code. Two independent solutions that both follow the skeleton to the letter
    run alike too, as the kit's own do: nothing of theirs is their own, so they are named
    in a notice, not reported."""
    background = copying.background_behaviour()
    subs = tmp_path / "subs"
    subs.mkdir()
    own = _moved(background["table_driven"])
    plan = {"ann": (CORPUS / "correct" / "table_driven.py", own),
            "bob": (CORPUS / "heldout" / "table_driven__heavy_b.py", own),
            "cat": (CORPUS / "correct" / "subclassed_fit.py", background["subclassed_fit"]),
            "dee": (CORPUS / "correct" / "sequential_eager.py", background["sequential_eager"]),
            "eve": (CORPUS / "correct" / "student_notebook_a.ipynb", background["student_notebook_a"])}
    sources = {}
    for student, (path, kept) in plan.items():
        target = subs / (student + path.suffix)
        target.write_bytes(path.read_bytes())
        sources[student] = (target, kept)
    out = tmp_path / "out"
    _book_with_behaviour(out, sources)
    result = copying.run(out)
    by_pair = {frozenset((p.a, p.b)): p for p in result.pairs}
    copy = by_pair[frozenset(("ann", "bob"))]
    assert copy.score < copying.THRESHOLD and copy.behaviour is not None
    assert copy.strength == "behaviour" and len(copy.behaviour.agreed) >= 8
    assert copy.behaviour.rare == ["checkpoint", "training"]
    assert frozenset(("dee", "eve")) not in by_pair and len(result.pairs) == 1
    assert any(n.startswith("dee, eve ran alike") and "kit's own" in n for n in result.notices)
    page = (out / "similarity.html").read_text()
    assert "Behaviour when graded" in page and "<polyline" in page and "training: logits" in page
    flags = subprocess.run([sys.executable, "-m", "grader", "flags", str(out)],
                           capture_output=True, text=True, cwd=ROOT)
    assert "similar to bob, ran alike in all" in flags.stdout and "code 0." in flags.stdout


def test_behaviour_alike_joins_the_code_evidence_of_a_pair_already_reported(tmp_path):
    """A light copy is found by its code and ran as its source: one entry, strong."""
    background = copying.background_behaviour()
    subs = tmp_path / "subs"
    subs.mkdir()
    (subs / "ann.py").write_bytes((CORPUS / "correct" / "functional_adamw.py").read_bytes())
    (subs / "bob.py").write_bytes((COPIES / "functional_adamw__light.py").read_bytes())
    out = tmp_path / "out"
    _book_with_behaviour(out, {name: (subs / f"{name}.py", _moved(background["functional_adamw"]))
                               for name in ("ann", "bob")})
    result = copying.run(out)
    assert [(p.a, p.b, p.strength) for p in result.pairs] == [("ann", "bob", "strong: code and behaviour")]
    book = Gradebook(out / "gradebook.sqlite")
    try:
        assert [s["evidence"].endswith("(strong)") for s in book.similar()] == [True, True]
    finally:
        book.close()


def test_verb_errors_are_one_line(tmp_path):
    run = subprocess.run([sys.executable, "-m", "grader", "similarity", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode != 0 and "gradebook.sqlite" in run.stderr
    assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    out = tmp_path / "out"
    _book(out, {"gone": tmp_path / "gone.py"})
    run = subprocess.run([sys.executable, "-m", "grader", "similarity", str(out)],
                         capture_output=True, text=True, cwd=ROOT)
    assert run.returncode != 0 and "--submissions" in run.stderr and "Traceback" not in run.stderr
    assert not (out / "similarity.html").exists()


# --- issue 31: a long line, a submission that cannot be read, names as data ------------------

def test_byte_columns_of_a_megabyte_line_are_mapped_by_one_table():
    """ast gives columns in UTF-8 bytes; each line's table from bytes to characters is
    built once, so a 1 MB line of many statements is mapped in linear time (it was encoded
    again for every statement on it: 300 kB took minutes)."""
    import random

    line = ("é" + "a" * 3 + "€" + "\U0001F600") * ((1 << 20) // 6)
    data = line.encode()
    table = fingerprints._byte_starts(line)
    assert len(table) == len(line) + 1 and table[-1] == len(data)
    random.seed(31)
    columns = [0, len(data), len(data) + 5, *random.sample(range(len(data)), 100)]
    for col in columns:
        assert fingerprints._char_index(table, col) == len(data[:col].decode("utf-8", "replace"))
    assert fingerprints._byte_starts("x = 1") == 5 and fingerprints._char_index(5, 9) == 5


def test_a_long_line_of_statements_builds_its_column_table_once(monkeypatch):
    built = []
    real = fingerprints._byte_starts
    monkeypatch.setattr(fingerprints, "_byte_starts", lambda line: built.append(len(line)) or real(line))
    line = '"é"; ' * 2000 + 'import os; x = "ü"'
    found = fingerprints._names("y = 1\n" + line + "\n", [])
    assert built == [len(line)]  # one table for the one line with dropped statements
    text = "y = 1\n" + line + "\n"
    dropped = [text[a:b] for a, b in sorted(found.dropped)]
    assert dropped == ['"é"'] * 2000 + ["import os"]


def _bad_name_zip(path: Path, source: str) -> Path:
    """A zip whose member names say UTF-8 (flag bit 11) and one of which is not."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("work/transfer_learning.py", source)
        archive.writestr("notes_caf\u00e9.py", "x = 1\n")
    path.write_bytes(path.read_bytes().replace("caf\u00e9".encode(), b"caf\xff\xfe"))
    with pytest.raises(UnicodeDecodeError):
        zipfile.ZipFile(path)
    return path


def test_a_zip_with_a_member_name_that_is_not_utf8_is_one_note(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    source = (CORPUS / "correct" / "subclassed_fit.py").read_text()
    (subs / "ann.py").write_text(source)
    (subs / "bob.py").write_text(source.replace("images", "imgs"))
    _bad_name_zip(subs / "zed.zip", source)
    out = tmp_path / "out"
    _book(out, {p.stem: p for p in sorted(subs.iterdir())})
    result = copying.run(out)  # the class is still compared
    assert [(p.a, p.b) for p in result.pairs] == [("ann", "bob")]
    assert result.too_little == ["zed"]
    note = {c.student: c.note for c in result.codes}["zed"]
    assert "zed.zip" in note and "UnicodeDecodeError" in note
    text = copying.summary(result, out)
    assert sum("zed" in line for line in text.splitlines()) == 2  # not compared; why
    assert "zed.zip" in (out / "similarity.html").read_text()


def test_any_failure_reading_or_normalising_one_submission_is_its_own(given, monkeypatch, tmp_path):
    import grader.submission

    source = (CORPUS / "correct" / "functional_adamw.py").read_text()

    def refuse(path, exercise=None):
        raise RecursionError("deep")

    def no_memory(path, module_name=None):
        raise MemoryError

    monkeypatch.setattr(grader.submission, "graded_code", refuse)
    monkeypatch.setattr(code_mod, "_raw_text", no_memory)
    unread = copying.read_code("unread", tmp_path / "any.py")
    assert unread.text == "" and "any.py" in unread.note and "MemoryError" in unread.note

    real = copying.tokens

    def tokens(text, names=frozenset()):
        if "POISON" in text:
            raise RecursionError("deep")
        return real(text, names)

    monkeypatch.setattr(code_mod, "tokens", tokens)
    codes = [copying.Code("a", source), copying.Code("b", source),
             copying.Code("poison", source + "\nPOISON = 1\n"), unread]
    result = copying.compare(codes, given)
    assert [(p.a, p.b) for p in result.pairs] == [("a", "b")]
    assert set(result.too_little) == {"poison", "unread"}
    assert "RecursionError" in codes[2].note


def test_names_and_messages_are_shown_as_one_printable_line(given, tmp_path):
    """A right-to-left override makes '\\u202enna' read as 'ann': on the page and in the
    terminal it is spelled out, in names, notes, groups, the title and the code views."""
    from grader import names

    assert copying.shown is names.shown
    source = (CORPUS / "correct" / "functional_adamw.py").read_text()
    codes = [copying.Code("ann", source), copying.Code("\u202enna", source),
             copying.Code("\u202ebob", source + "\nx = '\u202e'  # \u2066\n"),
             copying.Code("empty\u200b", "", "sub\u202emitted.py: could not be read.")]
    result = copying.compare(codes, given)
    result.notices = ["the batch graded \u202eyppa"]
    assert result.groups and result.pairs
    page = copying.render(result, "class \u202e1")
    terminal = copying.summary(result, tmp_path / "out\u202e")
    for shown in (page, terminal):
        assert not any(c in shown for c in "\u202e\u2066\u200b"), shown[:200]
        assert "\\u202enna" in shown and "empty\\u200b" in shown and "sub\\u202emitted" in shown
        assert "\\u202eyppa" in shown
    assert "class \\u202e1" in page and "out\\u202e" in terminal
    assert "x = &#39;\\u202e&#39;  # \\u2066\n" in page  # the code view: its lines kept
    with pytest.raises(KitError) as error:
        copying.run(tmp_path / "no\u202ebook")
    assert "\u202e" not in str(error.value)
