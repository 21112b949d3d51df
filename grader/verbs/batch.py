"""`grader batch SUBMISSIONS --out DIR`: grade a folder of submissions for a course.

Each submission is graded by the engine in its own sandboxed worker (grader.sandbox:
a private filesystem view without the gradebook, the rubric or other submissions, no
network, a PID namespace, a memory cap, an unprivileged user when run as root), several
at a time.
Results go to a SQLite gradebook one submission per transaction, so a killed batch
resumes where it stopped; unchanged submissions already graded are skipped. At the end
the CSV, per-student feedback and Gradescope results.json files are rebuilt from the
gradebook and a summary is printed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import __version__, answers as answers_mod, engine, rubric as rubric_mod, sandbox as sandbox_mod
from ..records import exports, late as late_mod, lms
from ..errors import KitError, SubmissionError
from ..engine.runner import Runner
from ..records.gradebook import Gradebook, status_of
from ..options import DataOptions, add_data_arguments, add_release_arguments, add_rubric_argument
from ..paths import default_rubric
from .. import submission as submission_mod
from ..names import shown, student_id
from ..submission import content_hash


HELP = ("grade a folder of submissions (TAs): parallel, sandboxed, resumable; CSV, feedback and "
        "Gradescope exports")


def add_arguments(parser) -> None:
    parser.add_argument("submissions", help="folder of .py, .ipynb, .zip files or per-student folders")
    parser.add_argument("--out", required=True, help="output folder (gradebook.sqlite, grades.csv, ...)")
    parser.add_argument("--workers", type=int, help="submissions graded at once (default: cores)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="grade on a Dask cluster: tcp://HOST:8786, or local:N for N local "
                             "worker processes (needs the [cluster] extra); judging and the "
                             "gradebook stay here")
    parser.add_argument("--regrade", action="store_true", help="grade again even if unchanged")
    add_rubric_argument(parser)
    add_data_arguments(parser)
    parser.add_argument("--memory-mb", type=int, default=sandbox_mod.BATCH_MEMORY_MB,
                        help="address-space cap per worker (default: %(default)s)")
    parser.add_argument("--scratch-mb", type=int, default=sandbox_mod.SCRATCH_MB,
                        help="what one submission may write in all (a root grader's size-limited "
                             "tmpfs; 0: no limit)")
    parser.add_argument("--user", default="auto", help="the unprivileged user a root grader runs "
                        "submissions as (default: nobody; ignored when not run as root)")
    parser.add_argument("--allow-network", action="store_true", help="do not cut the network")
    parser.add_argument("--roster", metavar="CSV", help="the class as the LMS exports it (Moodle's "
                        "grading worksheet, Canvas's gradebook CSV): e-mails, SIS ids, sections "
                        "and the Canvas assignment column for the LMS upload files")
    add_release_arguments(parser)
    parser.add_argument("--no-progress", action="store_true")


def execute(args) -> int:
    summary = main(args.submissions, args.out, workers=args.workers, regrade=args.regrade,
                   rubric_path=args.rubric, options=DataOptions.from_args(args),
                   memory_mb=args.memory_mb, scratch_mb=args.scratch_mb, user=args.user,
                   network=args.allow_network, released=args.released,
                   progress=not args.no_progress, scheduler=args.scheduler, roster=args.roster)
    # every student has a recorded grade; a file that could not be written for one is an
    # error the TA must see (said above in one line each), the others' files are written
    return 1 if summary["export_problems"] else 0


def main(submissions: str, out: str, workers: int | None = None, regrade: bool = False,
         rubric_path: str | None = None, options: DataOptions = DataOptions(),
         memory_mb: int = sandbox_mod.BATCH_MEMORY_MB,
         user: str = "auto", network: bool = False, startup_limit: float = engine.STARTUP_LIMIT,
         released: bool | None = None, progress: bool = True, scheduler: str | None = None,
         scratch_mb: int = sandbox_mod.SCRATCH_MB, roster: str | None = None) -> dict:
    folder, download = _submissions_folder(submissions, out)
    rubric_file = Path(rubric_path or default_rubric())
    rubric = rubric_mod.load(rubric_file)
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise KitError(f"--workers must be at least 1, found {workers}.")
    out = Path(out)
    rubric.heldout_seed = _heldout_seed(out)
    if rubric.exercise.check_options:  # a malformed --data fails before anything starts
        rubric.exercise.check_options(options)
    # the inputs are made before the output folder: a wrong data or weights file leaves nothing
    inputs = rubric.exercise.grading_inputs(rubric, options)
    roster_data = lms.read_roster(roster) if roster else None  # read before anything is written
    _make_out(out, folder, download)
    book = Gradebook(out / "gradebook.sqlite")
    try:
        released = _record_setting(book, rubric, folder, roster_data, released)
        # the weights and data are part of what a grade was given under: changing either regrades
        # (the manual items are not: a prompt or a rubric line edited mid-grading must not
        # retrain the class, see autograded_text)
        rubric_hash = hashlib.sha256(autograded_text(rubric_file).encode()
                                     + inputs.fingerprint().encode()).hexdigest()[:16]
        runner = Runner(rubric, inputs, scheduler, workers, startup_limit, memory_mb, network,
                         user, scratch_mb, [out, rubric_file.parent, folder])
        todo: dict[str, _Handed] = {}  # read, to grade: each copy removed once recorded
        try:
            found, refused = _read_class(book, folder, rubric, rubric_hash, regrade, todo)
            print(f"{len(found)} submissions, {len(found) - len(refused) - len(todo)} already "
                  "graded, " + (f"{len(refused)} refused, " if refused else "")
                  + f"{len(todo)} to grade {runner.where}; grading on {inputs.description}",
                  file=sys.stderr)

            def record(student: str, report: engine.Report, host: str) -> str:
                """Record one graded submission; its line for the TA."""
                _record_graded(book, student, todo[student], rubric_hash, report, host)
                return (f"{shown(student)}: {status_of(report)[0]}, {exports.points(report.score)}/"
                        f"{exports.points(report.max_score)} in {report.seconds:.0f} s"
                        + (f", on {shown(host)}" if runner.remote else ""))

            for student, handed in todo.items():  # unreadable: nothing to run
                if handed.submission is None:
                    print(record(student, _skipped(student, handed.problem, rubric, inputs),
                                 socket.gethostname()), file=sys.stderr)
            runner.grade([(s, h.submission) for s, h in todo.items() if h.submission is not None],
                         progress, record)
        finally:
            for handed in todo.values():
                handed.discard()
        problems = exports.write_all(book, out, released)
        for student, problem in problems:
            print(f"error: {shown(student)}: {problem}", file=sys.stderr)
        summary = summarize(book, [i.id for i in rubric.select(include_hidden=True)], out)
    finally:
        book.close()
    summary["refused"] = sorted(refused)
    summary["export_problems"] = problems
    summary["similar"] = _similarity(out)
    return summary


def _submissions_folder(submissions: str, out: str) -> tuple[Path, Path | None]:
    """(the folder to grade, the LMS download zip it is unpacked from, or None)."""
    folder = Path(submissions).resolve()  # the same path in the gradebook however it was typed
    download = folder if folder.is_file() and folder.suffix.lower() == ".zip" else None
    if download is not None:  # an LMS's "download all submissions" zip: unpacked into OUT/download
        return Path(out).resolve() / DOWNLOAD_FOLDER, download
    if not folder.is_dir():
        raise KitError(f"{folder}: expected a folder of submissions (.py, .ipynb, .zip or one "
                       "folder per student), or the zip an LMS downloads them in.")
    return folder, None


def _heldout_seed(out: Path) -> int:
    """The gradebook's private held-out seed, or a new one: a submission cannot regenerate
    the labels. 128 bits, because the seeds the items run under are derived from it and
    reach the worker: a small seed could be found from them by brute force."""
    seed = None
    if (out / "gradebook.sqlite").is_file():
        existing = Gradebook(out / "gradebook.sqlite")
        try:
            seed = existing.get_meta("heldout_seed")
        finally:
            existing.close()
    return int(seed or engine.private_seed())


def _make_out(out: Path, folder: Path, download: Path | None) -> None:
    """OUT, private to the grader, with the download unpacked into it (replacing the last
    one whole)."""
    # before OUT exists, beside it (one file system: the swap below is two renames)
    unpacked = _unpack_download(download, out) if download is not None else None
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)  # the gradebook is private to the grader
    if unpacked is not None:
        old = out / f".{DOWNLOAD_FOLDER}-replaced"
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            folder.rename(old)
        shutil.move(str(unpacked), str(folder))  # a rename, unless OUT's parent was made just now
        shutil.rmtree(old, ignore_errors=True)
        shutil.rmtree(unpacked.parent, ignore_errors=True)
        print(f"notice: {download.name} unpacked into {folder}", file=sys.stderr)


def _record_setting(book: Gradebook, rubric, folder: Path, roster_data, released) -> bool:
    """What the other verbs read of this batch, kept in its gradebook; whether the grades
    are released (as said now, else as the last batch or export said)."""
    if book.get_meta("heldout_seed") is None:
        book.set_meta("heldout_seed", str(rubric.heldout_seed))
    # what `grader similarity` reads the submissions as
    book.set_meta("exercise", json.dumps({"name": rubric.exercise.name,
                                          "search_path": list(rubric.exercise.search_path)}))
    # what review, report and the exports read of the rubric
    book.set_meta("title", rubric.title)
    if roster_data is not None:  # else the roster a previous batch was given, if any
        book.set_meta("roster", json.dumps(roster_data))
    # the due date and penalty the exports apply (the rubric's; none: nothing is late)
    book.set_meta("late", json.dumps(rubric.late.to_dict()) if rubric.late else "")
    # where the submissions are, for `grader similarity` (which reads them as entries() does)
    book.set_meta("submissions_folder_hex", os.fsencode(str(folder.resolve())).hex())
    if released is not None:
        book.set_meta("released", "1" if released else "0")
    book.set_meta("rubric_items", json.dumps([
        {"id": i.id, "title": i.title, "points": i.points, "check": i.check,
         "visibility": i.visibility, "params": i.params} for i in rubric.items], default=str))
    book.set_manual_items([m.to_dict() for m in rubric.manual])
    return book.get_meta("released") == "1"


@dataclass
class _Handed:
    """One student's submission as the batch read it, before any code ran: the copy to
    grade (`submission.read`; None when it could not be read, and `problem` says why), its
    hash, the code similarity compares and the written answers, all from that one read."""
    source: Path
    submission: submission_mod.Submission | None
    problem: str
    hash: str
    code: tuple[str, str]
    answers: answers_mod.Answers

    def discard(self) -> None:
        if self.submission is not None:
            self.submission.discard()


def _read_one(student: str, path: Path, exercise, manual_ids: list[str]) -> _Handed:
    """Read one entry once; whatever goes wrong is that student's recorded problem."""
    from ..copying.code import read_code, recovered_code

    work = engine.new_work_dir(student)
    try:
        handed = submission_mod.read(path, work, exercise)
        code = read_code(student, handed.module, exercise)
        return _Handed(path, handed, "", handed.hash, (code.text, code.note),
                       _answers(handed, manual_ids, path))
    except BaseException as exc:
        shutil.rmtree(work, ignore_errors=True)
        if not isinstance(exc, Exception):  # an interrupt: nothing half-read is left behind
            raise
        why = str(exc) if isinstance(exc, SubmissionError) else \
            f"{student}: could not be read ({type(exc).__name__})."
    code = recovered_code(student, path, why, exercise)
    return _Handed(path, None, why, content_hash(path), (code.text, code.note),
                   answers_mod.Answers.none(manual_ids, why))


def _read_class(book: Gradebook, folder: Path, rubric, rubric_hash: str, regrade: bool,
                todo: dict) -> tuple[list, dict]:
    """Read the class folder once: (its entries, {student: why refused}). Each entry is
    read (`_read_one`) and hashed; an unchanged one has its answers recorded for the
    current items and its copy removed at once, the others go into `todo` (the caller's,
    so that it removes their copies whatever happens). Each refused entry is recorded as
    that student's problem, nobody else's."""
    # the ids the gradebook gave entries of these names, wherever the folder was then
    previous = {r["source"].rsplit("/", 1)[-1]: r["student"] for r in book.submissions()}
    found = submission_mod.entries(folder, previous)
    # the class as this download has it: the LMS files leave out entries of earlier ones
    book.set_meta("current_entries", json.dumps([e.student for e in found]))
    manual_ids = [m.id for m in rubric.manual]
    refused = {}
    for entry in found:
        if entry.problem:
            refused[entry.student] = entry.problem
            continue
        try:
            handed = _read_one(entry.student, entry.path, rubric.exercise, manual_ids)
        except Exception as exc:  # noqa: BLE001 - not even its bytes could be read
            refused[entry.student] = f"{entry.student}: could not be read ({type(exc).__name__})."
            continue
        if regrade or not book.is_current(entry.student, handed.hash, __version__, rubric_hash):
            todo[entry.student] = handed
            continue
        try:  # unchanged: its answers, read for the current items
            if manual_ids:
                book.set_answers(entry.student, handed.answers)
        finally:
            handed.discard()
    paths = {e.student: e.path for e in found}
    for student, problem in refused.items():
        report = engine.unreadable_report(student, rubric, True, problem)
        digest = "refused:" + hashlib.sha256(problem.encode()).hexdigest()
        book.record(student, _source(paths[student]), digest, rubric_hash, report, "failed",
                    problem, answers=answers_mod.Answers.none(manual_ids, problem))
        print(f"refused: {problem}", file=sys.stderr)
    return found, refused


def _record_graded(book: Gradebook, student: str, handed: _Handed, rubric_hash: str, report,
                   host: str) -> None:
    """One graded submission into the gradebook (one transaction) with its answers and the
    code `grader similarity` compares, as read before it ran; then its copy is removed."""
    status, message = status_of(report)
    book.record(student, _source(handed.source), handed.hash, rubric_hash, report, status,
                message, host=host, answers=handed.answers, code=handed.code)
    handed.discard()


def _skipped(student: str, problem: str, rubric, inputs) -> engine.Report:
    """The report of a submission that could not be read: every item skipped, saying why."""
    items = rubric.select(include_hidden=True)
    found = engine.Collection({i.id: engine.Failed("skipped", problem) for i in items},
                              import_failed=True)
    return engine.report(student, items, found, inputs, rubric, 0.0)


def _source(path: Path) -> str:
    """The submission's path as the gradebook keeps it: text, undecodable bytes as \\xNN."""
    return student_id(str(path))


def _answers(handed: submission_mod.Submission, manual_ids: list[str], path: Path
             ) -> answers_mod.Answers:
    """The submission's written answers, read from its copy without running anything
    (grader.answers); whatever goes wrong is the submission's recorded problem, never the
    batch's end: its grades are recorded either way."""
    try:
        return answers_mod.of_submission(handed, manual_ids)
    except Exception as exc:  # noqa: BLE001 - the files are the student's
        return answers_mod.Answers.none(manual_ids, f"{student_id(path.name)}: its answers "
                                                    f"could not be read ({type(exc).__name__})")


def _similarity(out: Path) -> int | None:
    """Compare the batch's submissions for copying (advisory, see grader/copying);
    the number of pairs reported, or None when it could not run (said in one line)."""
    from .. import copying

    try:
        result = copying.run(out)
    except KitError as exc:
        print(f"notice: similarity not computed: {shown(exc)} Run `grader similarity {out}` "
              "with --given.", file=sys.stderr)
        return None
    except Exception as exc:  # noqa: BLE001 - the grades are recorded: advice must not undo that
        print(f"notice: similarity not computed ({type(exc).__name__}: {shown(exc)}); the grades are "
              f"recorded. Run `grader --debug similarity {out}` for details.",
              file=sys.stderr)
        return None
    print(copying.summary(result, out))
    return len(result.pairs)


DOWNLOAD_FOLDER = "download"
"""where `grader batch CLASS.zip --out OUT` unpacks the class (OUT/download): the same paths on
every run, so a rerun with a new download grades only what changed"""


def _unpack_download(archive: Path, out: Path) -> Path:
    """The class zip unpacked into a new private folder beside `out` (in the system's
    temporary folder when `out`'s parent does not exist yet); refused whole, in one line,
    when it is not a zip or breaks a bound, and then nothing is left behind."""
    import tempfile

    parent = Path(out).resolve().parent
    staging = Path(tempfile.mkdtemp(prefix=".grader-download-", dir=parent if parent.is_dir() else None))
    try:
        (staging / "unpacked").mkdir()
        submission_mod.unpack_class(archive, staging / "unpacked")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging / "unpacked"


def autograded_text(rubric_file: Path) -> str:
    """The rubric as the autograded items see it: its YAML without the manual items (which
    no worker runs), so that editing those regrades nothing."""
    import yaml

    data = yaml.safe_load(rubric_file.read_text(encoding="utf-8"))
    data["items"] = [i for i in data["items"] if i.get("check") != rubric_mod.MANUAL]
    data.pop("late", None)  # a due date or an extension moved changes the grades exported, not the grading
    return yaml.safe_dump(data, sort_keys=True)


def summarize(book: Gradebook, item_ids: list[str], out: Path | str = "OUT") -> dict:
    rows = book.submissions()
    counts = {status: sum(r["status"] == status for r in rows) for status in ("graded", "failed", "timed_out")}
    mean = sum(r["score"] for r in rows) / len(rows) if rows else 0.0
    failures = {}
    for item in item_ids:
        lost = sum(1 for r in rows for i in book.items(r["student"])
                   if i["item"] == item and i["score"] < i["max_score"])
        failures[item] = lost / len(rows) if rows else 0.0
    print(f"graded {counts['graded']}, failed {counts['failed']}, timed out {counts['timed_out']}; "
          f"mean score {mean:.1f} / {rows[0]['max_score'] if rows else 0:g}")
    print("items not at full marks: " + ", ".join(f"{k} {v:.0%}" for k, v in failures.items()))
    if book.manual_items():
        statuses = [s for r in rows for s in book.manual_status(r["student"]).values()]
        open_ = [s for s in statuses if s != "graded"]
        print(f"manual items: {len(statuses) - len(open_)} of {len(statuses)} graded"
              f"{' (' + exports.manual_summary(open_) + ')' if open_ else ''}; grade them in "
              f"`grader review {out}`")
    leftover = book.leftover()
    if leftover:
        items = sorted({g["item"] for g in leftover})
        print(f"notice: {len(leftover)} manual grade(s) for {', '.join(items)}, no longer in the "
              "rubric, are kept in the gradebook and counted nowhere; put the item back to count "
              "them")
    layout = lms.describe(exports.current_students(book, rows))  # as the LMS files read the class
    if layout:
        print(f"notice: {layout}")
    if book.get_meta("late"):
        current = exports.current_students(book, rows)
        judged = exports.late_judge(book, current)
        late = [judged(s) for s in current]
        layout = lms.layout_of(current)
        roster = exports.roster_of(book, lms.MOODLE)
        times = [p.get("submitted", "") for p in roster.get("people", {}).values()]
        times = [t for t in times if t not in ("", "-")]
        policy_zone = late_mod.Policy.from_dict(json.loads(book.get_meta("late"))).zone
        unread = [t for t in times if late_mod.moodle_time(t, policy_zone) is None]
        if layout == lms.MOODLE and unread:
            print(f"notice: {len(unread)} submission time(s) of the roster could not be read (such as "
                  f"{shown(repr(unread[0][:60]))}; expected Moodle's English form, \"Monday, 7 December 2026, 4:05 PM\"): "
                  "those students are not judged late; export the worksheet with English as the language")
        if layout == lms.MOODLE and not times:
            print("notice: the rubric has a due date, but Moodle's download names do not say when "
                  "each submission came: pass the grading worksheet as --roster to judge lateness")
        elif layout == lms.PLAIN:
            print("notice: the rubric has a due date, but a plain folder does not say when each "
                  "submission came: nothing is judged late (a Moodle or Canvas download does)")
        else:
            print(f"late: {sum(j.late for j in late)} submission(s), {sum(j.percent > 0 for j in late)} "
                  "charged a penalty in grades.csv, the feedback and the LMS files")
    current = set(exports.current_students(book, rows))
    held = exports.held_back(book.manual_statuses()) & current
    if held:
        print(f"held back from moodle.csv and the LMS upload files: {len(held)} grade(s) with a "
              f"written question still to grade or needing review; they are added once graded in "
              f"`grader review {out}`")
    chosen = exports.lms_selection(book, rows, book.manual_statuses())
    other = {s: why for s, why in chosen.left_out.items() if why != exports.HELD}
    for student, why in list(other.items())[:10]:
        print(f"left out of the LMS upload files: {shown(student)}: {why}")
    if len(other) > 10:
        print(f"left out of the LMS upload files: {len(other) - 10} more, listed in grades.csv's order")
    roster = exports.roster_of(book, lms.CANVAS)
    if chosen.layout == lms.CANVAS and roster.get("assignments") and \
            lms.canvas_column(book.get_meta("title") or "", roster) not in roster["assignments"]:
        print(f"notice: canvas.csv's grade column is headed {book.get_meta('title')!r}, which names none "
              f"of the roster's assignments ({', '.join(roster['assignments'][:5])}): give the rubric "
              "that assignment's title, or Canvas will offer to make a new assignment")
    flagged = sorted({f["student"] for f in book.flags()})
    if flagged:
        print(f"flagged for review: {len(flagged)} submission(s) ({shown(', '.join(flagged[:10]))}"
              f"{', ...' if len(flagged) > 10 else ''}); list them with: grader flags {out}")
    return {"counts": counts, "mean": mean, "failure_rates": failures, "total": len(rows),
            "flagged": flagged}
