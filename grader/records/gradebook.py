"""The SQLite gradebook of batch grading: one row per submission, one per item.

Each submission is written in one transaction, so killing the batch at any moment
(even kill -9) keeps everything graded before it and nothing half-recorded.
"""
from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from ..engine import Report

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
    notes TEXT NOT NULL DEFAULT ''   -- what a notebook's import skipped, one line each
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
    PRIMARY KEY (student, item)
);
CREATE TABLE IF NOT EXISTS similar (  -- advisory: pairs `grader similarity` reported
    student TEXT NOT NULL,
    other TEXT NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (student, other)
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
        for column in ("host", "notes"):  # a gradebook from before these were recorded
            if column not in columns:
                self.db.execute(f"ALTER TABLE submissions ADD COLUMN {column} TEXT NOT NULL DEFAULT ''")

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
               report: Report, status: str, message: str = "", host: str = "") -> None:
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM items WHERE student = ?", (student,))
            self.db.execute("DELETE FROM flags WHERE student = ?", (student,))
            # compared on code that may have changed: until the next comparison, no claim
            self.db.execute("DELETE FROM similar WHERE student = ? OR other = ?", (student, student))
            self.db.execute(
                "INSERT OR REPLACE INTO submissions (student, source, content_hash, grader_version, "
                "rubric_hash, status, score, max_score, seconds, message, graded_at, host, notes) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (student, source, content_hash, report.grader_version, rubric_hash, status,
                 report.score, report.max_score, report.seconds, message, time.time(), host,
                 "\n".join(report.notes)))
            self.db.executemany(
                "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(student, i, r.id, r.title, r.score, r.max_score, r.status, r.message, r.seconds,
                  r.visibility) for i, r in enumerate(report.items)])
            self.db.executemany("INSERT INTO flags VALUES (?, ?, ?)",
                                [(student, f.kind, f.detail) for f in report.flags])

    def submissions(self) -> list[dict]:
        cursor = self.db.execute("SELECT * FROM submissions ORDER BY student")
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def items(self, student: str) -> list[dict]:
        cursor = self.db.execute("SELECT * FROM items WHERE student = ? ORDER BY position", (student,))
        names = [c[0] for c in cursor.description]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def flags(self, student: str | None = None) -> list[dict]:
        """Integrity flags, of one student or of all, in the order they were raised."""
        query = "SELECT student, kind, detail FROM flags"
        args: tuple = ()
        if student is not None:
            query, args = query + " WHERE student = ?", (student,)
        cursor = self.db.execute(query + " ORDER BY student, rowid", args)
        return [dict(zip(("student", "kind", "detail"), row)) for row in cursor.fetchall()]

    def set_similar(self, pairs: list[tuple[str, str, float]]) -> None:
        """Replace the similarity entries with `pairs` (a, b, score), recorded both ways."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("DELETE FROM similar")
            self.db.executemany("INSERT OR REPLACE INTO similar VALUES (?, ?, ?)",
                                [row for a, b, score in pairs for row in ((a, b, score), (b, a, score))])

    def similar(self, student: str | None = None) -> list[dict]:
        """Similarity entries, of one student or of all, highest score first."""
        query, args = "SELECT student, other, score FROM similar", ()
        if student is not None:
            query, args = query + " WHERE student = ?", (student,)
        cursor = self.db.execute(query + " ORDER BY student, score DESC, other", args)
        return [dict(zip(("student", "other", "score"), row)) for row in cursor.fetchall()]
