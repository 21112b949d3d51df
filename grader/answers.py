"""Students' answers to the items a person grades (`check: manual`), read without running
anything.

In a notebook, an answer is every cell tagged `answer:ITEM`: a Markdown cell's text (and
the images pasted into it), a code cell's image outputs (a plot saved with the notebook).
With a `.py` submission, answers go in `answers.md` beside the module (in the student's
folder or zip), or `NAME.answers.md` beside a lone `NAME.py`, one section per item headed
`## ITEM` (a file without such headings answers the only manual item, if there is one).

Everything is read in the grading process from files a student wrote, so it is bounded:
files past MAX_FILE_BYTES are refused, text past MAX_TEXT is cut, at most MAX_IMAGES images
of at most MAX_IMAGE_BYTES each are kept, and an image must decode as base64 and start
like a PNG or JPEG file. The text is kept as written: whoever shows it (grader review)
renders it as untrusted data.
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
MAX_TEXT = 20_000
MAX_IMAGES = 6
MAX_IMAGE_BYTES = 2 << 20
IMAGE_TYPES = {"image/png": b"\x89PNG\r\n\x1a\n", "image/jpeg": b"\xff\xd8\xff"}


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


def _image(mime: str, data) -> dict | None:
    if mime not in IMAGE_TYPES:
        return None
    text = "".join(data) if isinstance(data, list) else data
    if not isinstance(text, str) or len(text) > MAX_IMAGE_BYTES * 4 // 3 + 16:
        return None
    try:
        raw = base64.b64decode(re.sub(r"\s+", "", text), validate=True)
    except (binascii.Error, ValueError):
        return None
    if not raw.startswith(IMAGE_TYPES[mime]):
        return None
    return {"mime": mime, "data": base64.b64encode(raw).decode("ascii")}


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "\n\n[answer cut here: longer than the grader keeps]"


def _add(answer: Answer, image: dict | None) -> None:
    if image is not None and len(answer.images) < MAX_IMAGES:
        answer.images.append(image)


def from_notebook(path: Path, item_ids: list[str]) -> Answers:
    import nbformat

    found = Answers({i: Answer() for i in item_ids})
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return Answers(found.items, f"{path.name}: larger than {MAX_FILE_BYTES >> 20} MB; "
                                        "its answers were not read")
        notebook = nbformat.read(str(path), as_version=4)
    except Exception as exc:  # noqa: BLE001 - JSON, schema and encoding errors alike
        return Answers(found.items, f"{path.name}: could not be read as a notebook "
                                    f"({type(exc).__name__}); its answers are unknown")
    for cell in notebook.cells:
        tags = cell.get("metadata", {}).get("tags", [])
        if not isinstance(tags, list):
            continue
        for name in tags:
            item = str(name)[len(TAG_PREFIX):] if str(name).startswith(TAG_PREFIX) else None
            if item not in found.items:
                continue
            answer = found.items[item]
            if cell.cell_type == "markdown":
                text = cell.source if isinstance(cell.source, str) else ""
                if text.strip() and text.strip() != PLACEHOLDER:
                    answer.text = _cut((answer.text + "\n\n" + text).strip())
                for attachment in (cell.get("attachments") or {}).values():
                    for mime, data in (attachment or {}).items():
                        _add(answer, _image(mime, data))
            elif cell.cell_type == "code":
                for output in cell.get("outputs", []):
                    for mime, data in (output.get("data") or {}).items():
                        _add(answer, _image(mime, data))
    return found


def from_markdown(text: str, item_ids: list[str]) -> Answers:
    """Sections headed `## ITEM` of an answers file; one manual item takes a file without them."""
    found = Answers({i: Answer() for i in item_ids})
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
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            return Answers({i: Answer() for i in item_ids},
                           f"{path.name}: larger than {MAX_FILE_BYTES >> 20} MB; not read")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return Answers({i: Answer() for i in item_ids},
                       f"{path.name}: could not be read as UTF-8 text ({type(exc).__name__})")
    return from_markdown(text, item_ids)


def extract(path: Path, item_ids: list[str], exercise=None, own_folder: bool = False) -> Answers:
    """The answers a submission (a .py, a notebook, a zip or a folder) holds for `item_ids`.
    `own_folder`: the .py is in the student's own folder (grader check), where answers.md
    beside it is theirs too; in a batch's folder only NAME.answers.md is."""
    from .errors import SubmissionError
    from .submission import _find_module, _safe_unzip

    path = Path(path)
    if not item_ids:
        return Answers()
    if path.is_file() and path.suffix == ".ipynb":
        return from_notebook(path, item_ids)
    if path.is_file() and path.suffix == ".py":
        for beside in [path.with_name(f"{path.stem}.answers.md")] + (
                [path.with_name(ANSWERS_FILE)] if own_folder else []):
            if beside.is_file() and not beside.is_symlink():
                return _from_file(beside, item_ids)
        return Answers({i: Answer() for i in item_ids})
    with tempfile.TemporaryDirectory(prefix="grader-answers-") as tmp:
        folder = path
        try:
            if path.is_file() and path.suffix == ".zip":
                folder = Path(tmp)
                _safe_unzip(path, folder)
            module = _find_module(folder, path.name, exercise)
        except SubmissionError as exc:
            return Answers({i: Answer() for i in item_ids}, str(exc))
        if module.suffix == ".ipynb":
            return from_notebook(module, item_ids)
        found = _answers_file(folder, module)
        return _from_file(found, item_ids) if found else Answers({i: Answer() for i in item_ids})

