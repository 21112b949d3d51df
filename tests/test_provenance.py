"""Flags that a submission cannot relabel: what its source reaches for, read before it
runs (grader/provenance.py), and what the sandbox saw it do (child processes, FIFOs,
sockets), measured from outside the worker's process (engine/process.py, sandbox.py)."""
from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from grader import provenance, sandbox as sandbox_mod
from grader.cells import notebook_to_source
from kit import ROOT, SOLUTION

ATTACK = ROOT / "tests" / "attacks" / "unseen_children.py"

# (snippet, the line flagged, words of the message)
FLAGGED = [
    ("try:\n    1 / 0\nexcept Exception as e:\n    f = e.__traceback__\n", 4, "__traceback__"),
    ("def f(tb):\n    return tb.tb_frame\n", 2, "tb_frame"),
    ("x = 1\ndef f(frame):\n    return frame.f_back.f_locals\n", 3, "f_back"),
    ("def f(frame):\n    return frame.f_globals\n", 2, "f_globals"),
    ("def f(g):\n    return g.gi_frame\n", 2, "gi_frame"),
    ("import sys\nframe = sys._getframe(1)\n", 2, "sys._getframe"),
    ("import inspect as i\nstack = i.stack()\n", 2, "inspect.stack"),
    ("from inspect import currentframe\n", 1, "inspect.currentframe"),
    ("import gc\n", 1, "gc"),
    ("import ctypes.util\n", 1, "ctypes"),
    ("from ctypes import CDLL\n", 1, "ctypes"),
    ("x = 1\ny = eval('x')\n", 2, "eval"),
    ("exec('x = 1')\n", 1, "exec"),
    ("code = compile('1', 'f', 'eval')\n", 1, "compile"),
    ("m = __import__('o' + 's')\n", 1, "__import__"),
    ("import importlib\nm = importlib.import_module('os')\n", 2, "import_module"),
    ("import importlib.util\n", 1, "importlib.util"),
    ("import _posixsubprocess\n", 1, "_posixsubprocess"),
    ("import os\npid = os.fork()\n", 2, "os.fork"),
    ("import os\nos.execv('/bin/ls', ['ls'])\n", 2, "os.execv"),
    ("from os import system as run\n", 1, "os.system"),
    ("import os\nos.posix_spawn('/bin/ls', ['ls'], {})\n", 2, "os.posix_spawn"),
    ("import subprocess\n", 1, "subprocess"),
    ("import pty\n", 1, "pty"),
    ("import signal\n", 1, "signal"),
    ("import os\nos.kill(1, 9)\n", 2, "os.kill"),
    ("import os\nos.mkfifo('p')\n", 2, "os.mkfifo"),
    ("import os\nos.mknod('n')\n", 2, "os.mknod"),
    ("import socket\n", 1, "socket"),
    ("import os\nname = 'fork'\nf = getattr(os, name)\n", 3, "computed name"),
    ("import os\nf = getattr(os, 'system')\n", 2, "os.system"),
    ("import sys\nm = sys.modules['os']\n", 2, "sys.modules"),
    ("import builtins\n", 1, "builtins"),
    ("__builtins__['open'] = None\n", 1, "__builtins__"),
    ("subs = object.__subclasses__()\n", 1, "__subclasses__"),
    ("def f(g):\n    return g.__globals__\n", 2, "__globals__"),
    ("def f(g, h):\n    g.__code__ = h.__code__\n", 2, "__code__"),
    ("path = f'/proc/{1}/mem'\n", 1, "/proc/*/mem"),
    ("libc = None\nlibc.ptrace(16, 1, 0, 0)\n", 2, "ptrace"),
    # names spelled in pieces, frames walked through the standard library (an outside attack)
    ("def f(x):\n    return getattr(x, ''.join(['f', '_', 'loc', 'als']))\n", 2, "'f_locals' in pieces"),
    ("def f(fn):\n    return getattr(fn, '__glo' + 'bals__')\n", 2, "'__globals__' in pieces"),
    ("def f(x):\n    return getattr(x, chr(102) + '_back')\n", 2, "'f_back' in pieces"),
    ("def f(x):\n    return getattr(x, f\"{'tb'}_frame\")\n", 2, "'tb_frame' in pieces"),
    ("import traceback\nframes = traceback.walk_stack(None)\n", 2, "traceback.walk_stack"),
    ("import operator\nget = operator.attrgetter('x')\n", 2, "operator.attrgetter"),
    ("import sys\nloaded = vars(sys)['mod' + 'ules']\n", 2, "vars(sys)"),
    ("HEAD = '" + "QUJD" * 5000 + "'\n", 1, "a literal of 19 KB"),
    ("TABLE = [" + "0.5, " * 20000 + "]\n", 1, "a list of 20,000 elements"),
]

HONEST = [
    "import os\nimport numpy as np\nimport tensorflow as tf\nimport keras\n",
    "import inspect\nsig = inspect.signature(print)\n",
    "import os\nos.makedirs('ckpt', exist_ok=True)\npath = os.path.join('a', 'b')\n",
    "model = None\ndef go(m):\n    m.compile(optimizer='adam')\n    return getattr(m, 'layers')\n",
    "import sys\nsys.path.append('.')\n",
    "def f(x):\n    try:\n        return 1 / x\n    except ZeroDivisionError as exc:\n        raise ValueError('x') from exc\n",
    "this is not python(\n",
    "def f(self, i, name):\n    return getattr(self, f'conv{i}'), getattr(self, name), 'a' + 'b'\n",
    "x = " + " + ".join(["'a'"] * 5000) + "\n",
]


@pytest.mark.parametrize("snippet,line,words", FLAGGED)
def test_each_construct_is_flagged_with_its_line(snippet, line, words):
    """Does the scanner name the construct, on the line where it is?"""
    flags = provenance.scan(snippet)
    assert any(f.startswith(f"line {line}: ") and words in f for f in flags), flags


@pytest.mark.parametrize("snippet", HONEST)
def test_honest_code_and_unparsable_code_raise_nothing(snippet):
    assert provenance.scan(snippet) == []


def test_the_flags_are_capped():
    source = "".join(f"def f{i}(t):\n    return t.tb_frame\n" for i in range(500))
    assert len(provenance.scan(source)) == provenance.MAX_FLAGS


def _honest_modules() -> list[tuple[str, str]]:
    """Every correct module of the kit: the solution, the skeletons, the corpus, and the
    modules the grader makes from their notebooks."""
    found = []
    for folder in (ROOT / "solutions", ROOT / "skeletons", ROOT / "tests" / "corpus"):
        for path in sorted(folder.rglob("*.py")):
            found.append((str(path.relative_to(ROOT)), path.read_text()))
        for path in sorted(folder.rglob("*.ipynb")):
            found.append((str(path.relative_to(ROOT)), notebook_to_source(path)))
    return found


def test_no_correct_module_of_the_kit_is_flagged():
    modules = _honest_modules()
    assert len(modules) >= 30
    flagged = {name: provenance.scan(text) for name, text in modules}
    assert not {name: flags for name, flags in flagged.items() if flags}


def test_the_attacks_that_walk_frames_are_flagged():
    for name in ("protocol_forger.py", "forger_memory.py", "smuggled_inputs.py", ATTACK.name):
        assert provenance.scan_file(ROOT / "tests" / "attacks" / name), name


GRADE = """
import json, sys
from grader import engine, rubric, sandbox as sandbox_mod
from grader.exercises.transfer_learning import inputs as tl_inputs, vgg_weights
quick = rubric.parse({"schema_version": 1, "time_limit": 60, "items": [
    {"id": "interface", "title": "Interface", "points": 5, "check": "interface"}]}, "quick")
inputs = tl_inputs.build(quick, vgg_weights.stand_in())
found = {}
for module in sys.argv[1:]:
    report = engine.grade_submission(module, quick, inputs, sandbox=sandbox_mod.choose())
    found[module] = {"score": report.score, "flags": [[f.kind, f.detail] for f in report.flags]}
print("FOUND " + json.dumps(found))
"""


def _as_nobody(tmp_root: Path) -> list[str]:
    """Run as nobody, with this environment and the kit readable, `tmp_root` writable."""
    prefix = [sys.executable, "-m", "grader.sandbox", "--user", "nobody"]
    for path in sandbox_mod.runtime_paths() + [ROOT.resolve()]:
        prefix += ["--expose", str(path)]
    return prefix + ["--expose-rw", str(tmp_root), "--"]


MODES = ["current_user", pytest.param("nobody", marks=pytest.mark.skipif(
    os.geteuid() != 0, reason="switching to an unprivileged user needs root"))]


@pytest.fixture(scope="module", params=MODES)
def graded(request, tmp_path_factory):
    """The attack and the reference solution, each graded on the interface item alone,
    by a grading process run as this user (root in CI: the submission runs as nobody)
    and as nobody."""
    root = tmp_path_factory.mktemp(f"provenance-{request.param}")
    os.chmod(root, 0o755)
    attack, honest = root / "attack" / "transfer_learning.py", root / "honest" / "transfer_learning.py"
    for path, source in ((attack, ATTACK), (honest, SOLUTION)):
        path.parent.mkdir()
        path.write_text(source.read_text())
    command = [sys.executable, "-c", GRADE, str(attack), str(honest)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TMPDIR=str(root))
    if request.param == "nobody":
        nobody = pwd.getpwnam("nobody")
        for path in [root, *root.rglob("*")]:
            os.chown(path, nobody.pw_uid, nobody.pw_gid, follow_symlinks=False)
        command = _as_nobody(root) + command
        env["HOME"] = str(root)
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root, timeout=600)
    line = [l for l in result.stdout.splitlines() if l.startswith("FOUND ")]
    assert line, result.stderr[-3000:]
    found = json.loads(line[0][len("FOUND "):])
    return {"attack": found[str(attack)], "honest": found[str(honest)]}


def _kinds_with(flags, kind: str, words: str) -> bool:
    return any(k == kind and words in detail for k, detail in flags)


@pytest.mark.slow
def test_what_the_audit_hook_never_saw_is_flagged(graded):
    """The child started through _posixsubprocess, the FIFOs, the socket file: measured
    from the sandbox's side. The frame walk, sendmsg and utime: the audit hook. Each also
    named in the source, by line."""
    flags = graded["attack"]["flags"]
    assert graded["attack"]["score"] == 5.0  # its functions exist; flags change no score
    assert _kinds_with(flags, "subprocess", "the worker reaped children"), flags
    if sandbox_mod.choose().confined:
        assert _kinds_with(flags, "subprocess", "the sandbox's init reaped"), flags  # the orphan
        assert _kinds_with(flags, "special_file", "a FIFO: /tmp/pipe_in_tmp"), flags
    assert _kinds_with(flags, "special_file", "a FIFO: scratch/pipe"), flags
    assert _kinds_with(flags, "special_file", "a socket file: scratch/sock"), flags
    assert _kinds_with(flags, "introspection", "read tb_frame"), flags
    assert _kinds_with(flags, "network", "sendmsg to ('127.0.0.1', 9)"), flags
    assert _kinds_with(flags, "file_metadata", "os.utime"), flags
    source = [detail for kind, detail in flags if kind == "source"]
    for line, words in ((7, "_posixsubprocess"), (37, "/proc/*/fd"), (45, "tb_frame"),
                        (45, "f_back"), (46, "f_locals"), (48, "os.mkfifo")):
        assert any(d.startswith(f"line {line}: ") and words in d for d in source), (line, words, source)


def test_the_reference_solution_graded_the_same_way_raises_no_flag(graded):
    assert graded["honest"] == {"score": 5.0, "flags": []}


def test_a_scan_of_scratch_follows_nothing(tmp_path):
    """FIFOs and socket files are found in folders below; a link to a FIFO elsewhere is not
    followed, nor a link to a folder."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.mkfifo(elsewhere / "far")
    scratch = tmp_path / "scratch"
    (scratch / "deep" / "er").mkdir(parents=True)
    os.mkfifo(scratch / "deep" / "er" / "pipe")
    (scratch / "link").symlink_to(elsewhere / "far")
    (scratch / "dir_link").symlink_to(elsewhere)
    (scratch / "plain.txt").write_text("x")
    assert sandbox_mod.special_files(scratch) == [("deep/er/pipe", "a FIFO")]
