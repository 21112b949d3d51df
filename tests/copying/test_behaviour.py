"""grader/copying/behaviour.py: which submissions behaved alike when graded, from what the checks
kept in their items' details. Values made here; tests/test_corpus.py holds it against the
kit's own correct solutions, graded."""
from __future__ import annotations

import json

import pytest

from grader.copying import behaviour
from grader.records.gradebook import Gradebook


def kept(seed: float = 0.0, tags=("loss", "accuracy"), objects=("model", "optimizer", "step"),
         buffer: int = 50) -> dict:
    """One submission's behaviour, as the transfer-learning checks keep it: `seed` moves
    the numbers (another optimizer), the others are choices of the code."""
    return {
        "preprocess: output": {"numbers": [-123.68, -116.779, -103.939, 1.5]},
        "preprocess: dtype": {"value": "float32"},
        "training: logits": {"numbers": [0.25 + seed, -1.5, 3.0]},
        "training: logged": {"numbers": [2.3, 1.9 + seed, 1.1]},
        "training: logging": {"value": {"tags": list(tags), "steps": {"loss": [1, 2, 3]}}},
        "pipeline: ops": {"value": [["Shuffle", [["buffer_size", str(buffer)]]]]},
        "pipeline: order": {"value": [[3, 1, 2], [2, 3, 1]], "within": "batch"},
        "checkpoint: layout": {"value": {"objects": list(objects), "kept": [1, 2]}},
    }


KIT = {"k1": kept(), "k2": kept(tags=("train/loss", "train/acc")), "k3": kept(0.5, buffer=1000)}
"""the kit's own solutions: the skeleton followed, other tag names, another optimizer and buffer"""


def test_a_copy_is_reported_when_it_shares_choices_of_its_own_in_two_checks():
    own = kept(0.25, objects=("net", "opt", "step"))  # another optimizer, other object names
    found = behaviour.compare({"ann": own, "bob": json.loads(json.dumps(own)), "cy": kept(0.5)},
                              background=KIT)
    assert [(a.a, a.b, a.rare) for a in found.alike] == [("ann", "bob", ["checkpoint", "training"])]
    assert len(found.alike[0].agreed) == 8 and found.idioms == [] and found.kept == 3


def test_one_shared_choice_is_what_honest_students_share():
    """Two honest students who pick the same shuffle buffer, or the kit's own choices,
    run alike: named, not reported."""
    one = kept(buffer=1000)  # k3 holds the buffer with another optimizer: pipeline only
    found = behaviour.compare({"ann": one, "bob": kept(buffer=1000)}, background=KIT)
    assert found.alike == [] and found.idioms == [["ann", "bob"]]
    as_kit = behaviour.compare({"ann": kept(), "bob": kept()}, background=KIT)
    assert as_kit.alike == [] and as_kit.idioms == [["ann", "bob"]]


def test_numbers_agree_within_the_tolerance_of_their_size_only():
    close = kept()
    close["training: logits"] = {"numbers": [0.25, -1.5, 3.0 + 2e-5]}  # 0.7e-5 of 3
    far = kept()
    far["training: logits"] = {"numbers": [0.25 + 1e-4, -1.5, 3.0]}  # 4e-4 of 0.25 (scale 1)
    assert behaviour.agree(kept()["training: logits"], close["training: logits"])
    assert not behaviour.agree(kept()["training: logits"], far["training: logits"])
    # a large number elsewhere does not widen the tolerance of the small ones
    big, other = ({"numbers": [1e6, 0.25 + d, 3.0]} for d in (0.0, 0.01))
    assert not behaviour.agree(big, other)


def test_what_more_than_common_submissions_do_is_the_class_s():
    own = kept(0.25, objects=("net", "opt", "step"))
    class_ = {name: json.loads(json.dumps(own)) for name in ("ann", "bob", "cy", "dee")}
    found = behaviour.compare(class_, background=KIT)
    assert found.alike == [] and found.idioms == [["ann", "bob", "cy", "dee"]]
    three = behaviour.compare({name: class_[name] for name in ("ann", "bob", "cy")}, background=KIT)
    assert {(a.a, a.b) for a in three.alike} == {("ann", "bob"), ("ann", "cy"), ("bob", "cy")}
    assert len(behaviour.compare(class_, common=4, background=KIT).alike) == 6


def test_copies_of_one_program_are_one_witness_that_a_value_is_common():
    """A source and two copies, and a classmate who chose the same optimizer (but another
    buffer): four submissions show the logits, yet only two programs do, so the logits
    are still the ring's own choice. Four that ran alike in everything are a crowd."""
    own = kept(0.25, objects=("net", "opt", "step"))
    ring = {name: json.loads(json.dumps(own)) for name in ("ann", "bob", "cy")}
    ring["dee"] = kept(0.25, objects=("net", "opt", "step"), buffer=7)
    found = behaviour.compare(ring, background=KIT)
    assert {(a.a, a.b) for a in found.alike} == {("ann", "bob"), ("ann", "cy"), ("bob", "cy")}
    assert all(a.rare == ["checkpoint", "training"] for a in found.alike)
    # the classmate's buffer is their own, and nobody ran alike with them
    assert all("dee" not in (a.a, a.b) for a in found.alike) and found.idioms == []


def test_too_few_behaviours_in_common_and_degenerate_values_count_for_nothing():
    """A submission whose checks mostly failed kept little; logits that never moved from
    zero are the same for every submission that never applied its gradients."""
    few = {name: spec for name, spec in kept(0.25).items() if name.startswith("preprocess")}
    assert behaviour.compare({"ann": few, "bob": dict(few)}).alike == []
    stuck = kept(objects=("net", "opt", "step"))
    stuck["training: logits"] = {"numbers": [0.0, 0.0, 0.0]}
    stuck["training: logged"] = {"numbers": [2.3, 2.3, 2.3]}
    found = behaviour.compare({"ann": stuck, "bob": json.loads(json.dumps(stuck))}, background=KIT)
    assert found.alike == [] and found.idioms == [["ann", "bob"]]
    # one item lost on one side: compared on what both kept
    own = kept(0.25, objects=("net", "opt", "step"))
    partial = {k: v for k, v in own.items() if k != "pipeline: ops"}
    assert [(a.a, a.b, len(a.agreed)) for a in behaviour.compare({"ann": own, "bob": partial}).alike] \
        == [("ann", "bob", 7)]


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
    own = kept(0.25, objects=("net", "opt", "step"))
    assert behaviour.portable(own).keys() == own.keys() - {"pipeline: order"}
    theirs = json.loads(json.dumps(own))
    theirs["pipeline: order"] = {"value": [[2, 1, 3]], "within": "batch"}
    # the kit ran as these two do, but for the seeded order: nothing of theirs is their own
    found = behaviour.compare({"ann": own, "bob": json.loads(json.dumps(own))},
                              background={**KIT, "k4": theirs})
    assert found.alike == [] and found.background_met
    # inside the class the seeded order counts: a different order is a different run
    other = json.loads(json.dumps(own))
    other["pipeline: order"] = {"value": [[2, 1, 3]], "within": "batch"}
    assert behaviour.compare({"ann": own, "bob": other}).alike == []


def test_a_background_from_another_setting_is_said_to_tell_nothing():
    """Graded elsewhere (other data or steps), the kit's numbers that follow its choices
    agree with no submission's: the notice says the background tells nothing."""
    moved = {name: {key: ({"numbers": [v + 7 for v in spec["numbers"]]}
                          if "numbers" in spec and key.startswith("training") else spec)
                    for key, spec in kit.items()} for name, kit in KIT.items()}
    assert behaviour.compare({"ann": kept(), "bob": kept(0.5)}, background=KIT).background_met
    assert not behaviour.compare({"ann": kept(), "bob": kept(0.5)}, background=moved).background_met


def test_numbers_that_are_not_finite_or_too_large_are_not_read(tmp_path):
    for bad in (float("inf"), float("nan"), 1e300, 10 ** 400):
        assert not behaviour._valid({"numbers": [1.0, bad]})
