"""A hostile class: the entries a class folder can hold that once stopped, slowed or
corrupted a batch (names that are not UTF-8, 254 bytes long, formulas, terminal escapes
and bidi overrides; stems that clash; links; pipes; huge files; notebooks that are bombs
or too deep to parse). Made by tests/verbs/test_batch.py beside its honest and hostile
submissions, and by benchmarks/bench_hostile.py."""
from __future__ import annotations

import json
import os
import subprocess
import zipfile
from pathlib import Path

from kit import ROOT, SOLUTION

REFERENCE = SOLUTION.read_text()


def _zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


ESCAPES = "\x1b[2K\x1b[1A\u202ekcarf"  # erase the line, go up, then a right-to-left override
LONG = "l" * 254                      # a legal folder name: its feedback file name would not be
DEEP = "x = a" + ".a" * 200_000       # nested too deep for Python's parser: a RecursionError
DIGEST_TWIN = "é" * 60 + "-f42ec48e1e4b"  # names.file_name("é" * 100)
# Every id the batch gives the hostile class, and what each must come to: (status, score)
HOSTILE = {
    "caf\\xe9": ("graded", 7),          # a Latin-1 folder name, and a Latin-1 file in it
    LONG: ("graded", 7),
    "lee.py": ("graded", 7),            # three entries whose stems clash
    "lee.ipynb": ("graded", 7),
    "lee.py.zip": ("failed", 0),
    "hostile_nb": ("graded", 7),        # an attachment of 600,000 empty lists and a deep cell
    '=HYPERLINK("http:\\\\x","y")': ("failed", 0),  # its backslash doubled in the id
    "@SUM(1+1)": ("failed", 0),
    "-2+3": ("failed", 0),
    ESCAPES.encode("unicode_escape").decode(): ("graded", 7),  # flagged, spelled out
    "to_solutions": ("failed", 0),      # links at the top, followed by nothing
    "to_shadow": ("failed", 0),
    "to_honest": ("failed", 0),
    "link_inside": ("failed", 0),       # a link inside a student's folder
    "fifo_inside": ("failed", 0),
    "huge_file": ("failed", 0),         # a 3 GB (sparse) file beside the module
    "huge_module": ("failed", 0),       # a module over its bound
    "hard_link": ("failed", 0),         # a hard link to a file outside the class folder
    "-infinity": ("failed", 0),         # float() reads it as a number: a formula all the same
    "a\\nb": ("failed", 0),              # a line break in the name, spelled out
    "a\\\\nb": ("failed", 0),            # a backslash and an n: another id
    "é" * 100: ("failed", 0),           # its export file name is a digest name ...
    DIGEST_TWIN: ("failed", 0),         # ... which this student's id spells exactly
    "deep": ("failed", 0),              # folders nested 1,100 deep (os.walk's recursion); remove_deep
    "zip_of_folders": ("failed", 0),    # 450 members that imply 11,250 folders
}


CLASS_EXTRA = len(HOSTILE)
"""the entries hostile_class adds to a folder"""


def remove_deep(subs: Path) -> None:
    """Remove the folder nested 1,100 deep: shutil.rmtree recurses once a level on Python
    3.11 (and so does pytest's clean-up of old temporary folders), GNU rm does not."""
    subprocess.run(["rm", "-rf", "--", str(subs / "deep")], check=True)


def hostile_class(subs: Path) -> None:
    """The entries of HOSTILE, made in `subs` beside the honest and hostile submissions."""
    latin1 = subs / os.fsdecode(b"caf\xe9")
    latin1.mkdir()
    (latin1 / "transfer_learning.py").write_text(REFERENCE)
    (latin1 / os.fsdecode(b"r\xe9sum\xe9.txt")).write_bytes(b"notes")
    (subs / LONG).mkdir()
    (subs / LONG / "transfer_learning.py").write_text(REFERENCE)
    (subs / "lee.py").write_text(REFERENCE)
    (subs / "lee.ipynb").write_bytes((ROOT / "solutions" / "transfer_learning.ipynb").read_bytes())
    _zip(subs / "lee.py.zip", {"notes.txt": b"the module is missing"})
    notebook = json.loads((ROOT / "solutions" / "transfer_learning.ipynb").read_text())
    notebook["cells"].append({"cell_type": "markdown", "metadata": {}, "source": "![](attachment:a.png)",
                              "attachments": {"a.png": {"image/png": [[]] * 600_000}}})
    notebook["cells"].append({"cell_type": "code", "metadata": {}, "execution_count": None,
                              "outputs": [], "source": DEEP})
    (subs / "hostile_nb.ipynb").write_text(json.dumps(notebook))
    for name in ('=HYPERLINK("http:\\x","y")', "@SUM(1+1)", "-2+3"):
        (subs / f"{name}.ipynb").write_text("{ not json")
    (subs / f"{ESCAPES}.py").write_text(REFERENCE + "\nimport gc\nprint(len(gc.get_objects()))\n")
    (subs / "to_solutions").symlink_to(ROOT / "solutions")
    (subs / "to_shadow.py").symlink_to("/etc/shadow")
    (subs / "to_honest.py").symlink_to(subs / "honest_py.py")
    (subs / "link_inside").mkdir()
    (subs / "link_inside" / "transfer_learning.py").symlink_to(SOLUTION)
    (subs / "fifo_inside").mkdir()
    (subs / "fifo_inside" / "transfer_learning.py").write_text(REFERENCE)
    os.mkfifo(subs / "fifo_inside" / "pipe")
    (subs / "huge_file").mkdir()
    (subs / "huge_file" / "transfer_learning.py").write_text(REFERENCE)
    with open(subs / "huge_file" / "data.bin", "wb") as handle:
        handle.truncate(3 << 30)  # sparse: 3 GB to stat, nothing on disk
    (subs / "huge_module.py").write_text(REFERENCE + "#" * (2 << 20))
    secret = subs.parent / "secret_beside_the_class.txt"
    secret.write_text("root:*:20228:0:99999:7:::")
    (subs / "hard_link").mkdir()
    (subs / "hard_link" / "transfer_learning.py").write_text(REFERENCE)
    os.link(secret, subs / "hard_link" / "shadow")
    fd = os.open(subs, os.O_RDONLY)
    for name in ["deep"] + ["a"] * 1100:  # deeper than PATH_MAX lets a path name
        os.mkdir(name, dir_fd=fd)
        inner = os.open(name, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = inner
    os.close(fd)
    _zip(subs / "zip_of_folders.zip", {"transfer_learning.py": REFERENCE.encode(), **{
        "/".join([f"d{i}"] + ["x"] * 25) + "/": b"" for i in range(450)}})
    for name in ("-infinity", "a\nb", "a\\nb", "é" * 100, DIGEST_TWIN):
        (subs / f"{name}.ipynb").write_text("{ not json")
