"""Make the README's pictures of `grader review` and `grader report`, from the class
fixture (tests/class_fixture.py: a gradebook as a batch leaves it, made without grading).

    .venv/bin/python docs/screenshots.py          # writes docs/review-*.png, docs/report-*.png

Needs headless Chromium and its driver (Debian: apt-get install chromium chromium-driver)
and selenium (pip install -e ".[test]").
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

import class_fixture  # noqa: E402
from grader.verbs import report, review  # noqa: E402
from review_kit import chromium, served  # noqa: E402

TOKEN = "screenshot-token"
PAGES = {  # file: (path, height of the window)
    "review-list.png": ("/", 620),
    "review-submission.png": ("/s/bo", 2500),
    "review-question.png": ("/q/compare_scratch?i=2&anon=1", 1100),
}
FIGURES = ("scores", "items", "feedback", "accuracy", "manual")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = class_fixture.build(Path(tmp) / "out")
        app = review.create_app(out, TOKEN, grader="ta")
        with served(app) as base, chromium(1200, 800, "--hide-scrollbars",
                                           "--force-device-scale-factor=1") as driver:
            driver.get(f"{base}?token={TOKEN}")
            for name, (path, height) in PAGES.items():
                driver.set_window_size(1200, height)
                driver.get(base.rstrip("/") + path)
                driver.save_screenshot(str(HERE / name))
                print(f"wrote docs/{name}")
        report.main(str(out), dest=str(Path(tmp) / "report"))
        for figure in FIGURES:
            shutil.copyfile(Path(tmp) / "report" / f"{figure}.png", HERE / f"report-{figure}.png")
            print(f"wrote docs/report-{figure}.png")


if __name__ == "__main__":
    main()
