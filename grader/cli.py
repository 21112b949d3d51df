"""The `grader` command: one sub-command per verb, each calling that module's main()."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

from . import sandbox as sandbox_mod
from .errors import KitError


def _verb(module: str):
    """The module behind a verb, imported when the verb runs (TensorFlow only when needed)."""
    return importlib.import_module(f"{__package__}.{module}")


def _available(module: str) -> bool:
    """Instructor verbs are absent from the student package (see grader/wheel.py)."""
    try:
        return importlib.util.find_spec(f"{__package__}.{module}") is not None
    except ModuleNotFoundError:  # its package is absent too (another exercise's wheel)
        return False


def _train(args):
    train = _verb("exercises.transfer_learning.train")
    kind, *rest = args.data
    if len(rest) > 1:
        raise KitError(f"--data takes a kind and at most one path, found {' '.join(args.data)}.")
    train.main(data=kind, data_path=rest[0] if rest else None, weights=args.weights,
               steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
               checkpoint_dir=args.checkpoint_dir, log_dir=args.log_dir,
               checkpoint_every=args.checkpoint_every, verify_checksum=not args.no_verify,
               module=args.module)


def _check(args):
    check = _verb("verbs.check")
    check.main(args.submission, args.rubric, args.json, args.all, args.weights, args.data,
               args.no_verify)


def _generate(args):
    generate = _verb("verbs.generate")
    generate.main(check=args.check)


def _calibrate(args):
    calibrate = _verb("verbs.calibrate")
    calibrate.main(args.rubric, args.corpus, tuple(args.seeds), args.weights,
                   data=args.data, no_verify=args.no_verify, margin=args.margin,
                   time_factor=args.time_factor, write=not args.dry_run, plot_path=args.plot,
                   solutions=args.solution)


def _batch(args):
    batch = _verb("verbs.batch")
    summary = batch.main(args.submissions, args.out, workers=args.workers, regrade=args.regrade,
               rubric_path=args.rubric, weights=args.weights, memory_mb=args.memory_mb,
               scratch_mb=args.scratch_mb,
               user=args.user, network=args.allow_network, released=args.released,
               progress=not args.no_progress, scheduler=args.scheduler, data=args.data,
               no_verify=args.no_verify, roster=args.roster)
    # every student has a recorded grade; a file that could not be written for one is an
    # error the TA must see (said above in one line each), the others' files are written
    return 1 if summary["export_problems"] else 0


def _similarity(args):
    _verb("verbs.similarity").main(args.out, args.threshold, args.given, args.submissions, args.common)


def _flags(args):
    flags = _verb("verbs.flags")
    flags.main(args.out, args.student)


def _review(args):
    _verb("verbs.review").main(args.out, host=args.host, port=args.port, grader=args.grader,
                               open_browser=not args.no_browser)


def _report(args):
    _verb("verbs.report").main(args.out, dest=args.to)


def _export(args):
    return _verb("verbs.export").main(args.out, released=args.released)


def _gradescope(args):
    gradescope = _verb("verbs.gradescope")
    gradescope.build_package(args.out, rubric_path=args.rubric, weights=args.weights,
                             data=args.data, no_verify=args.no_verify)


def _convert_weights(args):
    convert_weights = _verb("exercises.transfer_learning.convert_weights")
    convert_weights.main(args.out)


def _data_options(p: argparse.ArgumentParser) -> None:
    """--data, --no-verify and --weights: overrides of what the rubric's exercise grades on
    (for the kit's own, grader/exercises/transfer_learning/data.py)."""
    p.add_argument("--data", nargs="+", metavar="KIND [PATH]",
                   help="'synthetic' or 'cifar10 [PATH]' (archive or extracted folder; the cache, "
                        "downloaded once, when PATH is left out); default: the rubric's data")
    p.add_argument("--no-verify", action="store_true",
                   help="accept a CIFAR-10 archive whose MD5 is not the rubric's (or the official one)")
    p.add_argument("--weights", help="vgg16-conv-weights.npz; default: the rubric's weights, else "
                   "$GRADER_WEIGHTS, else stand-in weights")


def _release_options(p: argparse.ArgumentParser) -> None:
    """--released / --unreleased: kept in the gradebook, so a later batch or export that
    says neither keeps what was said last (default at first: not released)."""
    group = p.add_mutually_exclusive_group()
    group.add_argument("--released", dest="released", action="store_const", const=True, default=None,
                       help="the grades are released: feedback and exports also show "
                            "after_due_date / after_published items")
    group.add_argument("--unreleased", dest="released", action="store_const", const=False,
                       help="take the release back")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grader", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    verbs = parser.add_subparsers(dest="verb", required=True)
    if _available("exercises.transfer_learning.train"):
        p = verbs.add_parser("train", help="train the reference (or a module) end to end; "
                             "run again to resume")
        p.add_argument("--data", nargs="+", default=["synthetic"], metavar="KIND [PATH]",
                       help="'synthetic' (default, offline) or 'cifar10 [PATH]' (archive or "
                            "extracted folder; downloaded into the cache when PATH is left out)")
        p.add_argument("--weights", help="vgg16-conv-weights.npz (default: $GRADER_WEIGHTS, "
                       "else stand-in weights)")
        p.add_argument("--steps", type=int, default=_verb("exercises.transfer_learning.train").DEFAULT_STEPS,
                       help="global step to train up to (default: %(default)s)")
        p.add_argument("--batch-size", type=int, default=64)
        p.add_argument("--learning-rate", type=float, help="default: the module's own")
        p.add_argument("--checkpoint-dir", default="runs/reference/checkpoints")
        p.add_argument("--checkpoint-every", type=int, default=100)
        p.add_argument("--log-dir", default="runs/reference/logs")
        p.add_argument("--no-verify", action="store_true",
                       help="accept a CIFAR-10 archive whose MD5 is not the official one")
        p.add_argument("--module", help="exercise module to train (default: the reference "
                       "solution of the course folder)")
        p.set_defaults(run=_train)

    if _available("verbs.check"):
        p = verbs.add_parser("check", help="grade one submission (.py or .ipynb) and print a table")
        p.add_argument("submission")
        p.add_argument("--rubric", help="rubric YAML (default: the course's rubric, or the one "
                       "installed with the package)")
        p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
        p.add_argument("--all", action="store_true", help="include hidden items (instructors)")
        _data_options(p)
        p.set_defaults(run=_check)

    if _available("verbs.generate"):
        p = verbs.add_parser("generate", help="generate skeletons, notebooks and the student "
                             "bundle from the marked solution")
        p.add_argument("--check", action="store_true",
                       help="only report generated files that are out of date (exit 2 if any)")
        p.set_defaults(run=_generate)

    if _available("verbs.calibrate"):
        calibrate = _verb("verbs.calibrate")
        p = verbs.add_parser("calibrate", help="instructors: grade the corpus of correct solutions "
                             "and low variants, then write accuracy bounds and time limits into "
                             "the rubric")
        p.add_argument("--rubric", help="rubric YAML to calibrate (default: rubrics/transfer_learning.yaml)")
        p.add_argument("--corpus", help="corpus folder with correct/ and variants.yaml "
                       "(default: tests/corpus)")
        p.add_argument("--solution", action="append", metavar="NAME",
                       help="calibrate on these correct solutions only (repeatable)")
        p.add_argument("--seeds", type=int, nargs="+", default=list(calibrate.SEEDS),
                       help="grading seeds; each correct solution runs once per seed")
        _data_options(p)
        p.add_argument("--margin", type=float, default=calibrate.MARGIN,
                       help="upper bound = lowest correct accuracy minus this")
        p.add_argument("--time-factor", type=float, default=calibrate.TIME_FACTOR,
                       help="time limit = this multiple of the slowest correct run")
        p.add_argument("--plot", metavar="PNG", help="write a plot of the accuracy distributions")
        p.add_argument("--dry-run", action="store_true", help="print the table, leave the rubric")
        p.set_defaults(run=_calibrate)

    if _available("verbs.batch"):
        p = verbs.add_parser("batch", help="grade a folder of submissions (TAs): parallel, "
                             "sandboxed, resumable; CSV, feedback and Gradescope exports")
        p.add_argument("submissions", help="folder of .py, .ipynb, .zip files or per-student folders")
        p.add_argument("--out", required=True, help="output folder (gradebook.sqlite, grades.csv, ...)")
        p.add_argument("--workers", type=int, help="submissions graded at once (default: cores)")
        p.add_argument("--scheduler", metavar="ADDRESS",
                       help="grade on a Dask cluster: tcp://HOST:8786, or local:N for N local worker "
                            "processes (needs the [cluster] extra); judging and the gradebook stay here")
        p.add_argument("--regrade", action="store_true", help="grade again even if unchanged")
        p.add_argument("--rubric", help="rubric YAML (default: the course's rubric, or the one "
                       "installed with the package)")
        _data_options(p)
        p.add_argument("--memory-mb", type=int, default=sandbox_mod.BATCH_MEMORY_MB,
                       help="address-space cap per worker (default: %(default)s)")
        p.add_argument("--scratch-mb", type=int, default=sandbox_mod.SCRATCH_MB,
                       help="what one submission may write in all (a root grader's size-limited "
                            "tmpfs; 0: no limit)")
        p.add_argument("--user", default="auto", help="the unprivileged user a root grader runs "
                       "submissions as (default: nobody; ignored when not run as root)")
        p.add_argument("--allow-network", action="store_true", help="do not cut the network")
        p.add_argument("--roster", metavar="CSV", help="the class as the LMS exports it (Moodle's "
                       "grading worksheet, Canvas's gradebook CSV): e-mails, SIS ids, sections and "
                       "the Canvas assignment column for the LMS upload files")
        _release_options(p)
        p.add_argument("--no-progress", action="store_true")
        p.set_defaults(run=_batch)

    if _available("verbs.flags"):
        p = verbs.add_parser("flags", help="list the integrity flags a batch raised, for review")
        p.add_argument("out", help="the --out folder of `grader batch`")
        p.add_argument("--student", help="only this student's flags")
        p.set_defaults(run=_flags)

    if _available("verbs.review"):
        p = verbs.add_parser("review", help="TAs: a local web page to go through a batch and "
                             "grade the manual items")
        p.add_argument("out", help="the --out folder of `grader batch`")
        p.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (default: %(default)s, this machine only)")
        p.add_argument("--port", type=int, default=0, help="port (default: a free one)")
        p.add_argument("--grader", default=os.environ.get("USER", ""),
                       help="your name, saved with each grade (default: $USER)")
        p.add_argument("--no-browser", action="store_true", help="print the URL, open no browser")
        p.set_defaults(run=_review)

    if _available("verbs.report"):
        p = verbs.add_parser("report", help="instructors: a one-file HTML report of a batch, "
                             "with its figures as PNG files")
        p.add_argument("out", help="the --out folder of `grader batch`")
        p.add_argument("--to", help="folder for report.html and the PNGs (default: OUT/report)")
        p.set_defaults(run=_report)

    if _available("verbs.export"):
        p = verbs.add_parser("export", help="rebuild a batch's CSV, feedback, Gradescope and "
                             "Moodle files from its gradebook (manual grades included)")
        p.add_argument("out", help="the --out folder of `grader batch`")
        _release_options(p)
        p.set_defaults(run=_export)

    if _available("verbs.similarity"):
        p = verbs.add_parser("similarity", help="compare a batch's submissions for copied code, "
                             "the given code removed, and for runs that behaved alike in ways of "
                             "their own (advisory: for a person to judge)")
        p.add_argument("out", help="the --out folder of `grader batch`")
        p.add_argument("--threshold", type=float, default=_verb("verbs.similarity").THRESHOLD,
                       help="report pairs whose code score is at least this (default: "
                            "%(default)s, measured; see docs/copying.md); pairs that behaved alike "
                            "are reported at any code score")
        p.add_argument("--given", nargs="+", metavar="FILE",
                       help="the code students were given (.py, .ipynb, or a handout's code "
                            "blocks; default: the course's skeletons/)")
        p.add_argument("--submissions", metavar="FOLDER",
                       help="where the graded submissions are now, if they moved")
        p.add_argument("--common", type=int, default=_verb("verbs.similarity").COMMON, metavar="N",
                       help="ignore code held by more than N submissions: the class's shared "
                            "idioms (default: %(default)s; raise it to see a larger group of copies)")
        p.set_defaults(run=_similarity)

    if _available("verbs.gradescope"):
        p = verbs.add_parser("gradescope-package", help="build a Gradescope autograder zip")
        p.add_argument("out", nargs="?", default="dist/gradescope-autograder.zip")
        p.add_argument("--rubric", help="rubric YAML (default: the course's rubric, or the one "
                       "installed with the package)")
        _data_options(p)
        p.set_defaults(run=_gradescope)

    if _available("exercises.transfer_learning.convert_weights"):
        p = verbs.add_parser("convert-weights", help="write the course weights file from Keras' "
                             "ImageNet VGG16 (needs internet)")
        p.add_argument("out", nargs="?", default="vgg16-conv-weights.npz")
        p.set_defaults(run=_convert_weights)

    return parser

def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    try:
        status = args.run(args)
    except KitError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: checkpoints saved so far are kept; run the same command to resume.",
              file=sys.stderr)
        return 130
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
