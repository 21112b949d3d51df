"""Names from a class folder as data: a file name can hold anything a file system allows
(bytes that are not UTF-8, line breaks, terminal escapes, right-to-left overrides, 255
bytes), and it reaches terminals, web pages, CSV files and export file names. Every place
that shows or writes one goes through this module.

- `student_id(name)`: the id of an entry, from its name's bytes, printable and one to one:
  backslashes doubled, undecodable bytes spelled ``\\xNN``, unprintable characters
  escaped (the same in every run and on every machine, never the same for two names).
- `shown(text)`: one printable line, with control, format (bidi, zero-width) and other
  unprintable characters spelled out as escapes.
- `shown_text(text)`: the same for text of several lines: line breaks and tabs kept.
- `csv_cell(value)`: a CSV cell no spreadsheet reads as a formula (OWASP's CSV-injection
  rule: a cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is
  prefixed with a single quote; numbers are left alone).
- `file_names(students)`: the names to write a class's export files under: the id itself
  when it is short and plain, else a readable start and a digest of the true id; never
  the same for two students.
"""
from __future__ import annotations

import hashlib
import os
import re

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"-[0-9]+(\.[0-9]+)?")  # a negative number as the exports write it
MAX_FILE_NAME_BYTES = 150  # room for ".md", "/results.json" and a temporary suffix under 255


def student_id(name: str) -> str:
    """`name` (as os.listdir gives it: undecodable bytes as surrogates) as printable text,
    one to one: a backslash is doubled, then an undecodable byte becomes ``\\xNN`` and an
    unprintable character its escape (``\\n``, ``\\x1b``, ``\\u202e``). So two different
    names never give the same id, and the same name always gives the same one."""
    out = []
    for c in os.fsdecode(os.fsencode(name)):
        if c == "\\":
            out.append("\\\\")
        elif 0xDC80 <= ord(c) <= 0xDCFF:  # a byte that is not UTF-8 (surrogateescape)
            out.append(f"\\x{ord(c) - 0xDC00:02x}")
        elif not c.isprintable():  # \\xNN is the bytes' spelling: U+0080..U+00FF take \\u00NN
            out.append(repr(c)[1:-1] if ord(c) < 0x80 or ord(c) > 0xFF else f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return "".join(out)


def shown(text) -> str:
    """`text` as one printable line: every character that is not printable (line breaks,
    escapes, bidi overrides, zero-width characters, lone surrogates) spelled out."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))


def shown_text(text) -> str:
    """`text` of several lines (a message, a note, code) as it is to be read: line breaks
    and tabs kept, every other unprintable character spelled out as `shown` does."""
    text = str(text)
    if text.translate(_LAYOUT).isprintable():
        return text
    return "".join(c if c in "\n\r\t" or c.isprintable() else shown(c) for c in text)


_LAYOUT = dict.fromkeys(map(ord, "\n\r\t"))


def csv_cell(value):
    """`value` safe to put in a CSV cell that a spreadsheet opens (numbers unchanged)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return value if _NUMBER.fullmatch(value) else "'" + value  # -1.5 stays a number
    return value


def file_name(student: str) -> str:
    """A file name for `student`'s export files: the id when it is printable, short and
    not special, else a digest name (_digest_name). Within a class use file_names, which
    also settles the rare clash between the two."""
    if (shown(student) == student and "/" not in student and not student.startswith(".")
            and len(student.encode("utf-8")) <= MAX_FILE_NAME_BYTES):
        return student
    return _digest_name(student, 12)


def file_names(students) -> dict[str, str]:
    """{student: file name} for a class, no two alike: students whose names would clash (an
    id spelled like another's digest name) take digest names, longer ones while they clash."""
    digits = {s: 0 for s in students}
    chosen = {s: file_name(s) for s in students}
    while True:
        counts: dict[str, int] = {}
        for name in chosen.values():
            counts[name] = counts.get(name, 0) + 1
        clashing = [s for s, name in chosen.items() if counts[name] > 1]
        if not clashing:
            return chosen
        for s in clashing:
            digits[s] = max(digits[s] + 1, 12)
            chosen[s] = _digest_name(s, digits[s])


def _digest_name(student: str, digits: int) -> str:
    """The student's printable start and `digits` hex digits of the id's SHA-256."""
    digest = hashlib.sha256(student.encode("utf-8", "surrogatepass")).hexdigest()[:digits]
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in shown(student)).lstrip(".")[:60]
    return f"{stem or 'submission'}-{digest}"
