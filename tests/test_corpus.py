"""Honest grading: every correct solution earns full marks on every item, visible and
hidden (and, in tests/test_corpus_variants.py, every broken variant loses exactly the items
its mistake touches).

The correct solutions in tests/corpus/correct/ were written from the module contract
alone, independently of the reference and of each other. Each is graded once per session
with the shipped rubric, one worker per solution, and several tests read that report.
"""
from __future__ import annotations

import dataclasses
import shutil

import pytest
import yaml

from grader import copying, corpus, engine, rubric
from grader.copying import behaviour
from kit import DEFAULT_RUBRIC, grade_file, lost, messages

SHIPPED = rubric.load(DEFAULT_RUBRIC)
CORRECT = corpus.correct_solutions()
NOTEBOOKS = corpus.student_notebooks()
GRADED = {**CORRECT, **NOTEBOOKS}
VARIANTS = corpus.load_variants()
_REPORTS: dict[str, engine.Report] = {}


def full_report(name, inputs, tmp_path_factory) -> engine.Report:
    """The shipped rubric, every item, graded once per session for each correct solution."""
    if name not in _REPORTS:
        _REPORTS[name] = grade_file(GRADED[name], SHIPPED, inputs, tmp_path_factory.mktemp(name))
    return _REPORTS[name]


def test_corpus_is_large_and_varied():
    """At least 8 modules and 2 notebooks besides the reference, and 24 distinct mistakes
    built on several of them."""
    suffixes = [p.suffix for name, p in CORRECT.items() if name != corpus.REFERENCE]
    assert suffixes.count(".py") >= 8 and suffixes.count(".ipynb") >= 2
    assert len(VARIANTS) >= 24 and len({v.base for v in VARIANTS}) >= 4
    assert all(v.loses for v in VARIANTS)
    ids = {i.id for i in SHIPPED.items}
    assert all(v.loses <= ids for v in VARIANTS), [v.name for v in VARIANTS if not v.loses <= ids]
    assert all(v.may_lose <= ids - v.loses for v in VARIANTS)
    # every lost item names its cause (an item a chaotic run may cost, when it does); every
    # item a variant must not mislead on exists
    assert all(v.loses <= {item for item, _ in v.says} <= v.loses | v.may_lose for v in VARIANTS), \
        [v.name for v in VARIANTS if not v.loses <= {item for item, _ in v.says} <= v.loses | v.may_lose]
    assert all({item for item, _ in v.not_says} <= ids for v in VARIANTS)
    assert sum(bool(v.may_lose) for v in VARIANTS) <= 2  # an exception, not a way out


@pytest.mark.parametrize("name", list(GRADED))
def test_correct_solution_gets_full_marks_on_every_item(name, shipped_inputs, tmp_path_factory):
    report = full_report(name, shipped_inputs, tmp_path_factory)
    assert lost(report) == set(), messages(report)
    assert report.score == report.max_score == SHIPPED.max_points
    assert report.flags == [], report.flags  # honest work is never flagged for review
    assert report.notes == [], report.notes  # nothing a correct notebook needs was skipped


def test_students_notebooks_are_untagged_and_carry_the_exercise_snippets():
    """The notebooks in corpus/notebooks are written as students write them: no tags, the
    weights file opened at top level, demo lines reusing the functions' parameter names."""
    import nbformat

    assert len(NOTEBOOKS) >= 3
    for name, path in NOTEBOOKS.items():
        nb = nbformat.read(str(path), as_version=4)
        code = [c.source for c in nb.cells if c.cell_type == "code"]
        assert not any(c.get("metadata", {}).get("tags") for c in nb.cells), name
        text = "\n".join(code)
        assert "model = build_model(" in text and "%" in text and "!" in text, name
        assert sum("def " in c for c in code) >= 3 and len(code) >= 10, name


def kept_behaviour(report) -> dict:
    """What the report's checks kept of the run, as `grader similarity` reads it."""
    return {f"{r.id}: {name}": spec for r in report.items
            for name, spec in (r.details or {}).get("behaviour", {}).items()}


def test_regrade_gives_identical_scores_and_behaviour(shipped_inputs, tmp_path_factory):
    """Does grading the same program again repeat every item's score, message and
    behaviour? Graded again as a heavily disguised copy (tests/corpus/copies: another
    module layout, helpers split and inlined, loops rewritten, every name changed), which
    must behave as its source to the last digit kept: what grader similarity relies on.
    (A model.fit solution: Keras' own shuffling and initialisers are seeded per item.)"""
    name = "sequential_fit"
    first = full_report(name, shipped_inputs, tmp_path_factory)
    # The visible items: the hidden one repeats the accuracy check with a longer budget.
    visible = dataclasses.replace(SHIPPED, items=[i for i in SHIPPED.items if i.visibility == "visible"])
    copy = corpus.default_corpus() / "copies" / "sequential_fit__heavy.py"
    again = grade_file(copy, visible, shipped_inputs, tmp_path_factory.mktemp("again"))
    assert [(r.id, r.score, r.message) for r in again.items] == \
        [(r.id, r.score, r.message) for r in first.items if r.visibility == "visible"]
    mine, theirs = kept_behaviour(again), kept_behaviour(first)
    assert len(mine) >= behaviour.MIN_COMPARED and set(mine) <= set(theirs)
    assert [(a.a, a.b) for a in behaviour.compare({"copy": mine, name: theirs}).alike] == [("copy", name)]


def test_behaviour_background_is_what_the_kit_solutions_did(shipped_inputs, tmp_path_factory):
    """tests/corpus/behaviour.json, the behaviour grader similarity holds a class against,
    is what each correct solution did when graded here (benchmarks/bench_behaviour.py
    --write-background writes it again). And no two of them are reported as running alike,
    even with no background: the two pairs that follow the skeleton to the letter run
    alike, but in nothing of their own."""
    stored = copying.background_behaviour()
    assert set(stored) == set(GRADED)
    for name in GRADED:
        kept = kept_behaviour(full_report(name, shipped_inputs, tmp_path_factory))
        assert set(kept) == set(stored[name]), name
        # graded here under the rubric's seed, there under a batch's own: what does not
        # depend on the seed must agree
        portable = behaviour.portable(kept)
        assert len(portable) >= behaviour.MIN_COMPARED and \
            behaviour.portable(stored[name]).keys() == portable.keys(), name
        assert all(behaviour.agree(spec, stored[name][key]) for key, spec in portable.items()), \
            (name, [key for key, spec in portable.items() if not behaviour.agree(spec, stored[name][key])])
    found = behaviour.compare(stored)
    assert found.alike == [] and found.background_met is False, [(a.a, a.b, a.rare) for a in found.alike]
    assert behaviour.compare(stored, background=stored).background_met


def test_shipped_rubric_records_its_calibration():
    data = yaml.safe_load(DEFAULT_RUBRIC.read_text())
    provenance = data["calibration"]
    assert {"date", "data", "weights_sha256", "tensorflow", "keras", "seeds", "runs",
            "margin", "time_factor", "correct_solutions"} <= set(provenance)
    assert set(provenance["correct_solutions"]) == set(CORRECT)
    assert provenance["runs"] >= 2 * len(CORRECT)


def test_variants_file_errors_are_one_line(tmp_path):
    shutil.copytree(corpus.default_corpus() / "correct", tmp_path / "correct")
    (tmp_path / "variants.yaml").write_text(
        "- {name: x, base: reference, edits: [['no such text', 'y']], loses: [weights]}\n")
    with pytest.raises(corpus.KitError, match="occurs 0 times in reference; expected once"):
        corpus.load_variants(tmp_path)


@pytest.mark.parametrize("words", ["{says: {training: cause}}",            # an item it keeps
                                   "{says: {weights: [cause, 3]}}",         # a word that is no text
                                   "{not_says: {features: []}}",           # no words at all
                                   "{not_says: [layer order]}"])           # no item named
def test_says_and_not_says_map_items_to_words(tmp_path, words):
    """Is a `says` or `not_says` that does not map items to words refused in one line?"""
    shutil.copytree(corpus.default_corpus() / "correct", tmp_path / "correct")
    variant = ("{name: x, base: reference, edits: [['IMAGENET_MEAN_RGB, dtype=tf.float32', "
               "'IMAGENET_MEAN_RGB[::-1], dtype=tf.float32']], loses: [weights], ")
    (tmp_path / "variants.yaml").write_text(f"- {variant}{words[1:-1]}}}\n")
    with pytest.raises(corpus.KitError, match=r"expected '(not_)?says' to map"):
        corpus.load_variants(tmp_path)
    (tmp_path / "variants.yaml").write_text(
        f"- {variant}says: {{weights: [a, b]}}, not_says: {{features: c}}}}\n")
    found, = corpus.load_variants(tmp_path)
    assert found.says == (("weights", "a"), ("weights", "b")) and found.not_says == (("features", "c"),)
