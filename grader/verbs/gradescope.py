"""Gradescope: build an autograder package, and the entry point it runs there.

    grader gradescope-package dist/gradescope-autograder.zip

The zip holds setup.sh (installs the kit's requirements into a virtual environment),
run_autograder (grades /autograder/submission into /autograder/results/results.json with
the same engine as `grader check` and `grader batch`), the kit's source, the rubric, its
exercise's package and what that exercise grades with (Exercise.shipped: for the kit's
own, the weights and, for a course graded on CIFAR-10, the archive). The packaged rubric
names those files with their checksums, so the package grades on exactly what it was
built with and refuses a damaged copy.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path

from .. import engine, rubric as rubric_mod, wheel
from ..records import exports
from ..errors import KitError
from ..fsutil import atomic_path
from ..options import DataOptions, add_data_arguments, add_rubric_argument
from ..paths import PACKAGE, default_rubric

SETUP_SH = """\
#!/usr/bin/env bash
# Gradescope runs this once when it builds the autograder image.
set -euo pipefail
apt-get update && apt-get install -y python3 python3-venv python3-pip
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install --upgrade pip
/autograder/venv/bin/pip install -r /autograder/source/kit/requirements.txt
"""

RUN_AUTOGRADER = """\
#!/usr/bin/env bash
# Gradescope runs this for every submission. AUTOGRADER_ROOT and AUTOGRADER_PYTHON let
# the package be tried outside Gradescope, on a folder laid out like /autograder.
set -uo pipefail
ROOT="${AUTOGRADER_ROOT:-/autograder}"
PY="${AUTOGRADER_PYTHON:-$ROOT/venv/bin/python}"
cd "$ROOT/source/kit"
PYTHONPATH="$ROOT/source/kit" exec "$PY" -m grader.verbs.gradescope --root "$ROOT"
"""


HELP = "build a Gradescope autograder zip"


def add_arguments(parser) -> None:
    parser.add_argument("out", nargs="?", default="dist/gradescope-autograder.zip")
    add_rubric_argument(parser)
    add_data_arguments(parser)


def execute(args) -> None:
    build_package(args.out, rubric_path=args.rubric, options=DataOptions.from_args(args))


def build_package(out: str | os.PathLike, rubric_path: str | None = None,
                  options: DataOptions = DataOptions()) -> Path:
    import yaml

    rubric_file = Path(rubric_path or default_rubric())
    rubric = rubric_mod.load(rubric_file)  # never ship an invalid rubric
    exercise = rubric.exercise
    if exercise.check_options:
        exercise.check_options(options)
    # What the exercise grades with (its data, its weights), with the rubric's sections
    # pointing at the copies in the package.
    shipped, sections = exercise.shipped(rubric, options) if exercise.shipped \
        else ({}, {})
    shipped = {f"kit/{name}": content for name, content in shipped.items()}
    # A fresh 128-bit held-out seed for this package: the one in the instructor's rubric may
    # be small enough to find from the item seeds a submission sees.
    data = yaml.safe_load(rubric_file.read_text(encoding="utf-8"))
    data["heldout_seed"] = engine.private_seed()
    data.update(sections)
    # An exercise kept outside the kit travels inside the package's grader/exercises.
    data.pop("exercise_path", None)
    data["exercise"] = exercise.name
    packaged_rubric = ("# packaged by grader gradescope-package: heldout_seed is this package's own\n"
                       + yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    if not exercise.search_path:  # (one from outside is checked once it is in the package)
        rubric_mod.parse(yaml.safe_load(packaged_rubric), "packaged rubric")
    files: dict[str, bytes] = {
        "setup.sh": SETUP_SH.encode(),
        "run_autograder": RUN_AUTOGRADER.encode(),
        # The kit's own requirements, as installed here: the grader runs from kit/ itself.
        "kit/requirements.txt": ("\n".join(wheel.kit_requirements()) + "\n").encode(),
        "kit/rubric.yaml": packaged_rubric.encode("utf-8"),
    }
    for path in sorted(PACKAGE.rglob("*.py")):  # subpackages included
        if "__pycache__" not in path.parts:
            files[f"kit/grader/{path.relative_to(PACKAGE).as_posix()}"] = path.read_bytes()
    for folder in exercise.search_path:
        own = Path(folder) / exercise.name
        for path in sorted(own.rglob("*.py")):
            if "__pycache__" not in path.parts:
                files[f"kit/grader/exercises/{exercise.name}/{path.relative_to(own).as_posix()}"] = \
                    path.read_bytes()
    files.update(shipped)
    out = Path(out)
    with atomic_path(out) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, content in files.items():
                info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = (0o755 if name in ("setup.sh", "run_autograder") else 0o644) << 16
                if isinstance(content, Path):  # the archive is gzip already: stored, streamed
                    info.compress_type = zipfile.ZIP_STORED
                    with content.open("rb") as source, archive.open(info, "w", force_zip64=True) as target:
                        shutil.copyfileobj(source, target, 1 << 20)
                else:
                    info.compress_type = zipfile.ZIP_DEFLATED
                    archive.writestr(info, content)
    print(f"wrote {out}: upload it as the autograder of a Gradescope programming assignment")
    return out


def _write_results(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(results, indent=2), encoding="utf-8")


def run(root: Path) -> dict:
    """Grade root/submission into root/results/results.json (always written)."""
    from ..submission import entries as entries_of

    kit = Path(__file__).resolve().parents[2]
    results_file = root / "results" / "results.json"
    try:
        rubric = rubric_mod.load(kit / "rubric.yaml")
        found = entries_of(root / "submission")
        if not any(not e.problem for e in found):  # nothing gradable: say why, if we know
            name = rubric.exercise.module_name
            raise KitError(" ".join(e.problem for e in found)
                           or f"no submission found: upload {name}.py or {name}.ipynb")
        # the shipped weights and data, checked against the packaged rubric's checksums
        report = engine.grade_submission(root / "submission", rubric,
                                         rubric.exercise.grading_inputs(rubric, DataOptions()),
                                         include_hidden=True, name="submission")
        data = report.to_dict()
        row = {"score": data["score"], "seconds": data["seconds"], "message": "",
               "grader_version": data["grader_version"], "notes": "\n".join(report.notes)}
        items = [dict(item, item=item["id"]) for item in data["items"]]
        results = exports.gradescope_results(row, items)
    except KitError as exc:
        results = {"score": 0, "output": f"Your submission could not be graded: {exc}", "tests": []}
    _write_results(results_file, results)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="grader.verbs.gradescope")
    parser.add_argument("--root", default="/autograder")
    args = parser.parse_args(argv)
    results = run(Path(args.root))
    print(f"score {results['score']}: {len(results['tests'])} tests; results.json written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
