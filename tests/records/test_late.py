"""grader.records.late: the rubric's due date and penalty, and the grades exported with it."""
from __future__ import annotations

import csv
import datetime
import io
import json

import pytest
import yaml

import class_fixture
from grader.errors import RubricError
from grader.records import exports, late, lms
from grader.records.gradebook import Gradebook
from grader.verbs import batch
from test_lms import CANVAS_NAMES, MOODLE_NAMES, _moodle_roster

ZONE = datetime.timezone(datetime.timedelta(hours=1))
DUE = datetime.datetime(2026, 12, 14, 23, 59, tzinfo=ZONE)
POLICY = {"due": DUE, "grace_minutes": 15, "penalty": {"percent": 10, "per": "day", "cap": 25},
          "extensions": {"105": datetime.datetime(2026, 12, 20, 23, 59, tzinfo=ZONE), "fay": "waived"}}


def _policy(**changes) -> late.Policy:
    return late.parse({**POLICY, **changes}, "rubric.yaml")


@pytest.mark.parametrize("after, percent, says", [
    (datetime.timedelta(minutes=10), 0, ""),                       # within the grace
    (datetime.timedelta(minutes=16), 10, "1 day at 10% each"),     # a started day
    (datetime.timedelta(days=1, hours=3), 20, "submitted 1 d 3 h after the due date: 2 days"),
    (datetime.timedelta(days=9), 25, "capped at 25%"),
])
def test_a_late_submission_is_charged_per_started_period_after_the_grace(after, percent, says):
    judged = late.judge(_policy(), ["999", "someone"], DUE + after, False)
    assert judged.percent == percent and says in judged.reason
    assert judged.late == bool(percent)


def test_extensions_waivers_markers_and_no_penalty():
    policy = _policy()
    # an extension moves the due date: two days after the class's is on time
    assert late.judge(policy, ["105", "eve"], DUE + datetime.timedelta(days=2), False) == late.ON_TIME
    waived = late.judge(policy, ["106", "fay"], DUE + datetime.timedelta(days=2), False)
    assert waived.late and waived.percent == 0 and "waived" in waived.reason
    # the LMS says late without saying when: one period
    marked = late.judge(policy, ["202", "ngbo"], None, True)
    assert marked.percent == 10 and "does not say when" in marked.reason
    assert late.judge(policy, ["201", "ada"], None, False) == late.ON_TIME  # nothing known: on time
    shown = late.judge(_policy(penalty="none"), ["1"], DUE + datetime.timedelta(days=3), False)
    assert shown.late and shown.percent == 0 and "no penalty" in shown.reason
    hourly = late.judge(_policy(penalty={"percent": 2, "per": "hour"}), ["1"],
                        DUE + datetime.timedelta(hours=3, minutes=20), False)
    assert hourly.percent == 8  # 3 h 5 min after due + grace: 4 started hours
    assert late.Policy.from_dict(json.loads(json.dumps(policy.to_dict()))) == policy


@pytest.mark.parametrize("changes, says", [
    ({"due": "next friday"}, "expected a date and time with its UTC offset"),
    ({"due": "2026-12-14T23:59:00"}, "expected a date and time with its UTC offset"),  # no offset
    ({"grace_minutes": -5}, "grace_minutes must be a number of minutes >= 0"),
    ({"penalty": {"percent": 150}}, "penalty percent must be a percent in 0..100"),
    ({"penalty": {"percent": 10, "per": "week"}}, "penalty per must be hour or day"),
    ({"extensions": {"eve": "tomorrow"}}, "late: extensions: eve: expected a date and time"),
    ({"deadline": DUE}, "unknown key 'deadline'"),
])
def test_a_bad_late_section_is_one_line(changes, says):
    with pytest.raises(RubricError) as error:
        late.parse({**POLICY, **changes}, "rubric.yaml")
    assert says in str(error.value) and "\n" not in str(error.value)


def test_moodle_dates_are_read_in_the_due_dates_zone():
    assert late.moodle_time("Tuesday, 15 December 2026, 2:05 AM", ZONE) == datetime.datetime(
        2026, 12, 15, 2, 5, tzinfo=ZONE)
    assert late.moodle_time("Monday, 14 December 2026, 12:30 PM", ZONE).hour == 12
    assert late.moodle_time("-", ZONE) is None and late.moodle_time("", ZONE) is None


def test_the_rubric_carries_the_policy_and_moving_it_regrades_nothing(tmp_path):
    from grader.paths import default_rubric
    from grader.rubric import load

    data = yaml.safe_load(default_rubric().read_text())
    plain = tmp_path / "plain.yaml"
    plain.write_text(yaml.safe_dump(data))
    data["late"] = {**POLICY, "due": DUE.isoformat()}
    dated = tmp_path / "dated.yaml"
    dated.write_text(yaml.safe_dump(data))
    assert load(dated).late.percent == 10 and load(plain).late is None
    assert batch.autograded_text(dated) == batch.autograded_text(plain)


def test_the_exports_carry_the_penalty_everywhere(tmp_path):
    """A Moodle class whose roster says when each handed in: the worksheet, moodle.csv,
    grades.csv and the feedback agree on the penalty, rounded the same way."""
    roster_file = _moodle_roster(tmp_path, maximum="120.00")  # Moodle's maximum is the rubric's
    rows = list(csv.reader(io.StringIO(roster_file.read_bytes().decode("utf-8-sig"))))
    column = rows[0].index("Last modified (submission)")
    for row in rows[1:]:
        row[column] = {"Participant 101": "Monday, 14 December 2026, 11:00 PM",     # on time
                       "Participant 102": "Wednesday, 16 December 2026, 9:00 AM",   # 2 days late
                       "Participant 106": "Friday, 18 December 2026, 9:00 AM"}.get(row[0], "-")
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    roster_file.write_text(buffer.getvalue())
    out = class_fixture.build(tmp_path / "out", named=MOODLE_NAMES.get, roster=lms.read_roster(roster_file))
    book = Gradebook(out / "gradebook.sqlite")
    # extensions name a Moodle class's students by participant id
    book.set_meta("late", json.dumps(_policy(extensions={"106": "waived"}).to_dict()))
    for student in ("bo", "fay"):
        digest = book.answers(MOODLE_NAMES[student])["compare_scratch"]["digest"]
        book.save_manual(MOODLE_NAMES[student], "compare_scratch", 5.0, [], "", digest, "ta", 0)
    exports.write_all(book, out)
    book.close()
    table = {r["student"]: r for r in csv.DictReader((out / "grades.csv").open())}
    bo = table[MOODLE_NAMES["bo"]]
    assert bo["penalty_percent"] == "20" and "2 days at 10% each" in bo["late"]
    assert float(bo["total"]) == pytest.approx(float(bo["total_before_penalty"]) * 0.8, abs=0.005)
    assert table[MOODLE_NAMES["ada"]]["late"] == "" and table[MOODLE_NAMES["fay"]]["penalty_percent"] == "0"
    worksheet = {r["Identifier"]: r for r in csv.DictReader((out / exports.MOODLE_WORKSHEET).open())}
    plain = {r["username"]: r for r in csv.DictReader((out / exports.MOODLE_FILE).open())}
    shown_total = list(plain[MOODLE_NAMES["bo"]].values())[1]
    assert worksheet["Participant 102"]["Grade"] == shown_total  # one rounding, one total
    assert "waived" in (out / "feedback" / f"{MOODLE_NAMES['fay']}.md").read_text()
    assert "Late: submitted 1 d 9 h after the due date" in plain[MOODLE_NAMES["bo"]]["feedback"]
    feedback = (out / "feedback" / f"{MOODLE_NAMES['bo']}.md").read_text()
    assert f"Score shown: {shown_total} / " in feedback and "before the late penalty" in feedback
    assert "Late: submitted 1 d 9 h after the due date" in feedback


def test_a_canvas_late_marker_costs_one_period(tmp_path):
    out = class_fixture.build(tmp_path / "out", named=CANVAS_NAMES.get)
    book = Gradebook(out / "gradebook.sqlite")
    book.set_meta("late", json.dumps(_policy().to_dict()))
    exports.write_all(book, out)
    book.close()
    table = {r["student"]: r for r in csv.DictReader((out / "grades.csv").open())}
    assert table[CANVAS_NAMES["bo"]]["penalty_percent"] == "10"
    assert table[CANVAS_NAMES["gus"]]["penalty_percent"] == "10"
    assert table[CANVAS_NAMES["ada"]]["penalty_percent"] == "0"


def test_the_batch_says_how_many_were_late_or_why_it_cannot_tell(tmp_path, capsys):
    for named, says in ((CANVAS_NAMES.get, "late: 2 submission(s), 2 charged a penalty"),
                        (MOODLE_NAMES.get, "pass the grading worksheet as --roster"),
                        (None, "a plain folder does not say when each submission came")):
        out = class_fixture.build(tmp_path / f"out-{len(says)}", named=named)
        book = Gradebook(out / "gradebook.sqlite")
        book.set_meta("late", json.dumps(_policy().to_dict()))
        capsys.readouterr()
        batch.summarize(book, [], out)
        book.close()
        assert says in capsys.readouterr().out


@pytest.mark.parametrize("changes, says", [
    ({"extensions": ["eve"]}, "extensions must map a student"),
    ({"grace_minutes": float("inf")}, "grace_minutes must be a number of minutes >= 0"),
    ({"grace_minutes": float("nan")}, "grace_minutes must be a number of minutes >= 0"),
    ({"time_zone": "Mars/Olympus"}, "time_zone must be an IANA zone"),
])
def test_more_bad_late_sections_are_one_line(changes, says):
    with pytest.raises(RubricError, match=says):
        late.parse({**POLICY, **changes}, "rubric.yaml")


def test_the_lms_time_zone_counts_summer_time_and_a_login_name_keys_an_extension():
    policy = late.parse({**POLICY, "due": datetime.datetime(2026, 3, 28, 23, 59, tzinfo=ZONE),
                         "grace_minutes": 0, "time_zone": "Europe/Berlin",
                         "extensions": {"ngbo": "waived"}}, "rubric.yaml")
    # Monday 00:30 in Berlin is summer time (+02:00): 23 h 31 min late, one started day
    submitted = late.moodle_time("Monday, 30 March 2026, 12:30 AM", policy.zone)
    assert late.judge(policy, ["7"], submitted, False).percent == 10
    bo = lms.identify(CANVAS_NAMES["bo"], lms.CANVAS)
    waived = late.judge(policy, [bo.id, CANVAS_NAMES["bo"], bo.name], None, True)
    assert waived.late and waived.percent == 0 and "waived" in waived.reason


def test_students_see_the_due_date_but_not_each_others_extensions():
    from grader.paths import default_rubric
    from grader.rubric import public_copy

    data = yaml.safe_load(default_rubric().read_text())
    data["late"] = {**POLICY, "due": DUE.isoformat()}
    public = public_copy(data)
    assert public["late"]["due"] == DUE.isoformat() and public["late"]["penalty"] == POLICY["penalty"]
    assert "extensions" not in public["late"] and "extensions" in data["late"]
