"""What batch grading hands out: a CSV of all students, per-student feedback, Gradescope
results.json files and a CSV a Moodle gradebook imports. All are rebuilt from the
gradebook, manual grades included (write_all), after a batch and after each grade saved
in `grader review`."""
from __future__ import annotations

import contextlib
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from . import late as late_mod, lms
from .gradebook import NEEDS_REVIEW
from ..fsutil import atomic_path, write_text_atomic
from ..names import csv_cell, file_name, file_names, shown, shown_text

RELEASED_ALWAYS = {"visible"}


def points(value: float) -> str:
    """A number of points as every export writes it: rounded once, to the hundredth, here
    (grades.csv, feedback, moodle.csv and the LMS files agree to the digit)."""
    text = f"{float(value):.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def after_penalty(earned: float, late: late_mod.Late) -> float:
    """What `earned` points are worth after `late`'s penalty (a percent of them)."""
    return earned * (1 - late.percent / 100)


def visible_to_students(visibility: str, released: bool) -> bool:
    """May a student see this item now? Hidden items never; after_due_date and
    after_published ones once the grades are released."""
    return visibility in RELEASED_ALWAYS or (released and visibility in ("after_due_date", "after_published"))


def grades_csv(rows: list[dict], items_of, item_ids: list[str], flags_of=lambda s: [],
               manual_items: list[dict] = (), manual_of=lambda s: {}, status_of=lambda s: {},
               files_of=file_name, late_of=None) -> str:
    """One row per student; `flags` lists the kinds of integrity flags raised, for review.
    With manual items: a column each (empty until graded), `manual` (how many are still to
    grade or need review), and `total`/`max` counting them."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    manual_ids = [m["id"] for m in manual_items]
    manual_max = sum(m["points"] for m in manual_items)
    writer.writerow(["student", *item_ids, *manual_ids, "total", "max", "status",
                     *(["manual"] if manual_ids else []), "flags", "files",
                     *(["late", "penalty_percent", "total_before_penalty"] if late_of else [])])
    for row in rows:
        student = row["student"]
        scores = {i["item"]: i["score"] for i in items_of(student)}
        kinds = sorted({f["kind"] for f in flags_of(student)})
        given = manual_of(student) if manual_ids else {}
        open_ = [s for s in status_of(student).values() if s != "graded"] if manual_ids else []
        earned = row["score"] + sum(given.values())
        late = late_of(student) if late_of else late_mod.ON_TIME
        writer.writerow([csv_cell(student), *[f"{scores.get(i, 0):g}" for i in item_ids],
                         *[f"{given[m]:g}" if m in given else "" for m in manual_ids],
                         points(after_penalty(earned, late)),
                         points(row['max_score'] + manual_max), row["status"],
                         *([manual_summary(open_)] if manual_ids else []), " ".join(kinds),
                         csv_cell(files_of(student)),
                         *([csv_cell(late.reason), f"{late.percent:g}", points(earned)] if late_of else [])])
    return buffer.getvalue()


def manual_summary(open_statuses: list[str]) -> str:
    """'graded', or what is left: '1 to grade, 1 needs review'."""
    if not open_statuses:
        return "graded"
    return ", ".join(f"{open_statuses.count(s)} {s}" for s in ("to grade", "needs review")
                     if s in open_statuses)


def feedback_markdown(row: dict, items: list[dict], released: bool,
                      manual: list[dict] = (), late: late_mod.Late = late_mod.ON_TIME) -> str:
    """A student's feedback. `manual`: the manual items with the grade given, each
    {id, title, points, visibility, score, comment} (score None: not graded yet)."""
    visible = [i for i in items if visible_to_students(i["visibility"], released)]
    graded_manual = [m for m in manual if visible_to_students(m["visibility"], released) and m["score"] is not None]
    score = sum(i["score"] for i in visible) + sum(m["score"] for m in graded_manual)
    top = sum(i["max_score"] for i in visible) + sum(m["points"] for m in graded_manual)
    lines = [f"# Feedback for {shown(row['student'])}", ""]
    if row["message"]:
        lines += [f"**{shown(row['message'])}**", ""]
    lines += [f"Score shown: {points(after_penalty(score, late))} / {points(top)}"
              + (f" ({points(score)} before the late penalty)" if late.percent else "")]
    if late.late:
        lines += ["", f"Late: {late.reason}."]
    lines += ["", "| item | points | status | feedback |", "|---|---|---|---|"]
    for i in visible:
        message = shown(i["message"].replace("|", "\\|").replace("\n", " "))
        lines.append(f"| {i['title']} | {i['score']:g} / {i['max_score']:g} | {i['status']} | {message} |")
    for m in graded_manual:
        lines += ["", f"## {m['title']} ({m['score']:g} / {m['points']:g}, graded by a person)"]
        if m["comment"].strip():
            lines += ["", m["comment"].strip()]
    notes = [n for n in (row.get("notes") or "").splitlines() if n]
    if notes:
        lines += ["", "Skipped when your notebook was imported (the rest was graded):", ""]
        lines += [f"- {shown(n)}" for n in notes]
    later = (0 if released else
             sum(1 for i in items if i["visibility"] in ("after_due_date", "after_published"))
             + sum(1 for m in manual if m["visibility"] in ("after_due_date", "after_published")))
    if later:
        lines += ["", f"{later} more item(s) will be shown when the grades are released."]
    pending = [m for m in manual if visible_to_students(m["visibility"], released) and m["score"] is None]
    if pending:
        lines += ["", f"Not graded yet by a person: {', '.join(m['title'] for m in pending)}."]
    return "\n".join(lines) + "\n"


def gradescope_results(row: dict, items: list[dict], manual: list[dict] = ()) -> dict:
    """Gradescope's results.json: every item as a test with its own visibility, a manual
    item too once a person graded it (its comment as the test's output)."""
    status = {"passed": "passed"}
    output = shown_text(row["message"]) or f"graded with grader {row['grader_version']}"
    notes = [n for n in (row.get("notes") or "").splitlines() if n]
    if notes:
        output += "\nSkipped when your notebook was imported:\n" + shown_text("\n".join(notes))
    graded = [m for m in manual if m["score"] is not None]
    return {
        "score": round(row["score"] + sum(m["score"] for m in graded), 4),
        "execution_time": round(row["seconds"]),
        "output": output,
        "tests": [{"name": i["title"], "number": i["item"], "score": i["score"],
                   "max_score": i["max_score"], "status": status.get(i["status"], "failed"),
                   "output": f"{i['status']}: {shown_text(i['message'])}", "visibility": i["visibility"]}
                  for i in items] + [
                  {"name": m["title"], "number": m["id"], "score": m["score"],
                   "max_score": m["points"],
                   "status": "passed" if m["score"] >= m["points"] else "failed",
                   "output": f"graded by a person: {m['comment'].strip() or 'no comment'}",
                   "visibility": m["visibility"]} for m in graded],
    }


def results_json(row: dict, items: list[dict], manual: list[dict] = ()) -> str:
    return json.dumps(gradescope_results(row, items, manual), indent=2)


MOODLE_FILE = "moodle.csv"


def moodle_csv(rows: list[dict], title: str, total_of, feedback_of, maximum_of=None) -> str:
    """Moodle's grade import (Grades > Import > CSV file): a `username` column to map to the
    user field, the grade, and a feedback column. Students are named as the batch names them
    (their submission's file or folder): name submissions by Moodle username. The grade is
    what students may see now (the feedback's "Score shown"): import it once released.
    `rows`: the students whose grade is final (held_back leaves the others out)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["username", title, "feedback", *(["maximum"] if maximum_of else [])])
    for row in rows:
        writer.writerow([csv_cell(row["student"]), points(total_of(row)), csv_cell(feedback_of(row)),
                         *([points(maximum_of(row))] if maximum_of else [])])
    return buffer.getvalue()


def with_grades(manual_items: list[dict], grades: list[dict]) -> list[dict]:
    """The rubric's manual items, each with what one student's `grades` gave it: score
    (None: not graded yet) and comment."""
    given = {g["item"]: g for g in grades}
    return [{**m, "score": given[m["id"]]["score"] if m["id"] in given else None,
             "comment": given[m["id"]]["comment"] if m["id"] in given else ""}
            for m in manual_items]


def write_all(book, out: Path, released: bool | None = None, only: str | None = None
              ) -> list[tuple[str, str]]:
    """Rebuild grades.csv, feedback/, gradescope/ and moodle.csv in `out` from `book`, each
    replaced atomically. `released`: as the batch last said (kept in the gradebook).
    `only`: one student's grade changed (a save in grader review): the two CSVs and that
    student's own files are rewritten, each atomically, and nobody else's.
    A student's files are named by names.file_name (the id itself unless it is long or holds
    what a file name should not; grades.csv's `files` column says which). Returns the
    [(student, problem)] of files that could not be written: everyone else's are."""
    out = Path(out)
    with _exclusive(out):  # two review servers (or a batch) on one folder: one writer at a time
        return _write_all(book, out, released, only)


@contextlib.contextmanager
def _exclusive(out: Path):
    import fcntl

    with open(out / ".exports.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _write_all(book, out: Path, released: bool | None, only: str | None) -> list[tuple[str, str]]:
    if released is None:
        released = book.get_meta("released") == "1"
    rows = book.submissions()
    results = {row["student"]: book.items(row["student"]) for row in rows}  # read once
    items = json.loads(book.get_meta("rubric_items") or "[]")
    item_ids = [i["id"] for i in items] or ([i["item"] for i in results[rows[0]["student"]]]
                                           if rows else [])
    manual_items = book.manual_items()
    grades: dict[str, list[dict]] = {}
    for grade in book.manual():
        grades.setdefault(grade["student"], []).append(grade)
    manual = {row["student"]: with_grades(manual_items, grades.get(row["student"], [])) for row in rows}
    statuses = book.manual_statuses()
    # what students are shown: a grade given for an answer that changed since is held back
    # until a person has looked again (grades.csv, for the TAs, keeps it with its status)
    given = {s: [m if statuses.get(s, {}).get(m["id"]) != NEEDS_REVIEW else {**m, "score": None, "comment": ""}
                 for m in ms] for s, ms in manual.items()}
    late_of = late_judge(book, current_students(book, rows))
    files = file_names([row["student"] for row in rows])  # the whole class's, even for one save
    with atomic_path(out / "grades.csv") as tmp:
        tmp.write_text(grades_csv(rows, results.__getitem__, item_ids, book.flags, manual_items,
                                  lambda s: {m["id"]: m["score"] for m in manual[s] if m["score"] is not None},
                                  lambda s: statuses.get(s, {}), files.__getitem__,
                                  late_of if book.get_meta("late") else None), encoding="utf-8")
    renders = (("feedback", lambda r, i: feedback_markdown(r, i, released, given[r["student"]],
                                                          late_of(r["student"])), "{}.md"),
               ("gradescope", lambda r, i: results_json(r, i, given[r["student"]]), "{}/results.json"))
    problems: list[tuple[str, str]] = []

    def write_one(folder: Path, name: str, row: dict, render, atomic: bool) -> None:
        """One student's file; a failure is that student's problem, never the others'."""
        target = folder / name.format(files[row["student"]])
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            text = render(row, results[row["student"]])
            if atomic:
                write_text_atomic(target, text)
            else:
                target.write_text(text, encoding="utf-8")
        except (OSError, ValueError) as exc:
            problems.append((row["student"], f"{folder.name} file not written "
                             f"({type(exc).__name__}: {shown(exc)})"))

    for folder, render, name in renders:
        if only is not None and (out / folder).is_dir():  # one student's file, in place
            for row in (r for r in rows if r["student"] == only):
                write_one(out / folder, name, row, render, atomic=True)
            continue
        with atomic_path(out / folder) as tmp:  # the whole folder, replaced at once
            tmp.mkdir()
            for row in rows:
                write_one(tmp, name, row, render, atomic=False)
    title = book.get_meta("title") or "Exercise"
    now = {s: [m for m in ms if m["score"] is not None and visible_to_students(m["visibility"], released)]
           for s, ms in given.items()}
    comments = {s: " | ".join([f"{m['title']}: {m['comment'].strip()}" for m in ms if m["comment"].strip()]
                              + [f"Late: {late_of(s).reason}"] * late_of(s).late)
                for s, ms in now.items()}

    def total(row: dict) -> float:
        """what the student may see now, after the late penalty"""
        autograded = sum(i["score"] for i in results[row["student"]]
                         if visible_to_students(i["visibility"], released))
        return after_penalty(autograded + sum(m["score"] for m in now[row["student"]]),
                             late_of(row["student"]))

    def maximum(row: dict, every: bool = False) -> float:
        """what the student may see now is out of (`every`: the whole rubric's maximum)"""
        return (sum(i["max_score"] for i in results[row["student"]] if every or visible_to_students(i["visibility"], released))
                + sum(m["points"] for m in manual[row["student"]] if every or visible_to_students(m["visibility"], released)))

    held = held_back(statuses)
    final = [row for row in rows if row["student"] not in held]
    with atomic_path(out / MOODLE_FILE) as tmp:
        tmp.write_text(moodle_csv(final, title, total, lambda r: comments[r["student"]], maximum),
                       encoding="utf-8")

    chosen = lms_selection(book, rows, statuses)
    roster = roster_of(book)
    if chosen.layout == lms.MOODLE:
        feedback = renders[0][1]
        with atomic_path(out / MOODLE_WORKSHEET) as tmp:
            tmp.write_text(moodle_worksheet(
                chosen.final, total, maximum, roster,
                lambda r: max([r["graded_at"]] + [g["saved_at"] for g in grades.get(r["student"], [])]),
                full_of=lambda r: maximum(r, every=True)), encoding="utf-8")
        with atomic_path(out / MOODLE_FEEDBACK_ZIP) as tmp:
            tmp.write_bytes(moodle_feedback_zip(chosen.final, lambda r: feedback(r, results[r["student"]])))
    elif chosen.layout == lms.CANVAS:
        with atomic_path(out / CANVAS_FILE) as tmp:
            tmp.write_text(canvas_csv(chosen.final, lms.canvas_column(title, roster), total, maximum, roster),
                           encoding="utf-8")
    for name, kept in ((MOODLE_WORKSHEET, lms.MOODLE), (MOODLE_FEEDBACK_ZIP, lms.MOODLE), (CANVAS_FILE, lms.CANVAS)):
        if chosen.layout != kept:  # a class read in another layout now: no stale upload file stays
            (out / name).unlink(missing_ok=True)
    return problems


HELD = "a written question still to grade or needing review"
"""why a student is left out of the LMS files until a person has graded (held_back)"""


@dataclass
class Selection:
    """Who the LMS upload files carry."""

    layout: str
    final: list[dict]
    """the rows written, one per LMS id"""
    left_out: dict[str, str]
    """student -> why they are not (one line)"""


def roster_of(book, layout: str | None = None) -> dict:
    """The roster the last batch was given ({} when none, or when it is another LMS's than
    `layout`): {"layout", "people", "assignments"} as lms.read_roster reads it."""
    roster = json.loads(book.get_meta("roster") or "null") or {}
    return roster if layout is None or roster.get("layout") == layout else {}


def current_students(book, rows: list[dict]) -> list[str]:
    """The students of the last batch's download (all rows when it did not say)."""
    current = json.loads(book.get_meta("current_entries") or "null")
    return [r["student"] for r in rows if current is None or r["student"] in set(current)]


def lms_selection(book, rows: list[dict], statuses: dict) -> Selection:
    """The rows an LMS upload file may carry: entries of the current download (a student's
    older entries stay in the gradebook, not in the upload), each LMS id once (an id two
    entries share is left out: which one is the grade?), in the roster when one was given
    (a Moodle team's group id is not a participant's), and final (held_back)."""
    students = current_students(book, rows)
    layout = lms.layout_of(students)
    left: dict[str, str] = {}
    if layout != lms.PLAIN:
        for shared, names in lms.shared_ids(students, layout).items():
            for name in names:
                left[name] = (f"{len(names)} entries carry {layout} id {shared}; grade one folder per "
                              "student, or take the others out of the download")
        people = roster_of(book, layout).get("people", {})
        if people:
            for student in students:
                who = lms.identify(student, layout)
                if who.id not in people and student not in left:
                    left[student] = (f"{layout} id {who.id} is not in the roster (a team's group id, "
                                     "or another course's student)")
    held = held_back(statuses)
    for student in students:
        if student in held and student not in left:
            left[student] = HELD
    keep = set(students) - set(left)
    return Selection(layout, [r for r in rows if r["student"] in keep], left)


MOODLE_WORKSHEET = "moodle_worksheet.csv"
MOODLE_FEEDBACK_ZIP = "moodle_feedback.zip"
CANVAS_FILE = "canvas.csv"


def held_back(statuses: dict[str, dict[str, str]]) -> set[str]:
    """The students whose grade is not final: a manual item still to grade, or graded for an
    answer that changed since (needs review). The LMS files leave them out, so an import
    neither publishes a provisional grade nor overwrites one; the batch says how many."""
    return {s for s, items in statuses.items() if any(v != "graded" for v in items.values())}


def moodle_worksheet(rows: list[dict], total_of, maximum_of, roster: dict | None,
                     graded_at, full_of=None) -> str:
    """Moodle's grading worksheet (Assignment > Upload grading worksheet), keyed by the
    "Participant <id>" of the download's names.

    - `Last modified (grade)` is when the kit last set that student's grade (`graded_at`:
      the grading or a person's save, whichever came last), in ISO 8601 with its offset,
      which PHP's strtotime reads the same in any server time zone. Moodle skips a row whose
      grade was changed in Moodle after that, unless the TA allows it at upload: a fix made
      in Moodle is not overwritten by a later upload of an unchanged grade.
    - Moodle skips a grade above its own maximum and does not read `Maximum Grade`: when
      the roster (Moodle's worksheet) gives that maximum, grades are scaled to it from the
      rubric's whole maximum (`full_of`; what is not released yet counts as not earned).
    - No `Feedback comments` column: Moodle's import replaces the comments typed in Moodle
      with the cell, even an empty one. The feedback travels in moodle_feedback.zip."""
    import datetime

    people = (roster or {}).get("people", {}) if (roster or {}).get("layout") == lms.MOODLE else {}
    columns = [c for c in lms.MOODLE_WORKSHEET_COLUMNS if c != "Feedback comments"]
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        who = lms.identify(row["student"], lms.MOODLE)
        person = people.get(who.id, {})
        total, top = total_of(row), maximum_of(row)
        moodle_top, full = _number(person.get("maximum", "")), (full_of or maximum_of)(row)
        if moodle_top and full:
            total, top = total * moodle_top / full, moodle_top
        stamp = datetime.datetime.fromtimestamp(graded_at(row), datetime.timezone.utc)
        cells = {"Identifier": f"{lms.MOODLE_PARTICIPANT}{who.id}",
                 "Full name": csv_cell(person.get("name") or who.name),
                 "Email address": csv_cell(person.get("email", "")), "Status": "Submitted for grading",
                 "Grade": points(total), "Maximum Grade": points(top), "Grade can be changed": "Yes",
                 "Last modified (submission)": "",
                 "Last modified (grade)": stamp.isoformat(timespec="seconds")}
        writer.writerow([cells[c] for c in columns])
    return buffer.getvalue()


def _number(text: str) -> float | None:
    try:
        value = float(text.replace(",", "."))
    except ValueError:
        return None
    return value if value > 0 and value == value and value != float("inf") else None


def moodle_feedback_zip(rows: list[dict], feedback_of) -> bytes:
    """Each student's feedback as a file Moodle's "Upload multiple feedback files in a zip"
    attaches to the participant: <full name>_<participant id>_assignsubmission_file_feedback.md."""
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for row in rows:
            who = lms.identify(row["student"], lms.MOODLE)
            info = zipfile.ZipInfo(f"{who.name}_{who.id}_assignsubmission_file_feedback.md",
                                   date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, feedback_of(row))
    return buffer.getvalue()


def canvas_csv(rows: list[dict], column: str, total_of, maximum_of, roster: dict | None) -> str:
    """Canvas's gradebook import: Student, ID, SIS User ID, SIS Login ID, Section, then the
    assignment's column ("<title> (<assignment id>)" when a Canvas roster names it), with
    Canvas's own "Points Possible" row first."""
    people = (roster or {}).get("people", {}) if (roster or {}).get("layout") == lms.CANVAS else {}
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([*lms.CANVAS_FIRST_COLUMNS, csv_cell(column)])
    if rows:
        writer.writerow(["    Points Possible", "", "", "", "", points(maximum_of(rows[0]))])
    for row in rows:
        who = lms.identify(row["student"], lms.CANVAS)
        person = people.get(who.id, {})
        writer.writerow([csv_cell(person.get("name") or who.name), who.id,
                         *(csv_cell(person.get(k, "")) for k in lms.CANVAS_FIRST_COLUMNS[2:]),
                         points(total_of(row))])
    return buffer.getvalue()


def late_judge(book, students: list[str]):
    """student -> late.Late under the policy the last batch recorded (ON_TIME for all when
    there is none): the LMS's id and late marker from the entry's name, the submission
    time from a Moodle roster."""
    raw = book.get_meta("late")
    if not raw:
        return lambda student: late_mod.ON_TIME
    policy = late_mod.Policy.from_dict(json.loads(raw))
    layout = lms.layout_of(students)
    people = roster_of(book, layout).get("people", {})
    judged = {}
    for student in students:
        who = lms.identify(student, layout)
        submitted = late_mod.moodle_time(people.get(who.id, {}).get("submitted", ""), policy.zone) \
            if layout == lms.MOODLE else None
        judged[student] = late_mod.judge(policy, [who.id, student, who.name], submitted, who.late)
    return lambda student: judged.get(student, late_mod.ON_TIME)
