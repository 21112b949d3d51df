"""Names from a class folder as data: a file name can hold anything a file system allows
(bytes that are not UTF-8, line breaks, terminal escapes, right-to-left overrides, 255
bytes), and it reaches terminals, web pages, CSV files and export file names. Every place
that shows or writes one goes through this module.

- `student_id(name)`: the id of an entry, from its name's bytes: undecodable bytes spelled
  as ``\\xNN`` (stable across reruns, and the same on every machine).
- `shown(text)`: one printable line, with control, format (bidi, zero-width) and other
  unprintable characters spelled out as escapes.
- `csv_cell(value)`: a CSV cell no spreadsheet reads as a formula (OWASP's CSV-injection
  rule: a cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
  prefixed with a single quote; numbers are left alone).
- `file_name(student)`: a name to write the student's export files under: the id itself
  when it is short and plain, else a readable stem and a digest of the true id.
"""
from __future__ import annotations

import hashlib
import os

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
MAX_FILE_NAME_BYTES = 150  # room for ".md", "/results.json" and a temporary suffix under 255


def student_id(name: str) -> str:
    """`name` (as os.listdir returns it, undecodable bytes as surrogates) as text that
    holds only real characters: an undecodable byte becomes the four characters ``\\xNN``."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def shown(text) -> str:
    """`text` as one printable line: every character that is not printable (line breaks,
    escapes, bidi overrides, zero-width characters, lone surrogates) spelled out."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def csv_cell(value):
    """`value` safe to put in a CSV cell that a spreadsheet opens (numbers unchanged)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        try:
            float(value)  # a negative number as text stays a number
            return value
        except ValueError:
            return "'" + value
    return value


def file_name(student: str) -> str:
    """A file name for `student`'s export files: the id when it is printable, short and
    not special; else its printable start and 12 hex digits of the id's SHA-256, so two ids
    never share a file."""
    plain = shown(student)
    if (plain == student and "/" not in student and not student.startswith(".")
            and len(student.encode("utf-8")) <= MAX_FILE_NAME_BYTES):
        return student
    digest = hashlib.sha256(student.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in plain).lstrip(".")[:60]
    return f"{stem or 'submission'}-{digest}"
