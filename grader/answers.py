"""Students' answers to the items a person grades (`check: manual`), read without running
anything.

In a notebook, an answer is every cell tagged `answer:ITEM`: a Markdown cell's text (and
the images pasted into it), a code cell's image outputs (a plot saved with the notebook).
With a `.py` submission, answers go in `answers.md` beside the module (in the student's
folder or zip), or `NAME.answers.md` beside a lone `NAME.py`, one section per item headed
`## ITEM` (a file without such headings answers the only manual item, if there is one).

Everything is read in the grading process from files a student wrote, so it is bounded:
files past MAX_FILE_BYTES are refused, and so is a notebook whose JSON holds more than
MAX_JSON_VALUES values (a file of small values takes gigabytes once parsed); text past
MAX_TEXT is cut, at most MAX_IMAGES images of at most MAX_IMAGE_BYTES each are kept, and an
image must decode as base64 and start like a PNG or JPEG file. A notebook is read as plain
JSON (nbformat's reader and validator take minutes and gigabytes on such files) and every
part of it is checked for its type: a file of any shape gives answers or a problem, never an
error that would stop the batch. The text is kept as written: whoever shows it (grader
review) renders it as untrusted data.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

TAG_PREFIX = "answer:"
PLACEHOLDER = "*Your answer here: replace this line.*"
"""what the generated answer cell holds until the student writes; counts as no answer"""
ANSWERS_FILE = "answers.md"
MAX_FILE_BYTES = 50 << 20
MAX_JSON_VALUES = 2_000_000
"""values a notebook's JSON may hold (counted as _too_many_values does): 150 MB parsed at most"""
MAX_TEXT = 20_000
MAX_IMAGES = 6
MAX_IMAGE_BYTES = 2 << 20
IMAGE_TYPES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}
JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{,]', re.DOTALL)
"""a JSON string, or a character that starts a value outside one"""


def tag(item_id: str) -> str:
    """The cell tag of an item's answer."""
    return TAG_PREFIX + item_id


@dataclass
class Answer:
    text: str = ""
    images: list[dict] = field(default_factory=list)
    """[{"mime": "image/png", "data": base64}] in the order the notebook holds them"""

    @property
    def empty(self) -> bool:
        return not self.text.strip() and not self.images

    @property
    def digest(self) -> str:
        """What a TA graded: a changed digest marks a manual score "needs review"."""
        content = json.dumps({"text": self.text.strip(), "images": [i["data"] for i in self.images]})
        return hashlib.sha256(content.encode()).hexdigest()[:16]


@dataclass
class Answers:
    items: dict[str, Answer] = field(default_factory=dict)
    problem: str = ""
    """why the answers could not be read ("" when they were)"""

    @classmethod
    def none(cls, item_ids: list[str], problem: str = "") -> "Answers":
        """No answer to any of `item_ids` (and why, when they could not be read)."""
        return cls({i: Answer() for i in item_ids}, problem)


def _image(mime: str, data) -> dict | None:
    if mime not in IMAGE_TYPES:
        return None
    if isinstance(data, list) and all(isinstance(part, str) for part in data):
        data = "".join(data)
    if not isinstance(data, str) or len(data) > MAX_IMAGE_BYTES * 4 // 3 + 16:
        return None
    try:
        raw = base64.b64decode(re.sub(r"\s+", "", data), validate=True)
    except (binascii.Error, ValueError):
        return None
    if not raw.startswith(IMAGE_TYPES[mime]):
        return None
    return {"mime": mime, "data": base64.b64encode(raw).decode("ascii")}


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "\n\n[answer cut here: longer than the grader keeps]"


def _add(answer: Answer, mime, data) -> None:
    if len(answer.images) < MAX_IMAGES:
        image = _image(mime, data)
        if image is not None:
            answer.images.append(image)


def _too_many_values(raw: bytes) -> bool:
    """Whether the JSON text `raw` holds more than MAX_JSON_VALUES values. Each value is a
    string, opens a list or an object, or follows a comma: counting those characters is
    quick and enough unless it comes too high; then the strings are recognised (the commas
    in a text are no values), with the count stopped as soon as it is over."""
    quick = raw.count(b",") + raw.count(b"[") + raw.count(b"{") + raw.count(b'"') // 2
    if quick < MAX_JSON_VALUES:
        return False
    for count, _ in enumerate(JSON_TOKEN.finditer(raw), 1):
        if count > MAX_JSON_VALUES:
            return True
    return False


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _source(value) -> str:
    """A cell's source: a string, or a list of strings (nbformat's lines)."""
    if isinstance(value, list) and all(isinstance(line, str) for line in value):
        return "".join(value)
    return value if isinstance(value, str) else ""


def from_notebook(path: Path, item_ids: list[str]) -> Answers:
    from .errors import SubmissionError
    from .plainfile import read_plain

    found = Answers.none(item_ids)
    try:
        raw = read_plain(path, MAX_FILE_BYTES)  # no link followed, no more than the bound read
        if _too_many_values(raw):
            return Answers(found.items, f"{path.name}: holds more than {MAX_JSON_VALUES:,} JSON "
                                        "values; its answers were not read")
        notebook = json.loads(raw.decode("utf-8"))
    except SubmissionError as exc:
        return Answers(found.items, f"{exc} Its answers were not read.")
    except Exception as exc:  # noqa: BLE001 - OS, encoding, JSON and recursion errors alike
        return Answers(found.items, f"{path.name}: could not be read as a notebook "
                                    f"({type(exc).__name__}); its answers are unknown")
    if not isinstance(notebook, dict) or notebook.get("nbformat") != 4:
        return Answers(found.items, f"{path.name}: could not be read as a notebook (expected "
                                    "nbformat 4, as Jupyter saves); its answers are unknown")
    for cell in _list(notebook.get("cells")):
        cell = _dict(cell)
        for name in _list(_dict(cell.get("metadata")).get("tags")):
            item = name[len(TAG_PREFIX):] if isinstance(name, str) and name.startswith(TAG_PREFIX) else None
            if item not in found.items:
                continue
            answer = found.items[item]
            if cell.get("cell_type") == "markdown":
                text = _source(cell.get("source"))
                if text.strip() not in ("", PLACEHOLDER) and len(answer.text) <= MAX_TEXT:  # longer: cut
                    answer.text = _cut((answer.text + "\n\n" + text).strip())
                for attachment in _dict(cell.get("attachments")).values():
                    for mime, data in _dict(attachment).items():
                        _add(answer, mime, data)
            elif cell.get("cell_type") == "code":
                for output in _list(cell.get("outputs")):
                    for mime, data in _dict(_dict(output).get("data")).items():
                        _add(answer, mime, data)
    return found


def from_markdown(text: str, item_ids: list[str]) -> Answers:
    """Sections headed `## ITEM` of an answers file; one manual item takes a file without them."""
    found = Answers.none(item_ids)
    heads = [(m.start(), m.end(), m.group(1)) for m in
             re.finditer(r"^##[ \t]+([A-Za-z0-9_-]+)[ \t]*$", text, flags=re.MULTILINE)
             if m.group(1) in found.items]
    if not heads and len(item_ids) == 1:
        found.items[item_ids[0]].text = _cut(text.strip())
        return found
    for index, (_, end, item) in enumerate(heads):
        stop = heads[index + 1][0] if index + 1 < len(heads) else len(text)
        body = text[end:stop].strip()
        if body and body != PLACEHOLDER:
            found.items[item].text = _cut(body)
    return found


def _answers_file(folder: Path, module: Path) -> Path | None:
    for candidate in (module.parent / ANSWERS_FILE, folder / ANSWERS_FILE):
        if candidate.is_file() and not candidate.is_symlink():
            return candidate
    return None


def _from_file(path: Path, item_ids: list[str]) -> Answers:
    from .errors import SubmissionError
    from .plainfile import read_plain

    try:
        text = read_plain(path, MAX_FILE_BYTES).decode("utf-8")
    except SubmissionError as exc:
        return Answers.none(item_ids, f"{exc} Not read.")
    except (OSError, UnicodeDecodeError) as exc:
        return Answers.none(item_ids,
                            f"{path.name}: could not be read as UTF-8 text ({type(exc).__name__})")
    return from_markdown(text, item_ids)


def extract(path: Path, item_ids: list[str], exercise=None, own_folder: bool = False) -> Answers:
    """The answers a submission (a .py, a notebook, a zip or a folder) holds for `item_ids`.
    `own_folder`: the .py is in the student's own folder (grader check), where answers.md
    beside it is theirs too; in a batch's folder only NAME.answers.md is."""
    from .errors import SubmissionError
    from .submission import find_module, read

    path = Path(path).resolve() if own_folder else Path(path)  # a student's own link is theirs
    if not item_ids:
        return Answers()
    if path.is_file() and path.suffix == ".ipynb":
        return from_notebook(path, item_ids)
    if path.is_file() and path.suffix == ".py":
        for beside in [path.with_name(f"{path.stem}.answers.md")] + (
                [path.with_name(ANSWERS_FILE)] if own_folder else []):
            if beside.is_file() and not beside.is_symlink():
                return _from_file(beside, item_ids)
        return Answers.none(item_ids)
    if own_folder and path.is_dir():  # a student's own folder: theirs to link as they like
        try:
            module = find_module(path, path.name, exercise)
        except SubmissionError as exc:
            return Answers.none(item_ids, str(exc))
        return _in_folder(path, module, item_ids)
    with tempfile.TemporaryDirectory(prefix="grader-answers-") as tmp:
        try:
            handed = read(path, Path(tmp), exercise)
        except SubmissionError as exc:
            return Answers.none(item_ids, str(exc))
        except Exception as exc:  # noqa: BLE001 - an encrypted or corrupt member, and the like
            return Answers.none(item_ids, f"{path.name}: could not be unpacked "
                                          f"({type(exc).__name__}); its answers are unknown")
        return of_submission(handed, item_ids)


def of_submission(handed, item_ids: list[str]) -> Answers:
    """The answers of a `submission.Submission` (read once), from its copy: a notebook's
    Markdown cells, a single .py file's NAME.answers.md, or answers.md in its folder."""
    if not item_ids:
        return Answers()
    if handed.module.suffix == ".ipynb":
        return from_notebook(handed.module, item_ids)
    if handed.kept == handed.module:  # a single .py file: only NAME.answers.md beside it counts
        if handed.beside_problem:
            return Answers.none(item_ids, f"{handed.beside_problem} Not read.")
        return _from_file(handed.beside, item_ids) if handed.beside else Answers.none(item_ids)
    return _in_folder(handed.folder, handed.module, item_ids)


def _in_folder(folder: Path, module: Path, item_ids: list[str]) -> Answers:
    if module.suffix == ".ipynb":
        return from_notebook(module, item_ids)
    found = _answers_file(folder, module)
    return _from_file(found, item_ids) if found else Answers.none(item_ids)