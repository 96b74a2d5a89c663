"""``mlaprof diff A B [--json | --html OUT]``: what changed between two traces (see mlaprof.diff)."""

from __future__ import annotations

import argparse
import json

EPILOG = """\
example:
  mlaprof simulate --workload seed-representative --scheduler static --out traces/static.arrow
  mlaprof simulate --workload seed-representative --scheduler makespan --out traces/makespan.arrow
  mlaprof diff traces/static.arrow traces/makespan.arrow
  mlaprof diff traces/static.arrow traces/makespan.arrow --html diff.html

deltas are B - A. Same workload: instructions are matched by what they compute (opcode, sequence, query and
KV range, reduction inputs). Different workloads: only aggregates are compared, and the output says so.
"""


def register(sub) -> None:
    p = sub.add_parser(
        "diff", help="compare two traces: makespan, per-op deltas, critical-path moves",
        description="Compare two traces (B - A): makespan, time by kind, per-opcode means, busy/wait/idle, the "
                    "SMs that changed most, per-instruction duration and start deltas, and how the critical path "
                    "moved.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("a", help="trace A (the baseline)")
    p.add_argument("b", help="trace B")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON object")
    out.add_argument("--html", metavar="OUT", help="write a self-contained HTML report (Gantts + tables)")
    p.add_argument("--top", type=int, default=10, metavar="N", help="instructions and SMs to list (default 10)")


def run(args) -> int:
    from mlaprof.analysis import analyze
    from mlaprof.diff import diff, html_report
    from mlaprof.errors import UserError
    from mlaprof.export import write_atomic
    from mlaprof.trace.io import read_trace

    if args.top < 0:
        raise UserError(f"--top must be >= 0, got {args.top}")
    ta, tb = read_trace(args.a), read_trace(args.b)
    aa, ab = analyze(ta), analyze(tb)
    d = diff(ta, tb, aa, ab, top_sms=max(args.top, 1))
    if args.json:
        print(json.dumps(d.to_json(max_ops=None)))
    elif args.html:
        write_atomic(args.html, [html_report(d, aa, ab, max_ops=max(args.top, 50))])
        print(f"wrote {args.html} (mode {d.mode}, makespan delta {d.makespan_delta_us:+.3f} us)")
    else:
        print(render(d, args.top))
    return 0


def _row(label: str, v: dict, digits: int = 3) -> str:
    if isinstance(v["a"], int) and isinstance(v["b"], int):  # counts (diff._abd keeps them integers)
        digits = 0
    return f"  {label:<18} {v['a']:>12.{digits}f} {v['b']:>12.{digits}f} {v['delta']:>+12.{digits}f}"


def render(d, top: int = 10) -> str:
    lines = [
        f"A  {d.a['path']}  ({d.a['scheduler']}, {d.a['source']}, {d.a['workload'].get('name', '?')})",
        f"B  {d.b['path']}  ({d.b['scheduler']}, {d.b['source']}, {d.b['workload'].get('name', '?')})",
        f"mode: {d.mode}: {d.note}",
        "",
        f"  {'':<18} {'A':>12} {'B':>12} {'B - A':>12}",
        _row("makespan us", {"a": d.makespan_a_us, "b": d.makespan_b_us, "delta": d.makespan_delta_us}),
        *(_row(f"total {k}", v) for k, v in d.totals.items()),
        *(_row(k, v) for k, v in d.rates.items()),
        "  time by kind (us)",
        *(_row(f"  {k}", v) for k, v in d.by_kind_us.items()),
        "  mean instruction (us)",
        *(_row(f"  {k}", v) for k, v in d.opcode_mean_us.items()),
        *(_row(f"  {k} count", v, 0) for k, v in d.opcode_count.items()),
    ]
    if d.sms:
        lines += ["", f"SMs that changed most (|d busy| + |d wait| + |d finish|), top {min(top, len(d.sms))}:"]
        for s in d.sms[:top]:
            lines.append(f"  SM {s['sm']:>3}: busy {s['busy_us']['delta']:+.3f}  wait {s['wait_us']['delta']:+.3f}  "
                         f"finish {s['finish_us']['a']:.3f} -> {s['finish_us']['b']:.3f} us")
    if d.ops is not None:
        o = d.ops
        lines += [
            "",
            f"instructions: {o['matched']} matched, {o['only_in_a']} only in A, {o['only_in_b']} only in B, "
            f"{o['moved_sm']} on another SM",
            f"  duration delta us: mean {o['dur_delta_us']['mean']:+.3f}, max |d| {o['dur_delta_us']['max_abs']:.3f}; "
            f"start shift us: mean {o['start_shift_us']['mean']:+.3f}, max |d| {o['start_shift_us']['max_abs']:.3f}",
        ]
        if top:
            lines.append(f"  largest duration changes (top {min(top, len(d.op_changes))}):")
        for c in d.op_changes[:top]:
            s = c.signature
            lines.append(f"    {s['opcode']:<9} seq {s['seq']:<3} kv [{s['kv_start']},{s['kv_end']})".ljust(44)
                         + f" SM {c.a['sm']:>3}->{c.b['sm']:<3} dur {c.a['dur_us']:.3f}->{c.b['dur_us']:.3f} "
                         f"({c.dur_delta_us:+.3f})  start {c.start_shift_us:+.3f}")
    cp = d.critical_path
    lines += ["", f"critical path: {cp['steps_a']} steps in A, {cp['steps_b']} in B; its end moved "
                  f"{cp['end_delta_us']:+.3f} us"]
    if d.critical_time_us:
        lines.append("  its time by part (us)")
        lines += [_row(f"  {k.replace('_', ' ')}", v) for k, v in d.critical_time_us.items()
                  if v["a"] or v["b"]]
    if d.mode == "matched":
        lines.append(f"  {cp['common']} steps in both, {len(cp['only_in_a'])} only in A, {len(cp['only_in_b'])} "
                     f"only in B, {len(cp['reason_changed'])} reached another way")
        for side, label in (("only_in_a", "only in A"), ("only_in_b", "only in B")):
            for s in cp[side][:top]:
                lines.append(f"    {label}: SM {s['sm']} #{s['instr']} {s['opcode']} seq {s['seq']} "
                             f"kv [{s['kv_start']},{s['kv_end']}) {s['start_us']:.3f} -> {s['end_us']:.3f} ({s['reason']})")
        for ch in cp["reason_changed"][:top]:
            a, b = ch["a"], ch["b"]
            lines.append(f"    {a['opcode']} seq {a['seq']} kv [{a['kv_start']},{a['kv_end']}): {a['reason']} -> "
                         f"{b['reason']}")
    return "\n".join(lines)
