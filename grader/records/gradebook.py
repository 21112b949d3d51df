"""The SQLite gradebook of batch grading: one row per submission, one per item.

Each submission is written in one transaction, so killing the batch at any moment
(even kill -9) keeps everything graded before it and nothing half-recorded.

Items a person grades (`check: manual`) have two tables: `answers`, what the submission
answered (rewritten with each grading), and `manual`, the TA's score, ticked rubric lines
and comment (never touched by grading). A manual score remembers the digest of the answer
it was given for: when a regrading finds another answer, the item "needs review". Each
save of a manual score is one transaction that names the version it was loaded at, so two
TAs on one gradebook never overwrite each other silently (Conflict).
"""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from ..answers import Answers
from ..engine import FLAG_KINDS, Report

TO_GRADE, GRADED, NEEDS_REVIEW = "to grade", "graded", "needs review"
MANUAL_STATUSES = (TO_GRADE, NEEDS_REVIEW, GRADED)


def status_of(report: Report) -> tuple[str, str]:
    """(status, message) of a graded submission for the gradebook."""
    if report.import_failed:
        return "failed", report.items[0].message if report.items else ""
    if any(r.status == "timeout" for r in report.items):
        return "timed_out", ""
    return "graded", ""


class Conflict(Exception):
    """A manual score was saved over a version other than the one it was loaded at."""

FLAG_MEANINGS = {**FLAG_KINDS, "similar": "shares code beyond what the exercise gives, or ran as "
                 "another submission did, in ways of its own (grader similarity); advisory, for a "
                 "person to judge"}
"""what each kind of flag the gradebook holds means, for `grader flags` and the report"""

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS submissions (
    student TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    grader_version TEXT NOT NULL,
    rubric_hash TEXT NOT NULL,
    status TEXT NOT NULL,            -- graded, failed (could not be read) or timed_out
    score REAL NOT NULL,
    max_score REAL NOT NULL,
    seconds REAL NOT NULL,
    message TEXT NOT NULL,
    graded_at REAL NOT NULL,
    host TEXT NOT NULL DEFAULT '',   -- the machine (and Dask worker) that ran its submission code
    notes TEXT NOT NULL DEFAULT '',  -- what a notebook's import skipped, one line each
    answers_problem TEXT NOT NULL DEFAULT ''  -- why the answers could not be read
);
CREATE TABLE IF NOT EXISTS items (
    student TEXT NOT NULL REFERENCES submissions(student) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    item TEXT NOT NULL,
    title TEXT NOT NULL,
    score REAL NOT NULL,
    max_score REAL NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    seconds REAL NOT NULL,
    visibility TEXT NOT NULL,
    details TEXT NOT NULL DEFAULT '{}',  -- JSON the judge measured (an accuracy, the curves)
    PRIMARY KEY (student, item)
);
CREATE TABLE IF NOT EXISTS answers (  -- what a submission answered to the manual items
    student TEXT NOT NULL REFERENCES submissions(student) ON DELETE CASCADE,
    item TEXT NOT NULL,
    text TEXT NOT NULL,
    images TEXT NOT NULL,            -- JSON [{mime, data (base64)}]
    digest TEXT NOT NULL,
    PRIMARY KEY (student, item)
);
CREATE TABLE IF NOT EXISTS manual (   -- a person's grade of a manual item; grading keeps it
    student TEXT NOT NULL,
    item TEXT NOT NULL,
    score REAL NOT NULL,
    ticked TEXT NOT NULL,            -- JSON list of the rubric lines' indexes
    comment TEXT NOT NULL,
    digest TEXT NOT NULL,            -- the answer's digest when it was graded
    grader TEXT NOT NULL,
    saved_at REAL NOT NULL,
    version INTEGER NOT NULL,
    graded_text TEXT NOT NULL DEFAULT '',  -- the answer's text as graded (a changed one is diffed)
    PRIMARY KEY (student, item)
);
CREATE TABLE IF NOT EXISTS similar (  -- advisory: pairs `grader similarity` reported
    student TEXT NOT NULL,
    other TEXT NOT NULL,
    score REAL NOT NULL,                -- the code's score
    evidence TEXT NOT NULL DEFAULT '',  -- what was found: the score, and behaviour alike
    PRIMARY KEY (student, other)
);
CREATE TABLE IF NOT EXISTS code (  -- what `grader similarity` compares, kept as graded
    student TEXT PRIMARY KEY REFERENCES submissions(student) ON DELETE CASCADE,
    text TEXT NOT NULL,
    note TEXT NOT NULL               -- why it is not the graded code, or what was cut
);
CREATE TABLE IF NOT EXISTS flags (
    student TEXT NOT NULL REFERENCES submissions(student) ON DELETE CASCADE,
    kind TEXT NOT NULL,              -- one of engine.FLAG_KINDS
    detail TEXT NOT NULL
);
"""


class Gradebook:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.db = sqlite3.connect(self.path, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA foreign_keys=ON")
        self.db.executescript(SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(submissions)")}
        for column in ("host", "notes", "answers_problem"):  # from before these were recorded
            if column not in columns:
                self.db.execute(f"ALTER TABLE submissions ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")
        if "details" not in {row[1] for row in self.db.execute("PRAGMA table_info(items)")}:
            self.db.execute("ALTER TABLE items ADD COLUMN details TEXT NOT NULL DEFAULT '{}'")
        if "graded_text" not in {row[1] for row in self.db.execute("PRAGMA table_info(manual)")}:
            self.db.execute("ALTER TABLE manual ADD COLUMN graded_text TEXT NOT NULL DEFAULT ''")
        if "evidence" not in {row[1] for row in self.db.execute("PRAGMA table_info(similar)")}:
            self.db.execute("ALTER TABLE similar ADD COLUMN evidence TEXT NOT NULL DEFAULT ''")

    def close(self) -> None:
        self.db.close()

    def get_meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def is_current(self, student: str, content_hash: str, grader_version: str, rubric_hash: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM submissions WHERE student = ? AND content_hash = ? AND grader_version = ? "
            "AND rubric_hash = ?", (student, content_hash, grader_version, rubric_hash)).fetchone()
        return row is not None

    def record(self, student: str, source: str, content_hash: str, rubric_hash: str,
               report: Report, status: str, message: str = "", host: str = "",
               answers: Answers | None = None, code: tuple[str, str] | None = None) -> None:
        """One submission's grading, its answers and kept code (text, note) included, in one
        transaction; the manual scores a person gave are kept."""
        answers = answers or Answers()
        # text from files and workers may hold lone surrogates (a file name's undecodable
        # bytes, an escaped "\udce9" in JSON) that SQLite cannot store: spelled out instead
        source, message = _text(source), _text(message)
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM items WHERE student = ?", (student,))
            self.db.execute("DELETE FROM flags WHERE student = ?", (student,))
            self.db.execute("DELETE FROM answers WHERE student = ?", (student,))
            self.db.execute("DELETE FROM code WHERE student = ?", (student,))
            # compared on code that may have changed: until the next comparison, no claim
            self.db.execute("DELETE FROM similar WHERE student = ? OR other = ?", (student, student))
            self.db.execute(
                "INSERT OR REPLACE INTO submissions (student, source, content_hash, grader_version, "
                "rubric_hash, status, score, max_score, seconds, message, graded_at, host, notes, "
                "answers_problem) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (student, source, content_hash, report.grader_version, rubric_hash, status,
                 report.score, report.max_score, report.seconds, message, time.time(), host,
                 _text("\n".join(report.notes)), _text(answers.problem)))
            self.db.executemany(
                "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(student, i, r.id, r.title, r.score, r.max_score, r.status, _text(r.message), r.seconds,
                  r.visibility, json.dumps(r.details or {})) for i, r in enumerate(report.items)])
            self._put_answers(student, answers)
            if code is not None:
                self.db.execute("INSERT INTO code VALUES (?, ?, ?)",
                                (student, _text(code[0]), _text(code[1])))
            self.db.executemany("INSERT INTO flags VALUES (?, ?, ?)",
                                [(student, f.kind, _text(f.detail)) for f in report.flags])

    def _put_answers(self, student: str, answers: Answers) -> None:
        """Insert a submission's answers (inside the caller's transaction); no row: no answer."""
        self.db.executemany(
            "INSERT INTO answers VALUES (?, ?, ?, ?, ?)",
            [(student, item, a.text, json.dumps(a.images), a.digest)
             for item, a in answers.items.items() if not a.empty])

    def submissions(self) -> list[dict]:
        cursor = self.db.execute("SELECT * FROM submissions ORDER BY student")
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def submission(self, student: str) -> dict | None:
        cursor = self.db.execute("SELECT * FROM submissions WHERE student = ?", (student,))
        names = [c[0] for c in cursor.description]
        row = cursor.fetchone()
        return dict(zip(names, row)) if row else None

    def code(self) -> dict[str, tuple[str, str]]:
        """{student: (text, note)}: the code each submission was graded with, as kept."""
        return {student: (text, note) for student, text, note in
                self.db.execute("SELECT student, text, note FROM code")}

    def items(self, student: str) -> list[dict]:
        """The autograded items' results, `details` decoded."""
        cursor = self.db.execute("SELECT * FROM items WHERE student = ? ORDER BY position", (student,))
        names = [c[0] for c in cursor.description]
        rows = [dict(zip(names, row)) for row in cursor.fetchall()]
        for row in rows:
            row["details"] = json.loads(row.get("details") or "{}")
        return rows

    # ------------------------------------------------------------ manual items

    def set_manual_items(self, items: list[dict]) -> None:
        """The rubric's manual items (rubric.ManualItem.to_dict), for review and exports."""
        self.set_meta("manual_items", json.dumps(items))

    def manual_items(self) -> list[dict]:
        return json.loads(self.get_meta("manual_items") or "[]")

    def answers(self, student: str) -> dict[str, dict]:
        """{item: {text, images, digest}} of what the student answered (no row: no answer)."""
        cursor = self.db.execute("SELECT item, text, images, digest FROM answers WHERE student = ?",
                                 (student,))
        return {item: {"text": text, "images": json.loads(images), "digest": digest}
                for item, text, images, digest in cursor.fetchall()}

    def manual(self, student: str | None = None) -> list[dict]:
        """The manual grades given, of one student or of all, for the rubric's current
        manual items (a grade for an item since renamed or removed is `leftover`): score,
        ticked, comment, digest, grader, saved_at, version."""
        current = {m["id"] for m in self.manual_items()}
        return [g for g in self._grades(student) if g["item"] in current]

    def leftover(self) -> list[dict]:
        """Grades given for manual items the rubric no longer has: kept, counted nowhere."""
        current = {m["id"] for m in self.manual_items()}
        return [g for g in self._grades(None) if g["item"] not in current]

    def _grades(self, student: str | None) -> list[dict]:
        query, args = "SELECT * FROM manual", ()
        if student is not None:
            query, args = query + " WHERE student = ?", (student,)
        cursor = self.db.execute(query + " ORDER BY student, item", args)
        names = [c[0] for c in cursor.description]
        rows = [dict(zip(names, row)) for row in cursor.fetchall()]
        for row in rows:
            row["ticked"] = json.loads(row["ticked"])
        return rows

    def manual_status(self, student: str) -> dict[str, str]:
        """{item: to grade | graded | needs review} for every manual item of the rubric."""
        return self.manual_statuses(student).get(student, {})

    def manual_statuses(self, student: str | None = None) -> dict[str, dict[str, str]]:
        """{student: {item: status}} for every submission (or one): no grade, "to grade"; a
        grade given for the answer as it is now, "graded"; a grade given for an answer that
        changed since, or above what the item is now worth, "needs review". Reads digests
        only, never the answers' images."""
        where, args = (" WHERE student = ?", (student,)) if student is not None else ("", ())
        answered = {(s, i): d for s, i, d in
                    self.db.execute("SELECT student, item, digest FROM answers" + where, args)}
        given = {(s, i): (d, score) for s, i, d, score in
                 self.db.execute("SELECT student, item, digest, score FROM manual" + where, args)}
        points = {m["id"]: m["points"] for m in self.manual_items()}

        def status(name: str, item: str) -> str:
            if (name, item) not in given:
                return TO_GRADE
            digest, score = given[name, item]
            # the answer changed since, or the item is now worth less than the grade
            same = digest == answered.get((name, item), "") and score <= points[item]
            return GRADED if same else NEEDS_REVIEW

        return {name: {item: status(name, item) for item in points}
                for (name,) in self.db.execute("SELECT student FROM submissions" + where, args)}

    def set_answers(self, student: str, answers: Answers) -> None:
        """Replace a submission's answers (read again without grading it again: its code is
        unchanged, the rubric's manual items may not be)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM answers WHERE student = ?", (student,))
            self.db.execute("UPDATE submissions SET answers_problem = ? WHERE student = ?",
                            (answers.problem, student))
            self._put_answers(student, answers)

    def save_manual(self, student: str, item: str, score: float, ticked: list[int], comment: str,
                    digest: str, grader: str, version: int) -> int:
        """Record a TA's grade, loaded at `version` (0: none was given yet), for the answer
        whose digest the TA saw; the new version. Conflict when someone saved in between."""
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            row = self.db.execute("SELECT version, grader, saved_at FROM manual WHERE student = ? "
                                  "AND item = ?", (student, item)).fetchone()
            current = row[0] if row else 0
            if current != version:
                when = time.strftime("%H:%M:%S", time.localtime(row[2])) if row else "?"
                raise Conflict(f"{student}, {item}: {row[1] if row and row[1] else 'someone'} saved "
                               f"a grade at {when} after you opened it (version {current}, yours "
                               f"{version}); reload to see it, then grade again.")
            if self.db.execute("SELECT 1 FROM submissions WHERE student = ?", (student,)).fetchone() is None:
                raise KeyError(student)
            # the text the TA saw (its digest is the one the form carried), for a later diff
            seen = self.db.execute("SELECT text FROM answers WHERE student = ? AND item = ? AND digest = ?",
                                   (student, item, digest)).fetchone()
            self.db.execute("INSERT OR REPLACE INTO manual (student, item, score, ticked, comment, digest, "
                            "grader, saved_at, version, graded_text) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (student, item, float(score), json.dumps(sorted(set(ticked))), comment,
                             digest, grader, time.time(), current + 1, seen[0] if seen else ""))
        return current + 1

    def manual_scores(self, student: str) -> dict[str, float]:
        """{item: score} of the grades given (whatever their status)."""
        return {m["item"]: m["score"] for m in self.manual(student)}

    def flags(self, student: str | None = None) -> list[dict]:
        """Integrity flags, of one student or of all, in the order they were raised."""
        query = "SELECT student, kind, detail FROM flags"
        args: tuple = ()
        if student is not None:
            query, args = query + " WHERE student = ?", (student,)
        cursor = self.db.execute(query + " ORDER BY student, rowid", args)
        return [dict(zip(("student", "kind", "detail"), row)) for row in cursor.fetchall()]

    def set_similar(self, pairs: list[tuple]) -> None:
        """Replace the similarity entries with `pairs` (a, b, score[, evidence]), recorded
        both ways. `evidence` says what was found ("0.83", or that the two behaved alike)."""
        rows = []
        for a, b, score, *more in pairs:
            evidence = more[0] if more else f"{score:.2f}"
            rows += [(a, b, score, evidence), (b, a, score, evidence)]
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM similar")
            self.db.executemany("INSERT OR REPLACE INTO similar (student, other, score, evidence) "
                                "VALUES (?, ?, ?, ?)", rows)

    def similar(self, student: str | None = None) -> list[dict]:
        """Similarity entries, of one student or of all, highest score first."""
        query, args = "SELECT student, other, score, evidence FROM similar", ()
        if student is not None:
            query, args = query + " WHERE student = ?", (student,)
        cursor = self.db.execute(query + " ORDER BY student, score DESC, other", args)
        return [dict(zip(("student", "other", "score", "evidence"), row)) for row in cursor.fetchall()]


def _text(value):
    """`value` storable as SQLite text: lone surrogates spelled as \\udcNN."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def open_existing(out: Path) -> Gradebook:
    """The gradebook of a batch's --out folder, or KitError in one line when there is none
    (a folder that is not a batch's is never given a new, empty gradebook)."""
    from ..errors import KitError

    path = Path(out) / "gradebook.sqlite"
    if not path.is_file():
        raise KitError(f"{out}: expected the output folder of `grader batch` (with "
                       "gradebook.sqlite); found none. Pass the folder given to --out.")
    try:
        return Gradebook(path)
    except sqlite3.DatabaseError as exc:
        raise KitError(f"{path}: expected a gradebook (SQLite), could not open it ({exc}). "
                       "Run `grader batch` again into a new --out folder.") from None
