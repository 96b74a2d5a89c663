"""``mlaprof dash``: serve the Gantt dashboard over a folder of traces."""

from __future__ import annotations

import argparse

EXAMPLE = """example:
  mlaprof dash traces/ --port 8050 --no-browser
  # then open http://127.0.0.1:8050/ ; pick a trace, zoom the Gantt, pick a second trace for the diff tab

Only *.arrow files inside DIR (searched recursively) can be opened; paths with '..', absolute paths and
symlinks that leave DIR are refused. A damaged file shows an error card; the other traces keep working.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "dash", help="serve the Gantt dashboard over a folder of traces",
        description="Serve a Dash app: trace browser, per-SM Gantt (WebGL, level of detail on zoom), summary and "
                    "diff of two traces. Listens on 127.0.0.1 unless --host says otherwise.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", nargs="?", default=None, metavar="DIR",
                   help="folder holding .arrow traces (default: the bundled traces/ at the repo root)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    p.add_argument("--no-browser", action="store_true", help="do not open a web browser")


def run(args) -> int:
    from dashboard.app import DEFAULT_DIR, serve  # dash is imported only when this command runs

    serve(args.dir or DEFAULT_DIR, host=args.host, port=args.port, open_browser=not args.no_browser)
    return 0
