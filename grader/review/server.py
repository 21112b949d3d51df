"""Serving the review (waitress, on a free port) and opening it in the TA's browser
without putting its token on a command line.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import webbrowser
from pathlib import Path

from markupsafe import escape


from .guard import LOOPBACK_NAMES


def serve(app, host: str = "127.0.0.1", port: int = 0, threads: int = 4):
    """A waitress server for `app`, bound (port 0: a free one) but not yet running:
    (server, base URL). Run it with server.run() (in a thread, in tests); stop it with
    shutdown(server, thread)."""
    from waitress import create_server

    server = create_server(app, host="127.0.0.1" if host == "localhost" else host, port=port,
                           threads=threads, ident="grader-review")
    bound_host, bound_port = ((server.effective_host, server.effective_port)
                              if hasattr(server, "effective_port") else server.effective_listen[0])
    names, any_address = set(LOOPBACK_NAMES), bound_host in ("0.0.0.0", "::")
    if ":" not in host:  # a name given to --host, as the TA may type it
        names.add(host.lower())
    if any_address:
        bound_host = socket.gethostname()
        names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
    shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    if hasattr(app, "config"):  # the Host headers it answers to (create_app's guard)
        app.config.update(REVIEW_HOSTS=names | {shown_host.lower()}, REVIEW_ANY_ADDRESS=any_address)
    return server, f"http://{shown_host}:{bound_port}/"


def shutdown(server, thread: threading.Thread | None = None) -> None:
    """Stop a server `serve` made: its run() returns, its threads end. `thread`: the one
    running it, if not this one (its loop then closes the sockets itself: closing them
    under a running select() fails)."""
    from waitress import wasyncore
    from waitress.server import BaseWSGIServer

    sockets = getattr(server, "_map", None) or getattr(server, "map", {})
    if thread is not None and thread.is_alive():
        first = server if isinstance(server, BaseWSGIServer) else next(
            s for s in list(sockets.values()) if isinstance(s, BaseWSGIServer))
        try:
            first.trigger.pull_trigger(lambda: wasyncore.close_all(sockets))
        except OSError:  # its trigger is closed already: its loop is ending on its own
            pass
        thread.join(10)
        wasyncore.close_all(sockets, ignore_all=True)  # if the loop ended before the pull
    else:
        wasyncore.close_all(sockets)
    server.task_dispatcher.shutdown()


REDIRECT_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="0;url={url}">
<meta name="referrer" content="no-referrer">
<title>grader review</title>
<script>window.location.replace({url_js});</script>
</head>
<body>
<p>Opening the review. If nothing happens, <a href="{url}">follow this link</a>.</p>
</body>
</html>
"""
"""the page `browser_page` writes: it sends the browser on to the review's URL"""


@contextlib.contextmanager
def browser_page(link: str):
    """A page that sends the browser on to `link` (the URL with its token), opened in the
    browser, removed with its folder on exit; yields its path (None when it could not be
    written). As Jupyter does: the browser is started on file://... of a file only its
    owner can read (0600, in a fresh 0700 folder), never on the URL itself, which would
    put the token in the browser's command line, readable by every local user
    (/proc/PID/cmdline)."""
    folder = page = None
    try:
        folder = Path(tempfile.mkdtemp(prefix="grader-review-"))  # 0700, owned by the TA
        page = folder / "open.html"
        fd = os.open(page, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(REDIRECT_PAGE.format(url=escape(link),
                                         url_js=json.dumps(link).replace("<", "\\u003c")))
    except OSError as exc:
        print(f"grader review: could not write the page that opens the browser ({exc}); "
              "open the URL above.", file=sys.stderr)
        page = None
    try:
        if page is not None:
            try:
                webbrowser.open(page.as_uri())
            except Exception:  # no browser here: the printed URL is enough
                pass
        yield page
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)


