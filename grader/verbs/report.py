"""`grader report OUT`: a class report of a batch, for the instructor.

Read from the gradebook only (nothing is graded or run): the distribution of the totals
(autograded score plus the manual grades given so far), each item's pass rate and mean
score, the most common feedback messages of the items that lost points, the held-out
accuracies against the rubric's bounds, the grading time, the integrity flags and the
progress of manual grading. One HTML file with every figure embedded (no scripts, no
external resources, every name and message from the gradebook escaped), the figures again
as PNG files, and a short summary in the terminal.

The report folder is written in a temporary folder beside it and moved into place at the
end: an error leaves the previous report, or nothing, never half of one.
"""
from __future__ import annotations

import base64
from pathlib import Path

from ..errors import KitError
from ..fsutil import atomic_path
from ..records.gradebook import GRADED, MANUAL_STATUSES, NEEDS_REVIEW, TO_GRADE, open_existing
from ..names import shown
from ..reporting.figures import png, draw
from ..reporting.numbers import FIGURES, TOP_PER_ITEM, gather


TEMPLATES = Path(__file__).resolve().parents[1] / "templates"

HELP = "instructors: a one-file HTML report of a batch, with its figures as PNG files"


def add_arguments(parser) -> None:
    parser.add_argument("out", help="the --out folder of `grader batch`")
    parser.add_argument("--to", help="folder for report.html and the PNGs (default: OUT/report)")


def execute(args) -> None:
    main(args.out, dest=args.to)


def main(out: str, dest: str | None = None) -> dict:
    out = Path(out)
    book = open_existing(out)
    try:
        numbers = gather(book)
    finally:
        book.close()
    dest = Path(dest) if dest else out / "report"
    _check_dest(dest)
    numbers["html"] = str(dest / "report.html")
    numbers["figures"] = [f"{name}.png" for name in FIGURES]
    with atomic_path(dest) as tmp:
        tmp.mkdir(mode=0o700)  # grades and names: private, like the gradebook
        images = {}
        for name, figure in zip(FIGURES, draw(numbers)):
            data = png(figure)
            (tmp / f"{name}.png").write_bytes(data)
            images[name] = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        (tmp / "report.html").write_text(render(numbers, images), encoding="utf-8")
    print(summary(numbers))
    return numbers


def _check_dest(dest: Path) -> None:
    """The report replaces `dest` as a whole: never a file, nor a folder of other things."""
    if dest.exists() and not dest.is_dir():
        raise KitError(f"{dest}: expected a folder for the report, found a file. Pass another "
                       "folder with --to.")
    if dest.is_dir():
        others = sorted(p.name for p in dest.iterdir()
                        if p.name != "report.html" and not (p.suffix == ".png" and p.is_file()))
        if others:
            raise KitError(f"{dest}: expected an empty folder or a previous report (it is replaced "
                           f"as a whole), found other files ({', '.join(others[:3])}). Pass a "
                           "new folder with --to.")


def render(numbers: dict, images: dict[str, str]) -> str:
    """The page: every value from the gradebook escaped (autoescape), students' names as
    printable text (names.shown), images as data: URIs."""
    import jinja2

    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                     undefined=jinja2.StrictUndefined)
    environment.filters["shown"] = shown  # a name as one printable line: no bidi override, no line break
    return environment.get_template("report.html").render(n=numbers, images=images, top=TOP_PER_ITEM)


def summary(numbers: dict) -> str:
    """A few lines for the terminal."""
    counts = numbers["counts"]
    lines = [f"report of {numbers['submissions']} submission(s): graded {counts['graded']}, "
             f"failed {counts['failed']}, timed out {counts['timed_out']}"]
    if numbers["totals"]:
        lines.append(f"total: mean {numbers['mean_total']:.1f}, median {numbers['median_total']:.1f} "
                     f"/ {numbers['max_total']:g} (manual grades given so far included)")
    rated = sorted((i for i in numbers["items"] if i["pass_rate"] is not None and not i["manual"]),
                   key=lambda i: i["pass_rate"])[:3]
    if rated:
        lines.append("lowest pass rates: " + ", ".join(f"{i['id']} {i['pass_rate']:.0%}" for i in rated))
    flags = numbers["flags"]
    flag_count = sum(f["flags"] for k, f in flags.items() if k != "similar")
    lines.append(f"flags: {flag_count} flag(s), {len(numbers['flagged'])} submission(s) to review"
                 + (f", {flags['similar']['flags']} similar pair(s)" if "similar" in flags else "")
                 if flags else "flags: none")
    if numbers["manual"]:
        done = {s: sum(m[s] for m in numbers["manual"].values()) for s in MANUAL_STATUSES}
        lines.append(f"manual grading: {done[GRADED]} graded, {done[TO_GRADE]} to grade, "
                     f"{done[NEEDS_REVIEW]} need review")
    lines.append(f"report: {shown(numbers['html'])}")
    return "\n".join(lines)
