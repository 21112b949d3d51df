"""An outside attack on this kit (a reported issue): what the audit hook did not see. At
import it starts a child through `_posixsubprocess.fork_exec` (no audit event) that lists
the worker's descriptor table, tries the network and writes to /tmp; walks frames from a
traceback; makes a FIFO and binds a socket file in its scratch folder; sends on a socket
with `sendmsg`; and touches a file's times. The five functions are the skeleton's
signatures with trivial bodies: only the flags matter here (tests/test_provenance.py)."""
import _posixsubprocess
import os
import socket
import sys

SCRATCH = os.environ.get("TMPDIR", ".")
SEEN = {}


def _unaudited_child(command: str) -> int:
    """/bin/sh -c command, started and reaped without one audit event; its exit code."""
    errpipe_read, errpipe_write = os.pipe()
    pid = _posixsubprocess.fork_exec(
        [b"/bin/sh", b"-c", command.encode()], [b"/bin/sh"], True, (errpipe_write,), None, None,
        -1, -1, -1, -1, -1, -1, errpipe_read, errpipe_write, False, False, -1, None, None, None,
        -1, None, False)
    os.close(errpipe_write)
    os.read(errpipe_read, 100)
    os.close(errpipe_read)
    return os.waitpid(pid, 0)[1]


def _attempt(name, action):
    try:
        SEEN[name] = action()
    except OSError as exc:
        SEEN[name] = exc.strerror


_attempt("child", lambda: _unaudited_child(
    f"ls -l /proc/{os.getpid()}/fd > /tmp/worker_fds; "
    "echo here > /tmp/child_was_here; "
    f"{sys.executable} -c 'import socket; socket.socket().connect_ex((\"127.0.0.1\", 80))'; "
    "(true &); sleep 0.3"))  # the background `true` is an orphan: the sandbox's PID 1 reaps it

try:
    1 / 0
except ZeroDivisionError as exc:
    caller = exc.__traceback__.tb_frame.f_back
    SEEN["caller_names"] = sorted(caller.f_locals)[:5] if caller is not None else []

_attempt("fifo", lambda: os.mkfifo(os.path.join(SCRATCH, "pipe")))
_attempt("tmp_fifo", lambda: os.mkfifo("/tmp/pipe_in_tmp"))


def _socket_file():
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    unix.bind(os.path.join(SCRATCH, "sock"))
    unix.close()


def _sendmsg():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        return udp.sendmsg([b"hello"], [], 0, ("127.0.0.1", 9))


_attempt("socket_file", _socket_file)
_attempt("sendmsg", _sendmsg)
_attempt("utime", lambda: os.utime(os.path.join(SCRATCH, "pipe"), (0, 0)))


def preprocess(images):
    return images


def build_model(weights, num_classes=10):
    return None


def make_dataset(images, labels, batch_size=64, shuffle=True, repeat=True, seed=None):
    return None


def train(model, train_ds, val_ds=None, *, steps, learning_rate=1e-4, checkpoint_dir=None,
          checkpoint_every=100, max_to_keep=5, log_dir=None, verbose=False):
    return {}


def restore_checkpoint(model, checkpoint_dir):
    return 0
