"""`grader calibrate`: bounds and time limits from measured runs, written into the rubric."""
from __future__ import annotations

import pytest
import yaml

from grader.verbs import calibrate
from grader import rubric
from grader.errors import KitError
from kit import DEFAULT_RUBRIC

SHIPPED = rubric.load(DEFAULT_RUBRIC)


def _rubric():
    return rubric.parse({"schema_version": 1, "items": [
        {"id": "quick", "title": "q", "points": 5, "check": "accuracy",
         "params": {"mode": "train", "steps": 30, "images": 500}},
        {"id": "iface", "title": "i", "points": 5, "check": "interface"}]})


def _run(kind, accuracy, seconds=10.0, name="s"):
    return calibrate.Run(name, 1, kind, {"quick": 1.0, "iface": 1.0},
                         {"quick": seconds, "iface": 0.1}, {"quick": accuracy}, {})


def test_bounds_sit_between_the_low_and_the_correct_runs_with_the_stated_margins():
    runs = [_run("correct", 0.62), _run("correct", 0.48, seconds=21.0), _run("low", 0.104)]
    bounds, limits = calibrate.compute(_rubric(), runs)
    b = bounds["quick"]
    assert (b.lower, b.upper) == (0.14, 0.43)  # 0.104 + 0.03 up, 0.48 - 0.05 down, to 0.01
    assert b.min_correct == 0.48 and b.max_low == 0.104
    assert limits == {"quick": 210.0, "iface": 60.0}  # 10 x 21 s rounded up to 5 s; floor 60 s


def test_the_training_bar_sits_between_the_correct_runs_and_the_low_ones():
    """The training item's learned_accuracy: halfway between the low side and the lowest
    correct run's accuracy on its training images, at least the margin below the latter;
    refused when the low runs reach it."""
    items = rubric.parse({"schema_version": 1, "items": [
        {"id": "training", "title": "t", "points": 10, "check": "training"}]})

    def run(kind, accuracy):
        return calibrate.Run("s", 1, kind, {"training": 1.0}, {"training": 6.0},
                             {"training": accuracy}, {})

    bounds, _ = calibrate.compute(items, [run("correct", 0.34), run("correct", 0.24), run("low", 0.09)])
    assert (bounds["training"].lower, bounds["training"].upper) == (0.13, 0.18)  # (0.13 + 0.24) / 2
    wide, _ = calibrate.compute(items, [run("correct", 0.72), run("low", 0.117)])
    assert (wide["training"].lower, wide["training"].upper) == (0.15, 0.43)
    narrow, _ = calibrate.compute(items, [run("correct", 0.25), run("low", 0.15)])
    assert (narrow["training"].lower, narrow["training"].upper) == (0.18, 0.2)  # the margin caps it
    data = {"schema_version": 1, "items": [{"id": "training", "title": "t", "points": 10,
                                            "check": "training", "params": {"steps": 60}}]}
    updated = calibrate.update_rubric_data(data, bounds, {"training": 60.0}, {})
    assert updated["items"][0]["params"] == {"steps": 60, "learned_accuracy": 0.18}
    with pytest.raises(KitError, match="training accuracy .* not separated"):
        calibrate.compute(items, [run("correct", 0.2), run("low", 0.14)])


def test_calibration_judges_the_training_item_without_its_bar():
    parsed = rubric.parse({"schema_version": 1, "items": [
        {"id": "training", "title": "t", "points": 10, "check": "training",
         "params": {"learned_accuracy": 0.9}}, {"id": "i", "title": "i", "points": 1, "check": "interface"}]})
    items = parsed.items
    unbarred = calibrate.unbarred(items, parsed.exercise.checks)
    assert unbarred[0].params["learned_accuracy"] == 0.0 and items[0].params["learned_accuracy"] == 0.9
    assert unbarred[1] is items[1]


def test_groups_that_do_not_separate_are_refused():
    with pytest.raises(KitError, match="not separated"):
        calibrate.compute(_rubric(), [_run("correct", 0.2), _run("low", 0.15)])


def test_a_correct_run_without_an_accuracy_is_refused():
    run = _run("correct", 0.5)
    run.accuracy = {}
    with pytest.raises(KitError, match="expected every correct run to report an accuracy"):
        calibrate.compute(_rubric(), [run])


def test_update_keeps_other_keys_and_records_provenance():
    data = yaml.safe_load(DEFAULT_RUBRIC.read_text())
    bounds, limits = calibrate.compute(_rubric(), [_run("correct", 0.6), _run("low", 0.1)])
    quick = next(i for i in data["items"] if i["check"] == "accuracy")
    bounds = {quick["id"]: bounds["quick"]}
    updated = calibrate.update_rubric_data(data, bounds, {quick["id"]: 40.0}, {"runs": 2})
    new = next(i for i in updated["items"] if i["id"] == quick["id"])
    assert (new["params"]["lower"], new["params"]["upper"], new["time_limit"]) == (0.13, 0.55, 40.0)
    assert new["params"]["steps"] == quick["params"]["steps"] and updated["calibration"] == {"runs": 2}
    rubric.parse(updated)


@pytest.mark.slow
def test_shipped_bounds_agree_with_a_short_calibration_run(tmp_path):
    """A one-seed calibration of the quick accuracy item on two correct solutions (one of
    them a slow eager loop) and the low variants: the shipped bounds must lie between the
    low runs and the correct runs it measures, and it writes a loadable rubric and a plot."""
    data = yaml.safe_load(DEFAULT_RUBRIC.read_text())
    data["items"] = [i for i in data["items"] if i["id"] in ("interface", "accuracy_quick")]
    path = tmp_path / "rubric.yaml"
    path.write_text("# short\n" + yaml.safe_dump(data, sort_keys=False))
    plot = tmp_path / "bounds.png"
    bounds, limits, runs = calibrate.run(path, seeds=(5,), plot_path=plot,
                                         solutions=["reference", "sequential_eager"],
                                         log=lambda line: None)
    shipped = {i.id: i.params for i in SHIPPED.items}["accuracy_quick"]
    measured = bounds["accuracy_quick"]
    assert measured.max_low is not None and shipped["lower"] >= measured.max_low
    assert shipped["upper"] <= measured.min_correct
    written = rubric.load(path)
    params = {i.id: i.params for i in written.items}["accuracy_quick"]
    assert (params["lower"], params["upper"]) == (measured.lower, measured.upper)
    assert yaml.safe_load(path.read_text())["calibration"]["runs"] == len(runs)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(limits) == {"interface", "accuracy_quick"}


