"""Who a submission belongs to in the LMS it came from, and the LMS's own upload files.

A class folder downloaded with Moodle's or Canvas's "download all submissions" names
each entry in the LMS's own way, and those names carry the ids its imports key on:

- Moodle (mod/assign): ``<full name>_<participant id>_assignsubmission_<plugin>_<file>``,
  or a folder ``<full name>_<participant id>_assignsubmission_<plugin>_`` per student.
  Moodle writes the full name with its underscores turned into spaces, so the first
  underscore ends it. The participant id is what the grading worksheet's `Identifier`
  column holds as "Participant <id>", and what a feedback zip's file names must carry.
- Canvas: ``<login name>[_LATE]_<user id>_<submission id>_<file>``: the login name is the
  sortable name in lower case with everything but letters and digits left out, ``_LATE``
  marks a submission after the due date, and the user id is the gradebook's `ID` column.

`layout_of` reads a whole class: an LMS layout only when every entry follows it, else the
plain folder of today (students named by their file names), and a notice says which. A
roster exported from the LMS's gradebook (`read_roster`) adds e-mails, SIS ids and
sections, and names the Canvas assignment column the import needs.

What the uploads follow (and the tests parse back by the same rules):
- Moodle's grading worksheet import (assignfeedback_offline, importgradeslib.php) finds
  its columns by their headers: `Identifier`, `Grade` and `Last modified (grade)` are
  required, the feedback plugin's `Feedback comments` column is read when present; the
  participant is the number after "Participant ". A row whose grade was changed in Moodle
  after the `Last modified (grade)` it carries is skipped unless the TA ticks "allow
  updating records that have been modified more recently in Moodle".
- Moodle's "upload multiple feedback files in a zip" (assignfeedback_file, importziplib.php)
  attaches a file named ``<full name>_<participant id>_assignsubmission_file_<name>`` to
  that participant.
- Canvas's gradebook import (Grades > Import) keys rows on `ID` (or `SIS User ID` /
  `SIS Login ID`) and an assignment on its column header ``<title> (<assignment id>)``; the
  first five columns are Student, ID, SIS User ID, SIS Login ID and Section.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import KitError

MOODLE = "moodle"
CANVAS = "canvas"
PLAIN = "plain"

# Moodle up to 4.0 ends a folder's name with "_", 4.1 and later do not (downloader.php);
# its own zip importer takes both.
_MOODLE_NAME = re.compile(r"(?P<name>[^_/]+)_(?P<id>[0-9]{1,18})_assignsubmission_(?P<plugin>[a-z]+)(?:_(?P<file>.*))?",
                          re.DOTALL)
# Canvas keeps every word character of the sortable name (any script), lower-cased; the
# third number is the attachment's id (a new one for each file and each resubmission).
_CANVAS_NAME = re.compile(r"(?P<login>\w+?)(?P<late>_LATE)?_(?P<id>[0-9]{1,18})_(?P<attachment>[0-9]{1,18})_"
                          r"(?P<file>.+)", re.DOTALL)
MOODLE_PARTICIPANT = "Participant "
CANVAS_FIRST_COLUMNS = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
MOODLE_WORKSHEET_COLUMNS = ["Identifier", "Full name", "Email address", "Status", "Grade",
                            "Maximum Grade", "Grade can be changed", "Last modified (submission)",
                            "Last modified (grade)", "Feedback comments"]
MAX_ROSTER_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class Identity:
    """One entry of a class folder as its LMS knows it."""

    layout: str
    """moodle, canvas or plain"""
    id: str
    """Moodle's participant id, Canvas's user id, or (plain) the batch's own id"""
    name: str
    """the display name the download carries (Canvas: its login name)"""
    late: bool = False
    """the download marks the submission late (Canvas's _LATE)"""


def identify(student: str, layout: str) -> Identity:
    """`student` (the batch's id: the entry's file or folder name) read in `layout`."""
    if layout == MOODLE:
        found = _MOODLE_NAME.fullmatch(student)
        if found:
            return Identity(MOODLE, found["id"], found["name"])
    elif layout == CANVAS:
        found = _CANVAS_NAME.fullmatch(student)
        if found:
            return Identity(CANVAS, found["id"], found["login"], late=bool(found["late"]))
    return Identity(PLAIN, student, student)


def layout_of(students: list[str]) -> str:
    """moodle or canvas when every entry of the class follows that LMS's download names, else
    plain."""
    for layout, pattern in ((MOODLE, _MOODLE_NAME), (CANVAS, _CANVAS_NAME)):
        if students and all(pattern.fullmatch(s) for s in students):
            return layout
    return PLAIN


def shared_ids(students: list[str], layout: str) -> dict[str, list[str]]:
    """{id: entries} for the ids more than one entry of the download carries (two files of
    one Canvas student, Moodle's online text beside a file): one grade cannot be told for
    them, so the LMS files leave them out and the batch names them."""
    by_id: dict[str, list[str]] = {}
    for student in students:
        by_id.setdefault(identify(student, layout).id, []).append(student)
    return {i: names for i, names in by_id.items() if len(names) > 1}


def describe(students: list[str]) -> str:
    """One line for the batch: which layout the class was read in, and what that means."""
    layout = layout_of(students)
    if layout == MOODLE:
        return (f"a Moodle download: {len(students)} participant(s) by their participant ids; "
                "moodle_worksheet.csv and moodle_feedback.zip are written for its imports")
    if layout == CANVAS:
        late = sum(identify(s, CANVAS).late for s in students)
        return (f"a Canvas download: {len(students)} student(s) by their user ids, {late} marked "
                "late; canvas.csv is written for its gradebook import")
    near = sum(bool(_MOODLE_NAME.fullmatch(s) or _CANVAS_NAME.fullmatch(s)) for s in students)
    if near:
        return (f"{near} of {len(students)} entries are named as an LMS download names them, the "
                "others are not: the class is read as a plain folder (students named by their "
                "file names), and no LMS upload file is written")
    return ""


def read_roster(path: str | Path) -> dict:
    """A roster exported from the LMS: Moodle's grading worksheet (`Identifier`, `Full name`,
    `Email address`) or Canvas's gradebook export (`Student`, `ID`, `SIS User ID`, `SIS Login
    ID`, `Section`, then one column per assignment, "<title> (<id>)"). Returns
    {"layout", "people": {id: {...}}, "assignments": [column, ...]}."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_ROSTER_BYTES:
            raise KitError(f"{path}: expected a roster CSV under {MAX_ROSTER_BYTES // 2**20} MB, "
                           f"found {path.stat().st_size // 2**20} MB. Export the gradebook again.")
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise KitError(f"{path}: the roster could not be read ({exc.strerror or exc}). Pass the "
                       "CSV exported from the LMS's gradebook.") from None
    except UnicodeDecodeError:
        raise KitError(f"{path}: expected a UTF-8 CSV roster, found other bytes. Export it from "
                       "the LMS as UTF-8 CSV.") from None
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as exc:
        raise KitError(f"{path}: expected a CSV roster, could not read it ({exc}). Export it from "
                       "the LMS's gradebook again.") from None
    header = rows[0] if rows else []
    if "Identifier" in header:
        at = {name: header.index(name) for name in header}
        people = {}
        for row in rows[1:]:
            value = _cell(row, at["Identifier"])
            if value.startswith(MOODLE_PARTICIPANT) and value[len(MOODLE_PARTICIPANT):].isdigit():
                people[value[len(MOODLE_PARTICIPANT):]] = {
                    "name": _cell(row, at.get("Full name")), "email": _cell(row, at.get("Email address")),
                    "submitted": _cell(row, at.get("Last modified (submission)")),
                    "maximum": _cell(row, at.get("Maximum Grade"))}
        return {"layout": MOODLE, "people": people, "assignments": []}
    if header[:2] == CANVAS_FIRST_COLUMNS[:2]:
        at = {name: header.index(name) for name in header}
        people = {}
        for row in rows[1:]:
            value = _cell(row, at["ID"])
            if value.isdigit():  # Canvas puts a "Points Possible" row first, with no id
                people[value] = {"name": _cell(row, at["Student"]),
                                 **{k: _cell(row, at.get(k)) for k in CANVAS_FIRST_COLUMNS[2:]}}
        assignments = [h for h in header[len(CANVAS_FIRST_COLUMNS):] if re.search(r"\([0-9]+\)$", h)]
        return {"layout": CANVAS, "people": people, "assignments": assignments}
    raise KitError(f"{path}: expected a roster exported from Moodle (a grading worksheet, with an "
                   f"Identifier column) or Canvas (a gradebook export, starting Student, ID), found "
                   f"the columns {', '.join(header[:6]) or 'none'}. Export it from the LMS's gradebook.")


def _cell(row: list[str], index: int | None) -> str:
    return row[index].strip() if index is not None and index < len(row) else ""


def canvas_column(title: str, roster: dict | None) -> str:
    """The assignment's column header for Canvas's import: the roster's "<title> (<id>)" whose
    title is the rubric's, else its only assignment, else the rubric's title alone (Canvas
    then asks what to do with a column it does not know)."""
    columns = (roster or {}).get("assignments") or []
    named = [c for c in columns if c.rsplit(" (", 1)[0] == title]
    if len(named) == 1:
        return named[0]
    return columns[0] if len(columns) == 1 else title
