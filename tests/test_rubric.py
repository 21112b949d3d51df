"""The rubric schema: the shipped rubric is valid; bad rubrics name the file, key and fix."""
from __future__ import annotations

import pytest
import yaml

from grader import rubric
from grader.errors import RubricError
from kit import DEFAULT_RUBRIC


def _base():
    return {"schema_version": 1, "items": [
        {"id": "a", "title": "A", "points": 5, "check": "preprocess"},
        {"id": "b", "title": "B", "points": 5, "check": "accuracy", "visibility": "hidden",
         "params": {"lower": 0.3, "upper": 0.9}}]}


def test_shipped_rubric_is_valid():
    loaded = rubric.load(DEFAULT_RUBRIC)
    assert loaded.max_points == 110
    assert {i.check for i in loaded.items} == set(loaded.exercise.checks)
    assert all(i.visibility == "visible" for i in loaded.select(False))


def test_defaults_fill_params():
    parsed = rubric.parse(_base())
    assert parsed.items[0].params == {"tolerance": 1e-3} and parsed.items[1].params["steps"] == 100


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(colour="red"), "top level: unknown key 'colour'"),
    (lambda d: d.update(schema_version=2), "schema_version 2 is not supported"),
    (lambda d: d["items"][0].update(points="five"), "'points' must be a integer or number"),
    (lambda d: d["items"][0].update(points=-1), "'points' must be >= 0"),
    (lambda d: d["items"][0].update(check="magic"), "unknown check 'magic'"),
    (lambda d: d["items"][0].update(visibility="secret"), "'visibility' must be one of"),
    (lambda d: d["items"][1].update(id="a"), "the id is used twice"),
    (lambda d: d["items"][1]["params"].update(lower=0.95), "need 0 <= params.lower < params.upper"),
    (lambda d: d["items"][0].update(params={"tolerence": 1}), "params: unknown key 'tolerence'"),
    (lambda d: d["items"][0].pop("title"), "missing key 'title'"),
    (lambda d: d.update(items=[]), "'items' is empty"),
])
def test_bad_rubrics_are_rejected_with_the_key(change, message):
    data = _base()
    change(data)
    with pytest.raises(RubricError, match=message):
        rubric.parse(data, "r.yaml")


def test_invalid_yaml_reports_the_line(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("schema_version: 1\nitems: [\n  - : :\n")
    with pytest.raises(RubricError, match=r"r.yaml: not valid YAML at line \d"):
        rubric.load(path)


def test_public_copy_drops_hidden_items_and_the_seed():
    data = yaml.safe_load(DEFAULT_RUBRIC.read_text())
    public = rubric.public_copy(data)
    assert "heldout_seed" not in public
    parsed = rubric.parse(data)
    assert [i["id"] for i in public["items"]] == [i.id for i in parsed.select(False)] + [
        m.id for m in parsed.manual if m.visibility == "visible"]
    rubric.parse(public)  # still a valid rubric


def test_public_copy_drops_what_calibration_measured_on_hidden_items():
    data = yaml.safe_load(DEFAULT_RUBRIC.read_text())
    hidden = {i["id"] for i in data["items"] if i.get("visibility", "visible") != "visible"}
    assert hidden and set(data["calibration"]["slowest_seconds"]) >= hidden
    public = rubric.public_copy(data)["calibration"]
    assert not hidden & set(public["slowest_seconds"]) and not hidden & set(public["measured"])


def test_the_cifar10_rubric_declares_its_data_and_was_calibrated_on_it():
    """The second shipped rubric: the same items with budgets for the real images, the
    official archive declared, bounds measured on CIFAR-10 and separated."""
    path = DEFAULT_RUBRIC.parent / "transfer_learning-cifar10.yaml"
    cifar, synthetic = rubric.load(path), rubric.load(DEFAULT_RUBRIC)
    assert cifar.sections["data"] == {"kind": "cifar10"} and synthetic.sections["data"] == {"kind": "synthetic"}
    assert [i.id for i in cifar.items] == [i.id for i in synthetic.items]
    data = yaml.safe_load(path.read_text())
    assert data["calibration"]["data"].startswith("CIFAR-10")
    for item in cifar.items:
        if item.check == "accuracy":
            measured = data["calibration"]["measured"][item.id]
            assert measured["highest_low"] < item.params["lower"] < item.params["upper"] <= measured["lowest_correct"]
        if item.check == "training":
            measured = data["calibration"]["measured"][item.id]
            assert measured["highest_low"] < item.params["learned_accuracy"] <= measured["lowest_correct"]


def _with_manual(**changes) -> dict:
    data = yaml.safe_load(DEFAULT_RUBRIC.read_text())
    item = next(i for i in data["items"] if i["check"] == "manual")
    item.update(changes)
    return data


def test_manual_items_are_parsed_apart_and_never_run():
    parsed = rubric.parse(yaml.safe_load(DEFAULT_RUBRIC.read_text()))
    [manual] = parsed.manual
    assert manual.id == "compare_scratch" and manual.id not in [i.id for i in parsed.items]
    assert parsed.total_points == parsed.max_points + manual.points
    assert [line.points for line in manual.lines] == [4, 2, 4, -3]
    # ticked lines give the score, kept within 0..points; unknown indexes count nothing
    assert manual.score_of([0, 1, 2]) == 10 and manual.score_of([0, 3]) == 1
    assert manual.score_of([3]) == 0 and manual.score_of([0, 0, 9]) == 4
    assert rubric.ManualItem.from_dict(manual.to_dict()) == manual


@pytest.mark.parametrize("changes, message", [
    ({"prompt": "  "}, r"'prompt' is empty"),
    ({"params": {"steps": 3}}, r"unknown key 'params'"),
    ({"lines": [{"text": "good", "points": 11}]}, r"lines\[0\]: 'points' 11 is more than the item's 10"),
    ({"lines": [{"text": "good"}]}, r"lines\[0\]: missing key 'points'"),
    ({"lines": ["good"]}, r"lines\[0\]: expected a mapping with text and points"),
    ({"visibility": "later"}, r"'visibility' must be one of"),
    ({"visibility": "hidden"}, r"a manual item is asked of students, so it cannot be 'hidden'"),
])
def test_manual_item_errors_name_the_item_and_what_is_expected(changes, message):
    data = _with_manual(**changes)
    with pytest.raises(RubricError, match=r"^r.yaml: item(s\[11\]| 'compare_scratch'): .*" + message):
        rubric.parse(data, "r.yaml")


def test_a_rubric_of_manual_items_only_is_refused():
    data = yaml.safe_load(DEFAULT_RUBRIC.read_text())
    data["items"] = [i for i in data["items"] if i["check"] == "manual"]
    with pytest.raises(RubricError, match="at least one autograded item"):
        rubric.parse(data, "r.yaml")


def test_a_manual_item_graded_later_is_still_asked_of_students():
    data = _with_manual(visibility="after_due_date")
    public = rubric.public_copy(data)
    assert "compare_scratch" in [i["id"] for i in public["items"]]
    assert rubric.parse(public).manual[0].visibility == "after_due_date"
