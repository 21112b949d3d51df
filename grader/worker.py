"""The worker process: imports the submission and runs the collect half of each check.

Started by the engine as `python -m grader.worker JOB_DIR FD`. It reports on file
descriptor FD only (see channel.py); the submission's stdout and stderr go to the
engine, which keeps a short tail of them.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path


def describe(exc: BaseException, module_file: str) -> str:
    """One line: the exception and where in the submission it came from."""
    where = ""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == module_file:
            where = f" (line {frame.lineno} of the submission)"
            break
    if isinstance(exc, SyntaxError) and exc.lineno and exc.filename == module_file:
        where = f" (line {exc.lineno} of the submission)"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}{': ' + text[:300] if text else ''}{where}"


def main(job_dir: str, fd: int) -> None:
    from . import channel

    job = json.loads((Path(job_dir) / "job.json").read_text())
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    from .checks import CHECKS, WorkerContext
    from .modules import load_module

    with np.load(Path(job_dir) / "inputs.npz", allow_pickle=False) as npz:
        inputs = {k: npz[k] for k in npz.files}
    weights = {k[2:]: v for k, v in inputs.items() if k.startswith("w_")}
    scratch = Path(job["scratch"])
    ctx = WorkerContext(weights, inputs["train_images"], inputs["train_labels"], inputs["probe"],
                        inputs["heldout_images"], scratch, Path(job["submission_dir"]))
    import keras  # imported before the clock of the first item starts
    import tensorflow  # noqa: F401

    # Keep our own references before the submission runs: patching the grader's module
    # attributes afterwards changes nothing here, and a changed function body is noticed.
    send = channel.send
    collectors = {name: pair[0] for name, pair in CHECKS.items()}
    code_objects = {name: fn.__code__ for name, fn in collectors.items()}

    module_file = job["module"]
    try:
        module = load_module(module_file, "submission")
    except BaseException as exc:  # SystemExit and KeyboardInterrupt at import included
        send(fd, {"type": "import_error", "message": describe(exc, module_file)})
        return
    send(fd, {"type": "ready"})
    for item in job["items"]:
        collect = collectors[item["check"]]
        send(fd, {"type": "start", "item": item["id"]})
        if any(fn.__code__ is not code_objects[name] for name, fn in collectors.items()):
            send(fd, {"type": "error", "item": item["id"], "seconds": 0.0,
                      "message": "the submission modified the grader's code; nothing is graded"})
            continue
        # Every random choice (initialisers, shuffling) repeats on a second grading.
        keras.utils.set_random_seed(int(item.get("seed", 0)))
        start = time.perf_counter()
        try:
            observation = collect(module, ctx, item["params"])
        except BaseException as exc:
            send(fd, {"type": "error", "item": item["id"], "message": describe(exc, module_file),
                      "not_implemented": isinstance(exc, NotImplementedError),
                      "seconds": time.perf_counter() - start})
            continue
        send(fd, {"type": "result", "item": item["id"], "observation": observation,
                  "seconds": time.perf_counter() - start})
    send(fd, {"type": "done"})


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
