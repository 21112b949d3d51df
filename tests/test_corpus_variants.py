"""Honest grading, the other half: every broken variant in tests/corpus/variants.yaml
loses exactly the items its mistake touches, and its messages name the cause. Graded on the
items that can reach its edit (corpus.variant_items), each in its own worker. The correct
solutions' half is tests/test_corpus.py; the two run side by side (pyproject.toml)."""
from __future__ import annotations

import dataclasses

import pytest

from grader import corpus, rubric
from kit import DEFAULT_RUBRIC, grade_file, lost, messages

SHIPPED = rubric.load(DEFAULT_RUBRIC)
VARIANTS = corpus.load_variants()


def variant_rubric(variant: corpus.Variant) -> rubric.Rubric:
    return dataclasses.replace(SHIPPED, items=corpus.variant_items(variant, SHIPPED.items))


@pytest.mark.parametrize("variant", VARIANTS, ids=[v.name for v in VARIANTS])
def test_mistake_costs_exactly_its_items(variant, shipped_inputs, tmp_path):
    path = corpus.write_variant(variant, tmp_path / "variant")
    report = grade_file(path, variant_rubric(variant), shipped_inputs, tmp_path)
    costs = lost(report)
    got, declared = costs - variant.may_lose, set(variant.loses)
    assert got == declared, (f"lost {sorted(got)}, declared {sorted(declared)}; the difference: "
                             + "; ".join(f"{k}: {messages(report)[k]}" for k in sorted(got ^ declared)))
    said = messages(report)
    for item_id, words in variant.says:  # the message names the cause of this mistake
        if item_id in variant.may_lose and item_id not in costs:
            continue  # an item this chaotic run may or may not cost, and did not
        assert words in said[item_id], f"{item_id} does not say {words!r}: {said[item_id]}"
    for item_id, words in variant.not_says:  # and no plausible wrong one
        assert item_id in said, f"not_says names {item_id}, which this variant is not graded on"
        assert words.lower() not in said[item_id].lower(), \
            f"{item_id} says {words!r}, a cause this mistake does not have: {said[item_id]}"
    if variant.low:
        accuracy = [r for r in report.items if r.id in {i.id for i in SHIPPED.items
                                                        if i.check == "accuracy"}]
        assert accuracy and all(r.score == 0 for r in accuracy), messages(report)


def test_a_variant_is_graded_on_the_items_that_reach_its_edit():
    """An edit inside make_dataset reaches only the checks that call it; one inside
    preprocess reaches build_model's checks too when the model calls preprocess; an edit
    outside every function may reach anything."""
    by_name = {v.name: v for v in VARIANTS}
    assert corpus.touched_functions(by_name["no_shuffle"]) == {"make_dataset"}
    assert corpus.touched_functions(by_name["mean_in_bgr_order"]) == {"preprocess", "build_model"}
    assert corpus.touched_functions(by_name["missing_pool"]) is None
    ids = {i.id for i in variant_rubric(by_name["no_shuffle"]).items}
    assert {"pipeline", "accuracy_quick", "interface"} <= ids and not ids & {"frozen", "checkpoint"}
    for variant in VARIANTS:
        assert variant.loses <= {i.id for i in variant_rubric(variant).items}, variant.name
