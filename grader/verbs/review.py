"""`grader review OUT`: a local web page where TAs go through a batch, look at each
submission's feedback, flags, curves and written answers, and grade the manual items
(the page itself is grader/review/)."""
from __future__ import annotations

import contextlib
import os
import secrets
import sys
from pathlib import Path

from ..errors import KitError
from ..review import create_app
from ..review.guard import _loopback
from ..review.server import browser_page, serve, shutdown

HELP = "TAs: a local web page to go through a batch and grade the manual items"


def add_arguments(parser) -> None:
    parser.add_argument("out", help="the --out folder of `grader batch`")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: %(default)s, this machine only)")
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument("--grader", default=os.environ.get("USER", ""),
                        help="your name, saved with each grade (default: $USER)")
    parser.add_argument("--no-browser", action="store_true", help="print the URL, open no browser")


def execute(args) -> None:
    main(args.out, host=args.host, port=args.port, grader=args.grader,
         open_browser=not args.no_browser)


def main(out: str, host: str = "127.0.0.1", port: int = 0, grader: str = "",
         open_browser: bool = True) -> None:
    token = secrets.token_urlsafe(24)
    app = create_app(Path(out), token, grader)
    if not _loopback(host):
        print(f"warning: --host {host} is not this machine only: anyone who can reach it and "
              "sees the token can read and change grades, and plain http carries the token "
              "unencrypted. Prefer the default 127.0.0.1 (with an SSH tunnel from elsewhere).",
              file=sys.stderr)
    try:
        server, url = serve(app, host, port)
    except OSError as exc:
        raise KitError(f"{host}:{port}: expected an address to listen on; could not bind it "
                       f"({exc.strerror or exc}). Leave --port out for a free one, or pick "
                       "another.") from None
    link = f"{url}?token={token}"
    # The token is printed: the terminal is the TA's own (Jupyter prints it too), and it is
    # how to open the review without a browser here or from elsewhere through a tunnel. It
    # is never put in a command line: the browser gets a private file (browser_page).
    print(f"grader review of {out}: {link}  (Ctrl-C stops it)", flush=True)
    try:
        with browser_page(link) if open_browser else contextlib.nullcontext():
            server.run()
    except KeyboardInterrupt:
        pass
    finally:
        shutdown(server)
    print("grader review stopped.")
