"""``mlaprof export F --format perfetto|chrome --out X.json``: a trace for Perfetto UI or chrome://tracing."""

from __future__ import annotations

import argparse

EPILOG = """\
example:
  mlaprof simulate --workload seed-representative --scheduler makespan --out traces/sim.arrow
  mlaprof export traces/sim.arrow --format perfetto --out sim.json
  # then open https://ui.perfetto.dev and drag sim.json in (or chrome://tracing -> Load)

one process per GPU, one thread per SM and role (extra lanes where spans of one role overlap), complete
events in µs, and flow arrows from each producing task's store to every wait on it.
"""


def register(sub) -> None:
    from mlaprof.export import FORMATS

    p = sub.add_parser(
        "export", help="write a trace as Chrome trace-event JSON (opens in Perfetto UI)",
        description="Write a trace as Chrome trace-event JSON, which Perfetto UI and chrome://tracing open: a "
                    "process per GPU, a thread per SM and role, flow events for semaphore dependencies.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("trace", help="an Arrow trace file written by mlaprof")
    p.add_argument("--format", choices=FORMATS, default="perfetto",
                   help="perfetto and chrome write the same trace-event JSON (default perfetto)")
    p.add_argument("--out", required=True, metavar="X.json", help="output file (written atomically)")


def run(args) -> int:
    from mlaprof.export import export
    from mlaprof.trace.io import read_trace

    counts = export(read_trace(args.trace), args.out, args.format)
    print(f"wrote {args.out}: {counts['X']} spans, {counts['s']} semaphore flows, {counts['M']} metadata events")
    return 0
