"""grader/behaviour.py: which submissions behaved alike when graded, from what the checks
kept in their items' details. Values made here; tests/test_corpus.py holds it against the
kit's own correct solutions, graded."""
from __future__ import annotations

import json

import pytest

from grader import behaviour
from grader.records.gradebook import Gradebook


def kept(seed: float = 0.0, tags=("loss", "accuracy"), objects=("model", "optimizer", "step")) -> dict:
    """One submission's behaviour, as the transfer-learning checks keep it."""
    return {
        "preprocess: output": {"numbers": [-123.68, -116.779, -103.939, 1.5]},
        "preprocess: dtype": {"value": "float32"},
        "training: logits": {"numbers": [0.25 + seed, -1.5, 3.0]},
        "training: logged": {"numbers": [2.3, 1.9 + seed, 1.1]},
        "training: logging": {"value": {"tags": list(tags), "steps": {"loss": [1, 2, 3]}}},
        "pipeline: order": {"value": [[3, 1, 2], [2, 3, 1]]},
        "checkpoint: layout": {"value": {"objects": list(objects), "kept": [1, 2]}},
    }


def test_copies_behave_alike_and_independent_runs_do_not():
    found = behaviour.compare({"ann": kept(), "bob": kept(), "cy": kept(0.5),
                               "dee": kept(tags=("train/loss", "train/accuracy"))})
    assert [(a.a, a.b, a.group) for a in found.alike] == [("ann", "bob", 2)]
    assert len(found.alike[0].agreed) == 7 and found.idioms == [] and found.kept == 4


def test_numbers_agree_within_the_tolerance_of_their_scale_only():
    close = kept()
    close["training: logits"] = {"numbers": [0.25 + 2e-5, -1.5, 3.0]}  # 0.7e-5 of the scale 3
    far = kept()
    far["training: logits"] = {"numbers": [0.25 + 1e-4, -1.5, 3.0]}  # 3e-5: Adam against AdamW
    assert behaviour.agree(kept()["training: logits"], close["training: logits"])
    assert not behaviour.agree(kept()["training: logits"], far["training: logits"])
    assert [a.b for a in behaviour.compare({"ann": kept(), "bob": close, "cy": far}).alike] == ["bob"]


def test_what_more_than_common_submissions_do_is_an_idiom_named_not_reported():
    """The skeleton followed to the letter: four alike are not reported, and are named."""
    class_ = {name: kept() for name in ("ann", "bob", "cy", "dee")}
    class_["eve"] = kept(0.5)
    found = behaviour.compare(class_)
    assert found.alike == [] and found.idioms == [["ann", "bob", "cy", "dee"]]
    three = behaviour.compare({name: kept() for name in ("ann", "bob", "cy")})
    assert {(a.a, a.b) for a in three.alike} == {("ann", "bob"), ("ann", "cy"), ("bob", "cy")}
    assert behaviour.compare(class_, common=4).idioms == []


def test_too_few_behaviours_in_common_are_not_compared():
    """A submission whose checks mostly failed kept little; agreeing on that says little."""
    few = {name: spec for name, spec in kept().items() if name.startswith("preprocess")}
    assert behaviour.compare({"ann": few, "bob": dict(few)}).alike == []
    # one item lost on one side: compared on what both kept
    partial = {k: v for k, v in kept().items() if k != "checkpoint: layout"}
    assert [(a.a, a.b, len(a.agreed)) for a in behaviour.compare({"ann": kept(), "bob": partial}).alike] \
        == [("ann", "bob", 6)]


def test_read_keeps_only_well_formed_behaviour(tmp_path):
    """Details come from the grading process, but a gradebook is a file: what is not of the
    shape the checks write is left out, and an old gradebook has none."""
    from grader.engine import ItemResult, Report

    book = Gradebook(tmp_path / "gradebook.sqlite")
    items = [ItemResult("training", "t", 1.0, 1.0, "passed", "ok", 0.1, "visible",
                        {"behaviour": {"logits": {"numbers": [1.0, 2.0]}, "bad": {"numbers": ["x"]},
                                       "worse": [1, 2], "both": {"numbers": [1], "value": 2},
                                       "flag": {"numbers": [True]}}}),
             ItemResult("pipeline", "p", 1.0, 1.0, "passed", "ok", 0.1, "visible",
                        {"behaviour": "not a mapping"}),
             ItemResult("preprocess", "p", 1.0, 1.0, "passed", "ok", 0.1, "visible", {})]
    book.record("ann", "ann.py", "h", "r", Report("ann", items), "graded")
    try:
        assert behaviour.read(book) == {"ann": {"training: logits": {"numbers": [1.0, 2.0]}}}
    finally:
        book.close()


@pytest.mark.parametrize("spec, text", [
    ({"numbers": [1.0, 2.5e-7]}, "[1, 2.5e-07] (2 numbers)"),
    ({"numbers": list(range(10))}, "[0, 1, 2, 3, 4, 5, 6, 7, ...] (10 numbers)"),
    ({"value": {"b": 1, "a": [2]}}, json.dumps({"a": [2], "b": 1})),
])
def test_values_are_shown_short(spec, text):
    assert behaviour.shown_values(spec) == text


def test_the_background_is_held_against_what_does_not_depend_on_the_batch_seed():
    """Each batch draws its own private seed; a behaviour that depends on it (marked
    "within": "batch") is compared inside the class only, never with the kit's solutions
    graded once under another seed."""
    mine = kept()
    mine["pipeline: order"] = {"value": [[1, 3, 2]], "within": "batch"}
    theirs = kept()
    theirs["pipeline: order"] = {"value": [[2, 1, 3]], "within": "batch"}
    assert behaviour.portable(mine).keys() == mine.keys() - {"pipeline: order"}
    class_ = {"ann": mine, "bob": json.loads(json.dumps(mine))}
    # as two of the kit's solutions behave, but for the seeded order: an idiom
    found = behaviour.compare(class_, background={"k1": theirs, "k2": theirs})
    assert found.alike == [] and found.as_background == [(["ann", "bob"], ["k1", "k2"])]
    assert found.background_met
    # inside the class the seeded order counts: a different order is a different run
    other = json.loads(json.dumps(mine))
    other["pipeline: order"] = {"value": [[2, 1, 3]], "within": "batch"}
    assert behaviour.compare({"ann": mine, "bob": other}).alike == []
    # one of the kit's own is not enough, unless it is the solution the skeleton came from
    assert [(a.a, a.b) for a in behaviour.compare(class_, background={"k1": theirs}).alike] == [("ann", "bob")]
    assert behaviour.compare(class_, background={"k1": theirs}, given=frozenset({"k1"})).alike == []


def test_a_background_from_another_setting_is_said_to_tell_nothing():
    far = {name: ({"numbers": [v + 7 for v in spec["numbers"]]} if "numbers" in spec else {"value": "x"})
           for name, spec in kept().items()}
    found = behaviour.compare({"ann": kept(), "bob": kept()}, background={"k1": far, "k2": far})
    assert not found.background_met and [(a.a, a.b) for a in found.alike] == [("ann", "bob")]
