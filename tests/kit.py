"""The course folder's files, and the small rubrics several test files grade with, for
tests (which always run in a checkout)."""
import yaml

from grader import rubric
from grader.paths import CHECKOUT, RUBRIC_NAME, SOLUTION_REL

assert CHECKOUT is not None, "the tests run from the kit's checkout"
ROOT = CHECKOUT
SOLUTION = ROOT / SOLUTION_REL
DEFAULT_RUBRIC = ROOT / "rubrics" / RUBRIC_NAME

SMALL_RUBRIC = {"schema_version": 1, "time_limit": 20, "items": [
    {"id": "interface", "title": "Interface", "points": 1, "check": "interface"},
    {"id": "preprocess", "title": "Preprocessing", "points": 2, "check": "preprocess"},
    {"id": "weights", "title": "Weights", "points": 2, "check": "weights"},
    {"id": "pipeline", "title": "Pipeline", "points": 2, "check": "pipeline", "visibility": "after_due_date"},
]}
"""four quick items, one hidden: what the batch and cluster tests grade a class with"""


def fast_rubric(time_limit: float | None = None) -> rubric.Rubric:
    """The shipped rubric's visible items (with their calibrated bounds), optionally with
    one time limit for all of them."""
    data = yaml.safe_load(DEFAULT_RUBRIC.read_text())
    data["items"] = [i for i in data["items"] if i.get("visibility", "visible") == "visible"
                     and i["check"] != "manual"]
    if time_limit is not None:
        for item in data["items"]:
            item["time_limit"] = time_limit
    return rubric.parse(data, "fast rubric")


def lost(report) -> set[str]:
    """The ids of the items a report did not give full marks."""
    return {r.id for r in report.items if r.score < r.max_score}


def messages(report) -> dict[str, str]:
    """{item: "status score/max: message"}, for an assertion's explanation."""
    return {r.id: f"{r.status} {r.score:g}/{r.max_score:g}: {r.message}" for r in report.items}


def grade_file(path, rubric_, inputs, work):
    """One corpus file (a module or notebook) graded on every item of `rubric_`, hidden ones
    included, its own folder as the submission's."""
    from grader import engine
    from grader.cells import prepare

    module = prepare(path, work / "module")
    return engine.grade(module, rubric_, inputs, include_hidden=True, submission_dir=path.parent,
                        work_dir=work / "run", name=path.name)
