"""`grader check SUBMISSION`: grade one submission locally and print a table.

Runs the rubric's visible items (all items with --all) on the inputs its exercise makes
from what the rubric declares (for the kit's exercise, grader/exercises/transfer_learning/
data.py: the embedded synthetic set and stand-in weights unless the course set real ones).
"""
from __future__ import annotations

import json
from pathlib import Path
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from .. import engine, rubric as rubric_mod, submission as submission_mod
from ..fsutil import write_text_atomic
from ..modules import check_tensorflow
from ..options import DataOptions, add_data_arguments, add_rubric_argument
from ..paths import default_rubric

STATUS_MARK = {"passed": "ok", "partial": "part", "failed": "FAIL", "error": "ERROR",
               "timeout": "TIMEOUT", "crashed": "CRASH", "integrity": "INTEGRITY",
               "skipped": "skip"}


def format_table(report: engine.Report) -> str:
    rows = [(r.id, f"{r.score:g}/{r.max_score:g}", STATUS_MARK.get(r.status, r.status),
             f"{r.seconds:.1f}s", r.message) for r in report.items]
    widths = [max(len(row[i]) for row in rows + [("item", "points", "status", "time", "")])
              for i in range(4)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(("item", "points", "status", "time"), widths))
             + "  message"]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row[:4], widths)) + "  " + row[4])
    lines.append(f"total: {report.score:g} / {report.max_score:g} points "
                 f"({report.seconds:.1f} s)")
    for note in report.notes:
        lines.append(f"note: {note}")
    for flag in report.flags:
        lines.append(f"flagged ({flag.kind}): {flag.detail}")
    return "\n".join(lines)


def manual_lines(rubric: rubric_mod.Rubric, submission: Path, handed=None) -> list[str]:
    """A line per item a person grades: whether the submission holds an answer for it, as
    the batch will read it (grader.answers), so a misplaced answer is found before the due
    date. `handed`: the submission.Submission it was graded from, when it was read once."""
    from .. import answers

    visible = rubric.manual  # asked of students whenever their grade is shown
    if not visible:
        return []
    ids = [m.id for m in visible]
    found = answers.of_submission(handed, ids) if handed is not None else \
        answers.extract(submission, ids, rubric.exercise, own_folder=True)
    lines = [f"note: {found.problem}"] if found.problem else []
    for item in visible:
        answer = found.items[item.id]
        if answer.empty:
            cell = f"a Markdown cell tagged {answers.tag(item.id)}"
            beside = f"{answers.ANSWERS_FILE} beside the module, under '## {item.id}'"
            where = (cell if submission.suffix == ".ipynb" else beside if submission.suffix == ".py"
                     else f"{cell} of the notebook, or {beside}")
            said = f"no answer found: write it in {where}"
        else:
            said = (f"answer found ({len(answer.text.split())} words"
                    f"{f', {len(answer.images)} image(s)' if answer.images else ''})")
        lines.append(f"{item.id} ({item.points:g} points, graded by a person): {said}")
    return lines


class Ticker:
    """The running item and its elapsed time on one terminal line, redrawn twice a second
    (only on a terminal: logs get the table alone)."""

    def __init__(self, stream=None, live: bool | None = None):
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self._item, self._since, self._width = "", 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __call__(self, item: str) -> None:
        self._item, self._since = item, time.monotonic()

    def __enter__(self):
        if self.live:
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        if self.live:
            self._thread.join()
            if self._width:
                self.stream.write("\r" + " " * self._width + "\r")
                self.stream.flush()

    def _run(self) -> None:
        start = time.monotonic()
        while not self._stop.wait(0.5):
            now = time.monotonic()
            what = (f"{self._item} ({now - self._since:.0f} s)" if self._item
                    else "starting TensorFlow")
            line = f"grading: {what}, {now - start:.0f} s in all"
            # Carriage return and padding redraw the line on terminals and in notebooks alike.
            self.stream.write("\r" + line.ljust(self._width))
            self.stream.flush()
            self._width = max(self._width, len(line))


def prepare_inputs(pool: ThreadPoolExecutor, rubric, options: DataOptions = DataOptions()):
    """A Future of the grading inputs, made in a thread while the worker imports
    TensorFlow. A wrong weights or data file ends the grading with its one-line error when
    the inputs are first needed."""
    return pool.submit(rubric.exercise.grading_inputs, rubric, options)


HELP = "grade one submission (.py or .ipynb) and print a table"


def add_arguments(parser) -> None:
    parser.add_argument("submission")
    add_rubric_argument(parser)
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--all", action="store_true", help="include hidden items (instructors)")
    add_data_arguments(parser)


def execute(args) -> None:
    main(args.submission, args.rubric, args.json, args.all, DataOptions.from_args(args))


def main(submission: str, rubric_path: str | None = None, json_out: str | None = None,
         include_hidden: bool = False, options: DataOptions = DataOptions()) -> engine.Report:
    rubric = rubric_mod.load(rubric_path or default_rubric())
    if rubric.exercise.check_options:  # a malformed --data fails before anything starts
        rubric.exercise.check_options(options)
    if notice := check_tensorflow():
        print(notice, file=sys.stderr)
    path, handed = Path(submission), None
    try:
        if path.suffix == ".zip" and path.is_file():  # unpacked once: graded and its answers read
            handed = submission_mod.read(path.resolve(), engine.new_work_dir("check"), rubric.exercise)
        with ThreadPoolExecutor(1) as pool:
            inputs = prepare_inputs(pool, rubric, options)
            with Ticker() as ticker:
                report = engine.grade_submission(handed or submission, rubric, inputs,
                                                 include_hidden=include_hidden, name=str(submission),
                                                 own_folder=handed is None, strict=True,
                                                 progress=ticker)
        print(f"graded {submission} with {rubric.source} ({inputs.result().description})",
              file=sys.stderr)
        print(format_table(report))
        for line in manual_lines(rubric, path, handed):
            print(line)
    finally:
        if handed is not None:
            handed.discard()
    if json_out:
        write_text_atomic(json_out, json.dumps(report.to_dict(), indent=2))
    return report
