"""A class's batch, made without grading anything: a gradebook as `grader batch` leaves it
for the kit's rubric (items with their details, flags, answers to the manual item, one
unreadable notebook, hostile answers), and its exports. Used by the review and report
tests and by docs/screenshots.py; fast because no submission runs.
"""
from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from grader import rubric as rubric_mod
from grader.answers import Answer, Answers
from grader.engine import Flag, ItemResult, Report
from grader.paths import default_rubric
from grader.records import exports
from grader.records.gradebook import Gradebook

HOSTILE = (
    "Transfer wins.\n\n<script>window.__pwned = 1</script>\n\n"
    '<img src="x" onerror="window.__pwned = 2">\n\n'
    "[click me](javascript:window.__pwned=3) and <a href=\"javascript:window.__pwned=4\">this</a>\n\n"
    '<iframe src="javascript:window.__pwned=5"></iframe><style>body{display:none}</style>'
)

GOOD = ("After 300 steps the transfer model reaches **0.62** test accuracy and the network "
        "trained from scratch **0.31**. The transfer curve climbs in the first 50 steps; the "
        "scratch curve is still rising at the end. The frozen VGG16 layers already compute "
        "features learned on ImageNet, so only `fc` has to be learned; from scratch every "
        "layer starts random and 300 steps are far too few.")

MEDIUM = "Transfer learning was better: 0.58 against 0.35 after 300 steps."


def _png(color: str = "#1f77b4") -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2), dpi=60)
    ax.plot([0, 1, 2, 3], [0.1, 0.4, 0.55, 0.6], color=color, label="transfer")
    ax.plot([0, 1, 2, 3], [0.1, 0.15, 0.2, 0.3], color="#d62728", label="scratch")
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return {"mime": "image/png", "data": base64.b64encode(buffer.getvalue()).decode()}


def _curves(final_accuracy: float, steps: int = 60) -> dict:
    loss = [[s, round(2.3 * (1 - final_accuracy * s / steps) + 0.05, 4)] for s in range(0, steps, 3)]
    accuracy = [[s, round(0.1 + (final_accuracy - 0.1) * s / steps, 4)] for s in range(0, steps, 3)]
    return {"loss": loss, "accuracy": accuracy}


# student: (fraction per item id (default 1), accuracy, answer text or None, flags, seconds)
STUDENTS = {
    "ada": ({}, 0.93, GOOD, [], 41.0),
    "bo": ({"preprocess": 0.0, "training": 0.5, "accuracy": 0.0, "accuracy_quick": 0.0},
           0.11, MEDIUM, [], 55.0),
    "cy": ({"preprocess": 0.0, "accuracy": 0.4}, 0.19, None, [], 47.5),
    "dee": ({"checkpoint": 0.0, "pipeline": 0.5}, 0.9, HOSTILE,
            [Flag("introspection", "gc.get_objects() called in build_model")], 62.0),
    "eve": ({"frozen": 0.0, "weights": 0.0}, 0.88, GOOD.replace("0.62", "0.64"), [], 39.0),
    "fay": ({"preprocess": 0.0}, 0.2, MEDIUM, [Flag("subprocess", "started /bin/sh")], 51.0),
}
MESSAGES = {
    "preprocess": "expected the ImageNet mean subtracted in RGB order, found it in BGR order "
                  "(the channels are reversed). Hint: subtract [123.68, 116.78, 103.94]",
    "frozen": "the convolutions changed during training: conv1_1 kernel moved by 0.012",
    "weights": "conv1_1 kernel differs from the provided VGG16 weights (max difference 0.4)",
    "checkpoint": "the restored model's logits differ from the saved model's",
    "pipeline": "the examples are not reshuffled between epochs",
    "training": "no TensorBoard scalar for the training accuracy under log_dir",
}


def build(out: Path, unreadable: bool = True, grade_some: bool = True, copies: int = 1,
          named=None, roster: dict | None = None) -> Path:
    """Write the class's gradebook and exports in `out`; returns `out`. `copies` > 1: each
    student that many times (ada-001, ada-002, ...), for a class of a realistic size.
    `named`: a function from the fixture's name to the entry's (an LMS download's names);
    `roster`: what `grader batch --roster` would have stored."""
    named = named or (lambda name: name)
    rubric = rubric_mod.load(default_rubric())
    out.mkdir(parents=True, exist_ok=True)
    book = Gradebook(out / "gradebook.sqlite")
    book.set_meta("heldout_seed", "1")
    book.set_meta("title", rubric.title)
    book.set_meta("released", "0")
    if roster is not None:
        book.set_meta("roster", json.dumps(roster))
    book.set_meta("rubric_items", json.dumps([
        {"id": i.id, "title": i.title, "points": i.points, "check": i.check,
         "visibility": i.visibility, "params": i.params} for i in rubric.items]))
    book.set_manual_items([m.to_dict() for m in rubric.manual])
    picture = _png()
    students = STUDENTS if copies == 1 else {f"{name}-{k:03d}": value for k in range(1, copies + 1)
                                             for name, value in STUDENTS.items()}
    students = {named(name): value for name, value in students.items()}
    for student, (fractions, accuracy, answer, flags, seconds) in students.items():
        results = []
        for item in rubric.items:
            fraction = fractions.get(item.id, 1.0)
            details = {}
            message = "all good" if fraction == 1 else MESSAGES.get(item.id, "not learned enough")
            if item.check == "accuracy":
                lower, upper = item.params["lower"], item.params["upper"]
                fraction = min(max((accuracy - lower) / (upper - lower), 0.0), 1.0)
                details = {"accuracy": accuracy, "lower": lower, "upper": upper,
                           "images": item.params["images"]}
                message = f"accuracy {accuracy:.3f} on {item.params['images']} unseen images"
            if item.check == "training":
                details = {"curves": _curves(accuracy), "train_accuracy": [0.1, accuracy]}
            status = "passed" if fraction == 1 else "partial" if fraction > 0 else "failed"
            results.append(ItemResult(item.id, item.title, round(item.points * fraction, 4),
                                      item.points, status, message, seconds / len(rubric.items),
                                      item.visibility, details))
        report = Report(student, results, seconds=seconds, flags=flags)
        answered = Answers({m.id: Answer() for m in rubric.manual})
        if answer is not None:
            answered.items["compare_scratch"] = Answer(answer, [picture] if student != named("bo")
                                                       and not student.startswith("bo-") else [])
        book.record(student, f"submissions/{student}.ipynb", f"hash-{student}", "rubric", report,
                    "graded", answers=answered)
    if unreadable:
        gus = named("gus")
        report = Report(gus, [ItemResult(i.id, i.title, 0.0, i.points, "skipped",
                                           "the submission could not be read", 0.0, i.visibility)
                                for i in rubric.items], import_failed=True)
        book.record(gus, f"submissions/{gus}.ipynb", "hash-gus", "rubric", report, "failed",
                    "gus.ipynb: expected a Jupyter notebook (JSON, nbformat 4), could not read it "
                    "(NotJSONError). Save it again from Jupyter.",
                    answers=Answers({m.id: Answer() for m in rubric.manual},
                                    "gus.ipynb: could not be read as a notebook (NotJSONError); "
                                    "its answers are unknown"))
    if grade_some:
        first = named("ada") if copies == 1 else named("ada-001")
        digest = book.answers(first)["compare_scratch"]["digest"]
        book.save_manual(first, "compare_scratch", 10.0, [0, 1, 2], "Clear, with numbers.",
                         digest, "ta-one", 0)
    exports.write_all(book, out)
    book.close()
    return out
