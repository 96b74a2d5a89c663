"""Wiring: a Dash app over one trace folder, and ``serve`` that runs it on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import webbrowser
from pathlib import Path

import dash

from dashboard import answers, callbacks
from dashboard.files import TraceDir
from dashboard.layout import build_layout
from dashboard.store import TraceStore
from mlaprof.errors import UserError

DEFAULT_DIR = Path(__file__).resolve().parent.parent / "traces"  # the bundled traces at the repo root


def create_app(root: str | Path = DEFAULT_DIR) -> dash.Dash:
    """The app for the traces under ``root``; only files inside it can ever be opened."""
    tdir = TraceDir(root)
    store = TraceStore(tdir)
    app = dash.Dash(__name__, title="mlaprof dashboard", update_title=None)
    label = f"serving {tdir.root}"
    # a function: each page load gets the current trace list and the first trace's Gantt in the page itself
    app.layout = lambda: build_layout(label, answers.first_page(store))
    callbacks.register(app, store)
    app.mlaprof_store = store
    return app


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(root: str | Path = DEFAULT_DIR, host: str = "127.0.0.1", port: int = 8050, open_browser: bool = True,
          debug: bool = False) -> None:
    if not 0 < port < 65536:
        raise UserError(f"--port must be 1..65535, got {port}")
    app = create_app(root)
    _check_free(host, port)
    # read and analyse the traces while the browser starts: the first page needs them (answers.first_page);
    # a page asked for meanwhile waits for this load instead of starting its own (TraceStore.load)
    threading.Thread(target=app.mlaprof_store.catalogue, daemon=True).start()
    if not _is_loopback(host):
        print(f"warning: serving on {host}: anyone who can reach this address can read the traces in {root}",
              file=sys.stderr)
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}/"
    print(f"mlaprof dashboard: {url} (traces under {Path(root).resolve()}; Ctrl-C stops)")
    if open_browser:
        threading.Timer(1.0, webbrowser.open, args=(url,)).start()
    app.run(host=host, port=port, debug=debug)


def _check_free(host: str, port: int) -> None:
    """Fail with one line before serving: werkzeug would print a paragraph and exit on a taken port."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UserError(f"cannot serve on {host}:{port}: {e.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug does: TIME_WAIT is not "in use"
        try:
            s.bind(address)
        except OSError as e:
            raise UserError(f"cannot serve on {host}:{port}: {e.strerror or e}; pick another --port") from None
