"""The student package: built by `grader generate`, installed into a fresh virtual
environment from the bundle alone, it grades without the instructor's checkout, and
nothing of the marked solution or of the hidden items is anywhere in what it installs."""
from __future__ import annotations

import secrets
from importlib import metadata
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from grader.verbs import generate
from grader import wheel
from kit import ROOT
from test_generate import solution_lines


def test_solution_lines_are_what_the_skeleton_lacks():
    lines = solution_lines()
    skeleton = (ROOT / "skeletons" / "transfer_learning.py").read_text()
    assert len(lines) > 20
    assert not [line for line in lines if line in {s.strip() for s in skeleton.splitlines()}]


def test_student_modules_leave_out_instructor_verbs():
    modules = set(wheel.student_modules())
    assert {"cli", "verbs.check", "notebook", "worker", "engine", "exercise", "sandbox"} <= modules
    assert not modules & {"verbs.generate", "verbs.calibrate", "corpus", "verbs.batch",
                          "engine.cluster", "copying", "records.gradebook", "verbs.gradescope"}
    from grader.exercise import load

    carried = set(wheel.exercise_files(load()))
    assert {"grader/exercises/transfer_learning/checks/__init__.py",
            "grader/exercises/transfer_learning/checks/training.py",
            "grader/exercises/transfer_learning/definition.py",
            "grader/exercises/transfer_learning/train.py"} <= carried
    assert "grader/exercises/transfer_learning/handout.py" not in carried


def test_the_closure_follows_subpackages_and_every_import_level(tmp_path):
    """A layout with subpackages: imports of every level, from a subpackage's __init__
    and from inside functions, all travel; what nothing imports stays out."""
    files = {
        "__init__.py": "",
        "cli.py": "def main():\n    from .engine import protocol\n    from . import check\n",
        "check.py": "from .exercises.logreg import checks as exercise\n",
        "engine/__init__.py": "",
        "engine/protocol.py": "from ..errors import KitError\nfrom .frames import Frame\n",
        "engine/frames.py": "",
        "errors.py": "",
        "exercises/__init__.py": "",
        "exercises/logreg/__init__.py": "from .checks import REGISTRY\n",
        "exercises/logreg/checks.py": "from ...engine import protocol\nfrom . import data\n",
        "exercises/logreg/data.py": "import numpy\nfrom .. import __name__ as _n\n",
        "batch.py": "from .engine import protocol\n",  # an instructor verb nothing imports
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    found = wheel.student_modules(tmp_path, entry=("__init__", "cli"))
    assert found == sorted(["__init__", "cli", "check", "engine", "engine.protocol", "engine.frames",
                            "errors", "exercises", "exercises.logreg", "exercises.logreg.checks",
                            "exercises.logreg.data"])


def test_the_student_wheel_holds_every_module_its_modules_import(tmp_path):
    """Statically, for the real package: every relative import of every module in the
    wheel resolves to a file in the wheel."""
    import zipfile

    from grader.exercise import load

    own = wheel.exercise_files(load())
    modules = wheel.student_modules(entry=wheel.STUDENT_ENTRY + tuple(wheel.kit_imports(own)))
    path = wheel.write_wheel(tmp_path, "probe", "probe", modules, more=own)
    with zipfile.ZipFile(path) as archive:
        held = {n for n in archive.namelist() if n.endswith(".py")}
    every = modules + [n.removeprefix("grader/").removesuffix(".py").replace("/", ".")
                       .removesuffix(".__init__") for n in own]
    for module in every:
        for imported in wheel._imports_of(module):
            file = wheel.module_file(imported).relative_to(wheel.PACKAGE).as_posix()
            assert f"grader/{file}" in held, (module, imported)


def test_the_kit_distribution_lists_every_subpackage():
    """A subpackage setuptools is not told of is missing from a non-editable install."""
    tomllib = pytest.importorskip("tomllib")
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "grader").rglob("__init__.py")}
    assert found <= listed, found - listed


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A course folder whose rubric has a fresh 64-bit heldout_seed, its bundle, and a
    fresh virtual environment with the bundle's wheel installed (from the index)."""
    base = tmp_path_factory.mktemp("student")
    course = base / "course"
    shutil.copytree(ROOT / "solutions", course / "solutions")
    (course / "rubrics").mkdir()
    rubric = yaml.safe_load((ROOT / "rubrics" / "transfer_learning.yaml").read_text())
    rubric["heldout_seed"] = seed = secrets.randbits(64) | 1 << 63
    (course / "rubrics" / "transfer_learning.yaml").write_text(yaml.safe_dump(rubric, sort_keys=False))
    generate.build(base / "gen", course)
    bundle = base / "gen" / "dist" / "student-bundle"
    wheels = list(bundle.glob("*.whl"))
    assert len(wheels) == 1
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # The one command of the bundle's README (without the notebook extra: JupyterLab is
    # not needed to grade).
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"{wheels[0]}[tensorflow]"],
                   check=True, cwd=bundle)
    return {"venv": venv, "bundle": bundle, "seed": seed, "rubric": rubric}


def _check(installed, target: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(installed["venv"] / "bin" / "grader"), "check", str(target)],
                          cwd=cwd, capture_output=True, text=True, timeout=600)


def test_installed_checker_grades_a_solved_notebook_and_the_skeleton(installed, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / "solutions" / "transfer_learning.ipynb", work)
    done = _check(installed, work / "transfer_learning.ipynb", work)
    assert done.returncode == 0, done.stderr
    visible = sum(i["points"] for i in installed["rubric"]["items"]
                  if i.get("visibility", "visible") == "visible" and i["check"] != "manual")
    assert f"total: {visible:g} / {visible:g} points" in done.stdout, done.stdout
    # the written question is a person's to grade: the check says whether an answer is there
    assert ("compare_scratch (10 points, graded by a person): no answer found: write it in a "
            "Markdown cell tagged answer:compare_scratch") in done.stdout
    assert "rubrics/transfer_learning.yaml" in done.stderr and "site-packages" in done.stderr
    assert "oneDNN" not in done.stdout + done.stderr  # no start-up noise on the screen
    shutil.copy(installed["bundle"] / "transfer_learning.ipynb", tmp_path / "skeleton.ipynb")
    skeleton = _check(installed, tmp_path / "skeleton.ipynb", tmp_path)
    assert skeleton.returncode == 0, skeleton.stderr
    assert f"total: 0 / {visible:g} points" in skeleton.stdout
    assert "not implemented yet" in skeleton.stdout


def test_instructor_verbs_are_absent_and_train_needs_a_module(installed, tmp_path):
    grader = str(installed["venv"] / "bin" / "grader")
    verbs = subprocess.run([grader, "--help"], capture_output=True, text=True).stdout
    assert "check" in verbs and "generate" not in verbs and "batch" not in verbs
    train = subprocess.run([grader, "train", "--steps", "1"], cwd=tmp_path,
                           capture_output=True, text=True)
    assert train.returncode == 2
    assert train.stderr.strip().splitlines()[-1].startswith("error: expected --module FILE")


def _text_files(folder: Path):
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink() and path.stat().st_size < 8_000_000:
            data = path.read_bytes()
            if b"\0" not in data[:8192]:
                yield path, data.decode("utf-8", "replace")


def _owned_by_others(site_packages: Path) -> set[Path]:
    """Files that another installed distribution's RECORD lists: TensorFlow's own docs
    and code hold canonical lines such as `tape.gradient(loss, model.trainable_variables)`
    and came from the package index, not from the checker."""
    owned = set()
    for dist in metadata.distributions(path=[str(site_packages)]):
        if dist.metadata["Name"] != wheel.STUDENT_DISTRIBUTION:
            owned.update(Path(dist.locate_file(f)).resolve() for f in dist.files or [])
    return owned


def test_nothing_of_the_solution_or_the_hidden_items_is_installed(installed):
    lines = solution_lines()
    seed = str(installed["seed"])
    hidden = [i for i in installed["rubric"]["items"] if i.get("visibility", "visible") != "visible"]
    assert hidden and lines
    venv = installed["venv"]
    site_packages = next(venv.glob("lib/python*/site-packages"))
    others = _owned_by_others(site_packages)
    scanned, theirs, leaks = 0, 0, []
    for folder in (venv / "bin", site_packages):
        for path, text in _text_files(folder):
            scanned += 1
            found = [line for line in {s.strip() for s in text.splitlines()} & lines]
            found += ["heldout_seed"] if seed in text else []
            if found and path.resolve() in others:
                theirs += 1
            elif found:
                leaks += [f"{path}: {line}" for line in found]
    # The whole tree was read (TensorFlow's files included), and every hit, if any, lies
    # in a file another distribution installed.
    assert scanned > 1000 and len(others) > 1000
    ours = site_packages / "grader" / "exercises" / "transfer_learning" / "checks" / "training.py"
    assert ours.is_file() and ours.resolve() not in others  # the checker's files do count
    assert lines & {s.strip() for s in (ROOT / "solutions" / "transfer_learning.py").read_text().splitlines()}
    assert not leaks, "\n".join(leaks[:20])
    packaged = next(venv.glob("lib/python*/site-packages/grader/rubrics/transfer_learning.yaml"))
    public = yaml.safe_load(packaged.read_text())
    assert "heldout_seed" not in public
    assert {i["id"] for i in public["items"]}.isdisjoint(i["id"] for i in hidden)
    assert not (venv / "solutions").exists() and not list(venv.rglob("transfer_learning.py"))


OTHER_TENSORFLOW = "tensorflow==2.20.*"
"""a TensorFlow the kit itself does not use: another minor version, and the `tensorflow`
distribution where the kit installs `tensorflow-cpu`"""


def _distributions(venv: Path) -> dict[str, str]:
    site_packages = next(venv.glob("lib/python*/site-packages"))
    return {d.metadata["Name"].lower(): d.version
            for d in metadata.distributions(path=[str(site_packages)])}


def test_checker_installs_beside_the_students_own_tensorflow(tmp_path):
    """A student's environment with its own TensorFlow (as on Colab or a lab image), then
    the bundle's wheel without the extra: pip adds no second TensorFlow, `pip check` is
    clean, the student's TensorFlow is unchanged and imports, and the solved notebook's
    checks earn full marks with it."""
    bundle = tmp_path / "gen" / "dist" / "student-bundle"
    generate.build(tmp_path / "gen", ROOT)
    [built] = bundle.glob("*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip"]
    subprocess.run(pip + ["install", "-q", OTHER_TENSORFLOW], check=True)
    before = _distributions(venv)
    assert before["tensorflow"].startswith("2.20.") and "tensorflow-cpu" not in before
    subprocess.run(pip + ["install", "-q", str(built)], check=True)
    after = _distributions(venv)
    assert after["tensorflow"] == before["tensorflow"] and after["keras"] == before["keras"]
    assert "tensorflow-cpu" not in after and after[wheel.STUDENT_DISTRIBUTION] == "0.1.0"
    assert after["tensorboard"] == before["tensorboard"]
    done = subprocess.run(pip + ["check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(ROOT / "solutions" / "transfer_learning.ipynb", work)
    run = subprocess.run([str(venv / "bin" / "python"), "-c",
                          "import tensorflow as tf; print('tf', tf.__version__)\n"
                          "from grader.notebook import check_all; check_all()"],
                         cwd=work, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"tf {before['tensorflow']}" in run.stdout
    rubric = yaml.safe_load((bundle / "rubric.yaml").read_text())
    visible = sum(i["points"] for i in rubric["items"] if i["check"] != "manual")
    assert f"total: {visible:g} / {visible:g} points" in run.stdout, run.stdout[-3000:]
    assert "notice: the checker is tested with" not in run.stdout  # 2.20 is a tested version


def test_wheel_requires_no_tensorflow_but_offers_it_as_an_extra(tmp_path):
    import zipfile

    public = (ROOT / "rubrics" / "transfer_learning.yaml").read_text()
    built = wheel.student_wheel(tmp_path, public)
    with zipfile.ZipFile(built) as archive:
        meta = archive.read(next(n for n in archive.namelist() if n.endswith("METADATA"))).decode()
    requires = [line.split(":", 1)[1].strip() for line in meta.splitlines()
                if line.startswith("Requires-Dist:")]
    plain = [r for r in requires if "extra ==" not in r]
    pinned = [r for r in plain if wheel._name_of(r) in wheel.TENSORFLOW_STACK]
    assert plain and pinned == [wheel.TENSORBOARD_ANY]  # tf.summary needs it, in any version
    extra = [r for r in requires if 'extra == "tensorflow"' in r]
    assert {wheel._name_of(r) for r in extra} == {"tensorflow", "tensorflow-cpu"}
