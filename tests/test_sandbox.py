"""Escapes from the grading sandbox, tried by a submission during `grader batch`, both as
the grader runs in CI (root) and as an unprivileged user (nobody, over the same
environment made readable to it). In both, the submission must not read the gradebook,
the rubric, another submission or the kit's solutions; must not write outside its
scratch folder or modify the kit; must not reach the network; must not leave a process
behind; must not unmount what hides things; and must never run as root."""
from __future__ import annotations

import csv
import io
import json
import os
import pwd
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from grader.exercises.transfer_learning import inputs as tl_inputs
from grader import sandbox as sandbox_mod
from kit import ROOT, SOLUTION

RUBRIC = {"schema_version": 1, "time_limit": 30, "items": [
    {"id": "interface", "title": "Interface", "points": 5, "check": "interface"},
    {"id": "preprocess", "title": "Preprocessing", "points": 10, "check": "preprocess"},
]}
STRAY_SLEEP = 8
SCRATCH_MB = 64

ESCAPE = '''
import ctypes, errno, json, os, socket, sys, time
FINDINGS = {{"euid": os.geteuid()}}

def attempt(name, action):
    try:
        action()
        FINDINGS[name] = "ok"
    except OSError as exc:
        FINDINGS[name] = errno.errorcode.get(exc.errno, str(exc.errno))
    except Exception as exc:
        FINDINGS[name] = type(exc).__name__

def read(path):
    with open(path, "rb") as handle:
        handle.read(1)

def write(path):
    with open(path, "a") as handle:
        handle.write("#")

libc = ctypes.CDLL(None, use_errno=True)

def call(result):
    if result != 0:
        raise OSError(ctypes.get_errno(), "failed")

attempt("gradebook", lambda: read({gradebook!r}))
attempt("rubric", lambda: read({rubric!r}))
attempt("sibling", lambda: read({sibling!r}))
attempt("solutions", lambda: read({solution!r}))
attempt("kit_write", lambda: write({kit_file!r}))
attempt("own_module", lambda: write(__file__))
attempt("host_tmp", lambda: write({host_tmp!r}))
attempt("network", lambda: socket.create_connection(("127.0.0.1", {port}), timeout=3))
attempt("umount", lambda: call(libc.umount2({kit_dir!r}.encode(), 2)))
attempt("remount", lambda: call(libc.mount(None, {kit_dir!r}.encode(), None, 32 | 4096, None)))
attempt("new_userns", lambda: call(libc.unshare(0x10000000)))
FILLED = []

def fill():  # allocated at once, the way a submission would fill the disk fastest
    for i in range(4):
        fd = os.open("fill%d" % i, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            os.posix_fallocate(fd, 0, 32 << 20)
        finally:
            os.close(fd)
        FILLED.append(32)

attempt("fill_scratch", fill)
FINDINGS["filled_mb"] = sum(FILLED)
if os.fork() == 0:  # a grandchild in its own session: the classic way to outlive a job
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c",
                 "import time; time.sleep({sleep}); open({host_tmp!r} + '.stray', 'w')  # {marker}"])
    os._exit(0)
os.wait()

def preprocess(images):
    raise RuntimeError("FINDINGS " + json.dumps(FINDINGS, separators=(",", ":")))
'''


def _markers(marker: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


def _as_nobody(tmp_root: Path) -> list[str]:
    """A command prefix that runs as nobody, with this environment and the kit readable
    at their own paths and `tmp_root` writable (the sandbox's own trampoline does it)."""
    paths = sandbox_mod.runtime_paths() + [ROOT.resolve()]
    prefix = [sys.executable, "-m", "grader.sandbox", "--user", "nobody"]
    for path in paths:
        prefix += ["--expose", str(path)]
    return prefix + ["--expose-rw", str(tmp_root), "--"]


MODES = ["current_user", pytest.param("nobody", marks=pytest.mark.skipif(
    os.geteuid() != 0, reason="switching to an unprivileged user needs root"))]


@pytest.fixture(scope="module", params=MODES)
def escape(request, tmp_path_factory):
    """One batch with an escaping submission beside an honest one, graded as root (or
    whoever runs the tests) and as nobody; what the submission found, the exports, and
    the strays it tried to leave."""
    mode = request.param
    root = tmp_path_factory.mktemp(f"escape-{mode}")
    os.chmod(root, 0o755)
    subs, out, private = root / "subs", root / "out", root / "private"
    for folder in (subs, out, private):
        folder.mkdir()
    rubric_file = private / "rubric.yaml"
    rubric_file.write_text(yaml.safe_dump(RUBRIC))
    (subs / "honest.py").write_text(SOLUTION.read_text())
    # a few of the hostile class (tests/verbs/test_batch.py), here graded as nobody too
    latin1 = subs / os.fsdecode(b"caf\xe9")
    latin1.mkdir()
    # another correct solution: a copy of honest.py would be flagged as similar to it
    (latin1 / "transfer_learning.py").write_text((ROOT / "tests" / "corpus" / "correct" /
                                                  "subclassed_eager.py").read_text())
    (subs / "to_shadow.py").symlink_to("/etc/shadow")
    (subs / "=cmd()|x.ipynb").write_text("{ not json")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    marker = f"stray-{uuid.uuid4().hex}"
    host_tmp = f"/tmp/{marker}"
    (subs / "escape.py").write_text(ESCAPE.format(
        gradebook=str(out / "gradebook.sqlite"), rubric=str(rubric_file),
        sibling=str(subs / "honest.py"), solution=str(SOLUTION), kit_file=str(ROOT / "grader" / "__init__.py"),
        kit_dir=str(ROOT / "grader"), host_tmp=host_tmp, port=listener.getsockname()[1],
        sleep=STRAY_SLEEP, marker=marker))
    command = [sys.executable, "-m", "grader", "batch", str(subs), "--out", str(out), "--workers", "1",
               "--rubric", str(rubric_file), "--no-progress", "--memory-mb", "4096",
               "--scratch-mb", str(SCRATCH_MB)]
    if mode == "nobody":
        nobody = pwd.getpwnam("nobody")
        for path in [root, *root.rglob("*")]:
            os.chown(path, nobody.pw_uid, nobody.pw_gid, follow_symlinks=False)
        os.chmod(private, 0o700)
        command = _as_nobody(root) + command
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, timeout=600)
    finished = time.monotonic()
    listener.close()
    flags_listing = subprocess.run(
        [sys.executable, "-m", "grader", "flags", str(out)], capture_output=True, text=True, env=env)
    strays_at_end = _markers(marker)
    time.sleep(max(0.0, STRAY_SLEEP + 2 - (time.monotonic() - finished)))
    table = list(csv.DictReader(io.StringIO((out / "grades.csv").read_text()))) if result.returncode == 0 else []
    import sqlite3
    db = sqlite3.connect(out / "gradebook.sqlite") if (out / "gradebook.sqlite").exists() else None
    message = db.execute("SELECT message FROM items WHERE student='escape' AND item='preprocess'"
                         ).fetchone()[0] if db else ""
    findings = json.loads(message.split("FINDINGS ", 1)[1].rsplit(", at line", 1)[0]) if "FINDINGS" in message else {}
    return {"mode": mode, "result": result, "findings": findings, "message": message,
            "table": {r["student"]: r for r in table}, "flags": flags_listing,
            "strays_at_end": strays_at_end, "strays_later": _markers(marker),
            "host_tmp": Path(host_tmp), "kit_file": ROOT / "grader" / "__init__.py",
            "sandbox": sandbox_mod.choose(), "root": root}


@pytest.mark.slow
def test_batch_runs_and_grades_the_honest_submission(escape):
    assert escape["result"].returncode == 0, escape["result"].stderr[-3000:]
    assert escape["table"]["honest"]["total"] == "15", escape["table"]
    assert escape["findings"], escape["message"]


def test_odd_names_and_links_as_this_user(escape):
    """A Latin-1 folder name is graded on its content, a link is refused without being read,
    and a formula name reaches the CSV neutralised, whoever runs the batch."""
    table = escape["table"]
    assert table["caf\\xe9"]["total"] == "15", table
    assert table["to_shadow"]["status"] == "failed" and table["to_shadow"]["total"] == "0"
    assert "'=cmd()|x" in table and "=cmd()|x" not in table, sorted(table)
    assert "refused: to_shadow.py: is a symbolic link" in escape["result"].stderr


def test_submission_never_runs_as_root(escape):
    assert escape["findings"]["euid"] != 0


def test_private_files_are_out_of_reach(escape):
    if not escape["sandbox"].confined:
        pytest.skip("namespaces are not available here: " + "; ".join(escape["sandbox"].notices))
    for what in ("gradebook", "rubric", "sibling", "solutions"):
        assert escape["findings"][what] in ("ENOENT", "EACCES"), (what, escape["findings"])


def test_no_writes_outside_scratch_and_the_kit_is_read_only(escape):
    assert escape["findings"]["kit_write"] in ("EROFS", "EACCES"), escape["findings"]
    if escape["mode"] == "nobody" and escape["sandbox"].confined:
        # the grader's files belong to the same user here: only the read-only view stops it
        assert escape["findings"]["own_module"] == "EROFS", escape["findings"]
    else:
        assert escape["findings"]["own_module"] in ("EROFS", "EACCES"), escape["findings"]
    assert not escape["host_tmp"].exists()
    assert not Path(str(escape["host_tmp"]) + ".stray").exists()


def test_a_root_grader_bounds_what_a_submission_writes(escape):
    if escape["mode"] != "current_user" or os.geteuid() != 0:
        pytest.skip("only a root grader can put scratch folders on a size-limited tmpfs")
    # 128 MB asked for at once; the scratch folder holds 64 MB in all
    assert escape["findings"]["fill_scratch"] == "ENOSPC", escape["findings"]
    assert 0 < escape["findings"]["filled_mb"] <= SCRATCH_MB
    # and the tmpfs went with the grading: nothing stays mounted, nothing stays in memory
    assert str(escape["root"]) not in Path("/proc/mounts").read_text()


def test_no_network(escape):
    if not escape["sandbox"].confined:
        pytest.skip("namespaces are not available here")
    assert escape["findings"]["network"] in ("ENETUNREACH", "ECONNREFUSED", "EHOSTUNREACH"), escape["findings"]


def test_cannot_unmount_remount_or_nest_namespaces(escape):
    if not escape["sandbox"].confined:
        pytest.skip("namespaces are not available here")
    findings = escape["findings"]
    assert findings["umount"] != "ok" and findings["remount"] != "ok" and findings["new_userns"] != "ok", findings


def test_no_process_outlives_its_grading(escape):
    """The grandchild in its own session sleeps past the end of the batch; it must be gone
    at once, and must never write what it meant to write after its sleep."""
    if not escape["sandbox"].confined:
        pytest.skip("namespaces are not available here")
    assert escape["strays_at_end"] == [] and escape["strays_later"] == []


def test_the_sandbox_ends_with_a_grading_process_that_is_killed(tmp_path):
    """A grading process killed outright (SIGKILL, the OOM killer) cleans nothing up: the
    process it started in the sandbox's trampoline gets SIGKILL from the kernel then."""
    grading = subprocess.Popen(
        [sys.executable, "-c", "import subprocess, sys, time\n"
         "child = subprocess.Popen([sys.executable, '-m', 'grader.sandbox', '--', 'sleep', '60'],"
         " start_new_session=True)\n"
         "print(child.pid, flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    child = int(grading.stdout.readline())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not Path(f"/proc/{child}/cmdline").read_bytes().startswith(b"sleep"):
        time.sleep(0.05)  # until the trampoline has exec'd
    grading.kill()
    grading.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and Path(f"/proc/{child}").exists():
        time.sleep(0.05)
    assert not Path(f"/proc/{child}").exists() or \
        Path(f"/proc/{child}/stat").read_text().split(")")[1].split()[0] == "Z"


def test_escape_attempts_are_flagged_for_review(escape):
    row = escape["table"]["escape"]
    kinds = set(row["flags"].split())
    assert {"write_outside_scratch", "network", "introspection"} <= kinds, row
    if escape["sandbox"].confined:
        assert "processes_left" in kinds, row
    assert escape["table"]["honest"]["flags"] == ""
    listing = escape["flags"].stdout
    assert "escape" in listing and "honest" not in listing and "processes_left" in listing or \
        not escape["sandbox"].confined, listing
    assert "flagged for review: 1 submission(s) (escape)" in escape["result"].stdout


@pytest.mark.slow
def test_without_namespaces_it_falls_back_with_a_notice_and_still_grades(monkeypatch, tmp_path):
    """Where bwrap cannot run, grading goes on under resource limits (as nobody when run
    as root), and the notice says what is not isolated."""
    from grader import engine, rubric
    from grader.exercises.transfer_learning import vgg_weights
    monkeypatch.setattr(sandbox_mod, "bwrap_path", lambda: None)
    fallback = sandbox_mod.choose()
    assert fallback.kind == "limits" and not fallback.confined
    assert "not isolated" in " ".join(fallback.notices)
    assert fallback.user == ("nobody" if os.geteuid() == 0 else "")
    quick = rubric.parse(RUBRIC, "quick")
    source = tmp_path / "whoami.py"
    source.write_text(SOLUTION.read_text() + "\nimport os\nEUID = os.geteuid()\n"
                      "_pre = preprocess\ndef preprocess(images):\n"
                      "    assert EUID != 0, 'running as root'\n    return _pre(images)\n")
    report = engine.grade_submission(source, quick, tl_inputs.build(quick, vgg_weights.stand_in()),
                                     sandbox=fallback)
    assert report.score == report.max_score, report.to_dict()["items"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root grader switches users")
def test_root_is_refused_as_the_user_submissions_run_as():
    from grader.errors import KitError
    with pytest.raises(KitError, match="never run with root's powers"):
        sandbox_mod.choose(user="root")


def test_flags_listing_needs_a_batch_folder(tmp_path):
    result = subprocess.run([sys.executable, "-m", "grader", "flags", str(tmp_path)],
                            capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "gradebook.sqlite" in result.stderr
