"""What the manual half costs: reading answers in a batch, and `grader review` and
`grader report` on a class of realistic size.

- Reading a notebook's answers (grader.answers, once per submission in a batch) against
  turning the same notebook into the module to grade (grader.cells, which the batch
  already does for every notebook): the instructor notebook, its answer written and a plot
  saved under it.
- On a class of --students made by tests/class_fixture.py (a gradebook as a batch leaves
  it): the list page, a submission's page, saving a grade (one transaction, then the CSVs
  and that student's feedback and Gradescope files rewritten), those exports alone, every
  export rewritten (`grader export`), and `grader report`.

    python benchmarks/bench_review.py [--students 300] [--rounds 5]
"""
from __future__ import annotations

import argparse
import base64
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import nbformat  # noqa: E402

import class_fixture  # noqa: E402
from grader import answers, cells  # noqa: E402
from grader.records import exports  # noqa: E402
from grader.records.gradebook import Gradebook  # noqa: E402
from grader.verbs import report, review  # noqa: E402
from review_kit import hidden_fields  # noqa: E402


def _median(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _notebook(folder: Path) -> Path:
    nb = nbformat.read(ROOT / "solutions" / "transfer_learning.ipynb", as_version=4)
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(60_000)).decode()
    for cell in nb.cells:
        if answers.tag("compare_scratch") in cell.metadata.get("tags", []):
            if cell.cell_type == "markdown":
                cell.source = class_fixture.GOOD
            else:
                cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": png})]
    path = folder / "ada.ipynb"
    nbformat.write(nb, str(path))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = _notebook(tmp)
        read = _median(lambda: answers.extract(path, ["compare_scratch"]), args.rounds * 4)
        convert = _median(lambda: cells.notebook_to_source(path), args.rounds * 4)
        print(f"answers of one notebook: {read * 1000:.1f} ms; its module: {convert * 1000:.1f} ms "
              f"(ratio {read / convert:.2f})")

        copies = max(1, round(args.students / len(class_fixture.STUDENTS)))
        start = time.perf_counter()
        out = class_fixture.build(tmp / "out", copies=copies)
        built = time.perf_counter() - start
        book = Gradebook(out / "gradebook.sqlite")
        students = [row["student"] for row in book.submissions()]
        print(f"class of {len(students)} built in {built:.1f} s")
        app = review.create_app(out, "t", grader="bench")
        client = app.test_client()
        client.get("/?token=t")
        listed = _median(lambda: client.get("/"), args.rounds)
        shown = _median(lambda: client.get(f"/s/{students[1]}"), args.rounds)
        written = _median(lambda: exports.write_all(book, out), args.rounds)
        one = _median(lambda: exports.write_all(book, out, only=students[2]), args.rounds)
        target = students[2]
        times = []
        for _ in range(args.rounds):
            form = hidden_fields(client.get(f"/s/{target}").get_data(as_text=True))
            start = time.perf_counter()
            response = client.post("/save", data={**form, "score": "7", "comment": "ok"})
            times.append(time.perf_counter() - start)
            assert response.status_code in (302, 303), response.get_data(as_text=True)[:300]
        saved = statistics.median(times)
        reported = _median(lambda: report.main(str(out), dest=str(tmp / "report")), 1)
        book.close()
    print(f"| the list of {len(students)} | {listed * 1000:.0f} ms |")
    print(f"| a submission's page | {shown * 1000:.0f} ms |")
    print(f"| saving a grade (the transaction, the CSVs and the student's own files) | "
          f"{saved * 1000:.0f} ms; the exports of that one student alone {one * 1000:.0f} ms |")
    print(f"| every export rewritten (`grader export`; what each save did at first) | "
          f"{written * 1000:.0f} ms: {written / one:.1f}x one student's |")
    print(f"| grader report | {reported:.1f} s |")


if __name__ == "__main__":
    main()
