"""`grader batch --scheduler`: a real `dask scheduler` and two `dask worker` processes on
localhost grade a small mixed corpus while the test kills workers with SIGKILL. Every
submission must be recorded exactly once, with the scores of a local batch; one whose
workers always die must end as failed, with the reason; and no task may carry labels."""
from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

distributed = pytest.importorskip("distributed")

from grader.exercises.transfer_learning import inputs as tl_inputs
from grader.engine import cluster as cluster_mod
from grader.verbs import batch
from grader import engine, rubric
from grader.records import gradebook  # noqa: E402
from grader.exercises.transfer_learning import vgg_weights  # noqa: E402
from kit import ROOT  # noqa: E402

from kit import SMALL_RUBRIC as RUBRIC, SOLUTION  # noqa: E402  (the batch tests' small rubric)

REFERENCE = SOLUTION.read_text()


def _start(command: list[str], log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=open(log, "w"), stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A scheduler and two workers (each under a nanny that restarts it when killed), torn
    down whatever happens."""
    root = tmp_path_factory.mktemp("dask")
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2",
               DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="2",
               DASK_DISTRIBUTED__SCHEDULER__WORKER_SATURATION="1.0")  # as docs/tas.md advises
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    scheduler_file = root / "scheduler.json"
    processes = [_start([*dask, "--scheduler-file", str(scheduler_file), "--port", "0",
                         "--no-dashboard", "--host", "127.0.0.1"], root / "scheduler.log", env)]
    try:
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        address = json.loads(scheduler_file.read_text())["address"]
        for i in range(2):
            processes.append(_start(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                 "--nworkers", "1", "--no-dashboard", "--memory-limit", "0", "--host", "127.0.0.1",
                 "--name", f"w{i}"], root / f"worker{i}.log", env))
        with distributed.Client(address, timeout="30s") as client:
            client.wait_for_workers(2, timeout=120)
        yield {"address": address, "root": root}
    finally:
        for process in processes:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _dask_worker_of(label: str) -> int | None:
    """The pid of the Dask worker process grading `label` right now: the ancestor of its
    sandbox (whose command line holds the submission's work folder) that the nanny started."""
    for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
        if f"grader-{label}-".encode() not in _cmdline(pid):
            continue
        chain = [pid]
        while chain[-1] > 1 and len(chain) < 20:
            chain.append(_parent(chain[-1]))
        for child, parent in zip(chain, chain[1:]):
            if b"dask_worker" in _cmdline(parent):
                return child
    return None


class Killer(threading.Thread):
    """Kills with SIGKILL the Dask worker that grades `victim` (once) or `doomed` (always)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.stop, self.kills = threading.Event(), {"victim": 0, "doomed": 0}

    def run(self):
        while not self.stop.is_set():
            for label in self.kills:
                if label == "victim" and self.kills[label]:
                    continue
                pid = _dask_worker_of(label)
                if pid:
                    os.kill(pid, signal.SIGKILL)
                    self.kills[label] += 1
            time.sleep(0.2)


@pytest.fixture(scope="module")
def graded(dask_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    subs = root / "subs"
    subs.mkdir()
    (root / "rubric.yaml").write_text(yaml.safe_dump(RUBRIC))
    for name in ("honest", "victim", "doomed"):
        (subs / f"{name}.py").write_text(REFERENCE)
    (subs / "wrong_mean.py").write_text(REFERENCE.replace("123.68", "103.94", 1))
    (subs / "skeleton.py").write_text((ROOT / "skeletons" / "transfer_learning.py").read_text())
    (subs / "broken_nb.ipynb").write_text("{ not json")
    (subs / "honest_dir").mkdir()
    (subs / "honest_dir" / "transfer_learning.py").write_text(REFERENCE)
    common = dict(rubric_path=str(root / "rubric.yaml"), progress=False, startup_limit=60, memory_mb=4096)

    local_out = root / "local"
    batch.main(str(subs), str(local_out), workers=2, **common)
    seed = sqlite3.connect(local_out / "gradebook.sqlite").execute(
        "SELECT value FROM meta WHERE key = 'heldout_seed'").fetchone()[0]
    cluster_out = root / "cluster"
    cluster_out.mkdir()
    book = gradebook.Gradebook(cluster_out / "gradebook.sqlite")
    book.set_meta("heldout_seed", seed)  # the same held-out set as the local batch
    book.close()

    sent, recorded = [], []
    submit, scatter, record = distributed.Client.submit, distributed.Client.scatter, gradebook.Gradebook.record

    def spy_submit(self, fn, *args, **kwargs):
        sent.append((args, kwargs))
        return submit(self, fn, *args, **kwargs)

    def spy_scatter(self, data, *args, **kwargs):
        sent.append(((data,), kwargs))
        return scatter(self, data, *args, **kwargs)

    def spy_record(self, student, *args, **kwargs):
        recorded.append(student)
        return record(self, student, *args, **kwargs)

    killer = Killer()
    killer.start()
    try:
        distributed.Client.submit, distributed.Client.scatter = spy_submit, spy_scatter
        gradebook.Gradebook.record = spy_record
        batch.main(str(subs), str(cluster_out), scheduler=dask_cluster["address"], **common)
    finally:
        distributed.Client.submit, distributed.Client.scatter = submit, scatter
        gradebook.Gradebook.record = record
        killer.stop.set()

    def rows(out):
        db = sqlite3.connect(out / "gradebook.sqlite")
        db.row_factory = sqlite3.Row
        return {r["student"]: dict(r) for r in db.execute("SELECT * FROM submissions")}, \
            {(r[0], r[1]): r[2] for r in db.execute("SELECT student, item, score FROM items")}

    inputs = tl_inputs.build(rubric.load(root / "rubric.yaml"), vgg_weights.stand_in())
    return {"local": rows(local_out), "cluster": rows(cluster_out), "sent": sent, "recorded": recorded,
            "kills": killer.kills, "students": 7, "inputs": inputs}


def test_every_submission_is_recorded_exactly_once(graded):
    rows, _ = graded["cluster"]
    assert len(rows) == graded["students"]
    assert sorted(graded["recorded"]) == sorted(rows)


def test_scores_equal_a_local_batch_despite_a_killed_worker(graded):
    assert graded["kills"]["victim"] == 1
    local_rows, local_items = graded["local"]
    cluster_rows, cluster_items = graded["cluster"]
    for student in local_rows:
        if student == "doomed":
            continue
        assert cluster_rows[student]["score"] == local_rows[student]["score"], student
        assert cluster_rows[student]["status"] == local_rows[student]["status"], student
    assert {k: v for k, v in cluster_items.items() if k[0] != "doomed"} == \
        {k: v for k, v in local_items.items() if k[0] != "doomed"}
    assert cluster_rows["honest"]["score"] == 7 and cluster_rows["victim"]["score"] == 7


def test_a_submission_whose_workers_always_die_fails_with_the_reason(graded):
    rows, _ = graded["cluster"]
    # allowed-failures 2 and one resubmission: at most 2 x 3 deaths, then it stops
    assert 1 <= graded["kills"]["doomed"] <= 6
    assert rows["doomed"]["status"] == "failed" and "died" in rows["doomed"]["message"]


def test_each_submission_records_the_worker_host(graded):
    rows, _ = graded["cluster"]
    graded_rows = [r for s, r in rows.items() if s != "doomed"]
    assert all("tcp://127.0.0.1" in r["host"] for r in graded_rows if r["status"] == "graded"), graded_rows


def test_no_task_carries_the_held_out_labels(graded):
    labels = graded["inputs"].heldout_labels

    def walk(value):
        if isinstance(value, tl_inputs.GradingInputs):
            raise AssertionError("GradingInputs (with labels) sent to the cluster")
        if isinstance(value, cluster_mod.Shipped):  # the inputs travel pickled inside it
            walk(value.open())
        if isinstance(value, np.ndarray):
            assert not (value.shape == labels.shape and np.array_equal(value, labels))
        elif isinstance(value, tl_inputs.WorkerInputs):
            assert not hasattr(value, "heldout_labels")
            for field in vars(value).values():
                walk(field)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    assert graded["sent"], "nothing was sent"
    for args, kwargs in graded["sent"]:
        walk(args)
        walk(kwargs)


def test_unknown_scheduler_is_one_line(tmp_path):
    subs = tmp_path / "subs"
    subs.mkdir()
    result = subprocess.run([sys.executable, "-m", "grader", "batch", str(subs), "--out", str(tmp_path / "o"),
                             "--scheduler", "local:zero"], capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 2 and "expected local:N" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
