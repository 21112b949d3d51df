"""`grader generate`: the assignment, generated from the marked reference solution.

Steps, in order (each a small function below):
1. strip_solutions: the marked solution source -> the student module (markers checked);
2. notebook: a module's source + the handout -> an nbformat v4 notebook (student's from
   the skeleton, instructor's from the solution);
3. bundle: skeleton, student notebook, public rubric and a README -> folder and zip.
Everything is written to a temporary folder first and moved into place at the end, so an
error leaves nothing half-written. `--check` compares instead of writing (drift test).
"""
from __future__ import annotations

import ast
import filecmp
import io
import re
import shutil
import tempfile
import tokenize
import zipfile
from pathlib import Path

import yaml

from .. import answers, rubric as rubric_mod
from ..errors import KitError, MarkerError
from .. import wheel
from ..paths import MODULE_NAME, RUBRIC_NAME, SOLUTION_REL, course_root
from ..modules import TENSORFLOW_TESTED
from ..cells import TAG_CHECK, TAG_EXPERIMENT, TAG_GRADED, TAG_HANDOUT

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
PROMPT = "# PROMPT:"
_LINE_RE = re.compile(r"^(?P<indent>\s*)(?P<target>[A-Za-z_][\w\.\[\], ]*?)\s*=(?!=)\s*"
                      r"(?P<expr>.+?)\s*#\s*SOLUTION\s*$")


def _comment_lines(source: str, name: str) -> dict[int, str]:
    """{line number: comment text} for every real comment (not text inside strings)."""
    try:
        tokens = tokenize.generate_tokens(io.StringIO(source).readline)
        return {t.start[0]: t.string for t in tokens if t.type == tokenize.COMMENT}
    except (tokenize.TokenError, IndentationError, SyntaxError) as exc:
        raise MarkerError(f"{name}: cannot tokenize the source ({exc}).") from None


def _function_at(tree: ast.AST) -> dict[int, str]:
    """{line: name of the innermost function around it}."""
    owner: dict[int, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
                if line not in owner or node.lineno > owner[line][0]:
                    owner[line] = (node.lineno, node.name)
    return {line: name for line, (_, name) in owner.items()}


def strip_solutions(source: str, name: str = "solution") -> str:
    """Replace marked solution code with prompts and NotImplementedError."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise MarkerError(f"{name}:{exc.lineno}: the solution itself does not parse: {exc.msg}.") from None
    comments = _comment_lines(source, name)
    owners = _function_at(tree)
    blocks_in = {}
    for number, line in enumerate(source.splitlines(), start=1):
        if line.strip() == BEGIN and comments.get(number, "").strip() == BEGIN:
            owner = owners.get(number, "module level")
            blocks_in[owner] = blocks_in.get(owner, 0) + 1
    seen_in: dict[str, int] = {}
    out: list[str] = []
    block_start, block_indent, prompts = None, "", []
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        comment = comments.get(number, "")
        for marker in (BEGIN, END):
            if marker in line and comment.strip() != marker:
                raise MarkerError(f"{name}:{number}: '{marker}' inside a string or after code; "
                                  "a marker must be a comment line of its own.")
        if stripped == BEGIN and comment.strip() == BEGIN:
            if block_start is not None:
                raise MarkerError(f"{name}:{number}: BEGIN SOLUTION inside the block opened at "
                                  f"line {block_start}; blocks cannot nest.")
            block_start, block_indent, prompts = number, line[: len(line) - len(line.lstrip())], []
            continue
        if stripped == END and comment.strip() == END:
            if block_start is None:
                raise MarkerError(f"{name}:{number}: END SOLUTION without a BEGIN SOLUTION before it.")
            task = owners.get(block_start, "module level")
            seen_in[task] = seen_in.get(task, 0) + 1
            if blocks_in.get(task, 0) > 1:
                task = f"{task}, part {seen_in[task]} of {blocks_in[task]}"
            out.extend(f"{block_indent}# {p}" for p in prompts)
            out.append(f"{block_indent}# YOUR CODE HERE")
            out.append(f'{block_indent}raise NotImplementedError("{task}: your code here")')
            block_start = None
            continue
        if block_start is not None:
            if comment.startswith(PROMPT) and stripped.startswith(PROMPT):
                prompts.append(comment[len(PROMPT):].strip())
            continue
        if re.search(r"#\s*SOLUTION\s*$", comment) and comment:
            match = _LINE_RE.match(line)
            if not match:
                raise MarkerError(f"{name}:{number}: '# SOLUTION' marks a line of the form "
                                  "'name = expression'; this line is not one.")
            out.append(f"{match['indent']}{match['target']} = ...  # YOUR CODE HERE")
            continue
        out.append(line)
    if block_start is not None:
        raise MarkerError(f"{name}:{block_start}: BEGIN SOLUTION is never closed by END SOLUTION.")
    return "\n".join(out) + "\n"


SKELETON_HEADER = ("# The exercise's code, for you to complete and hand in.\n"
                   "# Fill in every '# YOUR CODE HERE'; keep the function names and signatures.\n")
"""the opening of the student's module; it names no file of the instructor's checkout"""
STUDENT_NOTEBOOK_HEADER = ("*Your notebook for the exercise: complete the code cells marked "
                           "`# YOUR CODE HERE` and hand it in.*")


def _split_top_level(source: str) -> list[tuple[str | None, str]]:
    """[(function name or None, source chunk)]: the module cut before each top-level def,
    with the comments and decorators just above a def kept with it."""
    tree = ast.parse(source)
    lines = source.splitlines()
    starts = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list]) - 1
            while first > 0 and lines[first - 1].lstrip().startswith("#"):
                first -= 1
            starts.append((first, node.name))
    chunks, previous, previous_name = [], 0, None
    for first, fname in starts:
        chunks.append((previous_name, "\n".join(lines[previous:first]).strip("\n")))
        previous, previous_name = first, fname
    chunks.append((previous_name, "\n".join(lines[previous:]).strip("\n")))
    return [(n, c) for n, c in chunks if c.strip()]


def notebook(module_source: str, title_note: str, public_items: list, exercise):
    """The handout notebook around `module_source` (nbformat v4, deterministic ids), from
    the exercise's handout (Exercise.handout)."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    handout = exercise.handout()
    intro = handout.intro()
    cells = [new_markdown_cell(f"{handout.TITLE}\n\n{title_note}\n\n{intro}",
                               metadata={"tags": [TAG_HANDOUT]}),
             new_markdown_cell(handout.grading_section(public_items), metadata={"tags": [TAG_HANDOUT]})]
    check_tag = {"tags": [TAG_CHECK]}
    cells.append(new_code_cell(handout.CHECK_SETUP, metadata=check_tag))
    for fname, chunk in _split_top_level(module_source):
        if fname in handout.BEFORE:
            cells.append(new_markdown_cell(handout.BEFORE[fname], metadata={"tags": [TAG_HANDOUT]}))
        cells.append(new_code_cell(chunk, metadata={"tags": [TAG_GRADED]}))
        if fname is not None and fname in exercise.checks.task_of.values():
            cells.append(new_code_cell(f"check({fname!r})", metadata=check_tag))
    cells.append(new_markdown_cell(handout.EXPERIMENTS_MD, metadata={"tags": [TAG_HANDOUT]}))
    cells.extend(new_code_cell(code.rstrip("\n"), metadata={"tags": [TAG_EXPERIMENT]})
                 for code in handout.EXPERIMENTS)
    manual = [item for item in public_items if item["check"] == rubric_mod.MANUAL]
    cells.append(new_markdown_cell(handout.SCRATCH_MD + ("\n" + handout.SCRATCH_QUESTION_MD
                                                         if manual else ""),
                                   metadata={"tags": [TAG_HANDOUT]}))
    evidence = [answers.tag(i["id"]) for i in manual if i["id"] == handout.EVIDENCE]
    *runs, plot = handout.SCRATCH
    cells.extend(new_code_cell(code.rstrip("\n"), metadata={"tags": [TAG_EXPERIMENT]}) for code in runs)
    cells.append(new_code_cell(plot.rstrip("\n"), metadata={"tags": [TAG_EXPERIMENT, *evidence]}))
    for item in manual:  # a question, then the cell its answer goes in
        cells.append(new_markdown_cell(handout.question_md(item), metadata={"tags": [TAG_HANDOUT]}))
        cells.append(new_markdown_cell(answers.PLACEHOLDER,
                                       metadata={"tags": [answers.tag(item["id"])]}))
    cells.append(new_markdown_cell(handout.CHECK_ALL_MD, metadata={"tags": [TAG_HANDOUT]}))
    cells.append(new_code_cell("check_all()", metadata=check_tag))
    for index, cell in enumerate(cells):
        cell["id"] = f"cell-{index:02d}"
    nb = new_notebook(cells=cells, metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}})
    nbformat.validate(nb)
    return nb


def _write_notebook(nb, path: Path) -> None:
    import nbformat
    path.write_text(nbformat.writes(nb) + "\n", encoding="utf-8")


def _zip_folder(folder: Path, target: Path) -> None:
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo(f"{folder.name}/{path.relative_to(folder)}",
                                       date_time=(2020, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes())


def build(out: Path, root: Path, solution: Path | None = None) -> None:
    """Write skeletons/, solutions/transfer_learning.ipynb and dist/ under `out`, from the
    course folder `root` (its marked solution unless `solution` is given, and its rubric)."""
    solution = solution or root / SOLUTION_REL
    rubric_path = root / "rubrics" / RUBRIC_NAME
    source = solution.read_text(encoding="utf-8")
    rel = solution.relative_to(root) if solution.is_relative_to(root) else solution.name
    skeleton = SKELETON_HEADER + strip_solutions(source, str(rel))
    try:
        compile(skeleton, "skeleton", "exec")
    except SyntaxError as exc:
        raise MarkerError(f"{rel}: the generated skeleton does not parse at line {exc.lineno} "
                          f"({exc.msg}); check the markers around it.") from None
    rubric_data = yaml.safe_load(rubric_path.read_text(encoding="utf-8"))
    exercise = rubric_mod.parse(rubric_data, str(rubric_path)).exercise  # never ship an invalid rubric
    if exercise.handout is None:
        raise KitError(f"{rubric_path}: grader generate builds the handout of an exercise that "
                       f"has one (Exercise.handout); {exercise.name} has none.")
    handout = exercise.handout()
    public = rubric_mod.public_copy(rubric_data)

    (out / "skeletons").mkdir(parents=True)
    (out / "solutions").mkdir()
    (out / "skeletons" / f"{MODULE_NAME}.py").write_text(skeleton, encoding="utf-8")
    student_nb = notebook(skeleton, STUDENT_NOTEBOOK_HEADER, public["items"], exercise)
    _write_notebook(student_nb, out / "skeletons" / f"{MODULE_NAME}.ipynb")
    _write_notebook(notebook(source, f"*Instructor version with solutions, generated from {rel} by "
                             "`grader generate` -- do not edit.*", public["items"], exercise),
                    out / "solutions" / f"{MODULE_NAME}.ipynb")

    bundle = out / "dist" / "student-bundle"
    bundle.mkdir(parents=True)
    shutil.copy(out / "skeletons" / f"{MODULE_NAME}.py", bundle)
    shutil.copy(out / "skeletons" / f"{MODULE_NAME}.ipynb", bundle)
    manual = [i for i in public["items"] if i["check"] == rubric_mod.MANUAL]
    if manual:
        (bundle / answers.ANSWERS_FILE).write_text(handout.answers_file(manual), encoding="utf-8")
    public_text = ("# Public rubric: items graded after the due date are not listed.\n"
                   + yaml.safe_dump(public, sort_keys=False))
    (bundle / "rubric.yaml").write_text(public_text, encoding="utf-8")
    built = wheel.student_wheel(bundle, public_text)
    (bundle / "README.md").write_text(handout.STUDENT_README.format(
        wheel=built.name, tested=" or ".join(TENSORFLOW_TESTED),
        written=handout.WRITTEN if manual else "",
        answers_line=(f"- `{answers.ANSWERS_FILE}`: where your written answers go if you work in "
                      "the `.py` module;\n") if manual else ""), encoding="utf-8")
    _zip_folder(bundle, out / "dist" / "student-bundle.zip")


GENERATED = [f"skeletons/{MODULE_NAME}.py", f"skeletons/{MODULE_NAME}.ipynb",
             f"solutions/{MODULE_NAME}.ipynb"]


def drift(root: Path | None = None, solution: Path | None = None) -> list[str]:
    """Generated files under `root` that differ from a fresh generation."""
    root = root or course_root()
    with tempfile.TemporaryDirectory() as tmp:
        build(Path(tmp) / "gen", root, solution)
        return [rel for rel in GENERATED
                if not (root / rel).is_file() or not filecmp.cmp(Path(tmp) / "gen" / rel, root / rel,
                                                                 shallow=False)]


HELP = "generate skeletons, notebooks and the student bundle from the marked solution"


def add_arguments(parser) -> None:
    parser.add_argument("--check", action="store_true",
                        help="only report generated files that are out of date (exit 2 if any)")


def execute(args):
    return main(check=args.check)


def main(check: bool = False, root: Path | None = None, solution: Path | None = None) -> int:
    root = root or course_root()
    if check:
        stale = drift(root, solution)
        if stale:
            raise KitError(f"generated files are out of date: {', '.join(stale)}. "
                           "Run `grader generate` and commit the result.")
        print("generated files are up to date")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix=".generate-", dir=root))
    try:
        build(tmp / "gen", root, solution)
        for rel in GENERATED:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(tmp / "gen" / rel), str(root / rel))
        dist = root / "dist"
        dist.mkdir(exist_ok=True)
        for name in ("student-bundle", "student-bundle.zip"):
            target = dist / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            shutil.move(str(tmp / "gen" / "dist" / name), str(target))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("wrote " + ", ".join(GENERATED) + ", dist/student-bundle/ and dist/student-bundle.zip")
    return 0
