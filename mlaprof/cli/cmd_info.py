"""``mlaprof info F.arrow [--json]``: what a trace holds and where its time went (see mlaprof.analysis)."""

from __future__ import annotations

import argparse
import json

import numpy as np

EPILOG = """\
example:
  mlaprof simulate --workload seed-representative --scheduler makespan --out traces/sim.arrow
  mlaprof info traces/sim.arrow
  mlaprof info traces/sim.arrow --json | python -m json.tool | head

times are µs from the kernel start; busy/wait/idle per SM are defined in `pydoc mlaprof.analysis`.
"""


def register(sub) -> None:
    p = sub.add_parser(
        "info", help="summarise a trace: metadata, makespan, time by kind, per-SM time, critical path",
        description="Summarise one trace: metadata, makespan, time by kind and opcode, per-SM busy/wait/idle, "
                    "load imbalance, achieved TFLOPS and GB/s, and the critical path through the semaphores.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("trace", help="an Arrow trace file written by mlaprof (simulate, run)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--per-sm", action="store_true", help="also print one line per SM")
    p.add_argument("--steps", type=int, default=12, metavar="N",
                   help="critical-path steps to print, the last N (default 12; 0 for all)")


def run(args) -> int:
    from mlaprof.analysis import analyze
    from mlaprof.trace.io import read_trace

    trace = read_trace(args.trace)
    a = analyze(trace)
    if args.json:
        out = a.to_json()
        out["path"] = str(trace.path)
        out["schema_version"] = trace.meta.schema_version
        out["run_id"] = trace.meta.run_id
        print(json.dumps(out))
        return 0
    print(render(trace, a, per_sm=args.per_sm, steps=args.steps))
    return 0


def _f(x, unit="", digits=2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}{unit}"


def render(trace, a, per_sm: bool = False, steps: int = 12) -> str:
    m = trace.meta
    w = m.workload if isinstance(m.workload, dict) else {}
    lens = w.get("lens", [])
    lines = [
        f"trace       {trace.path}  ({m.source}, schema {m.schema_version}, {a.num_spans} spans, "
        f"{a.num_instructions} instructions)",
        f"workload    {w.get('name', '?')}: {len(lens)} sequences, {sum(lens)} KV tokens, s_q {w.get('s_q', '?')}",
        f"scheduler   {m.scheduler} {json.dumps(m.scheduler_params) if m.scheduler_params else ''}".rstrip(),
        f"gpu         {m.gpu_name or 'n/a'}, {m.sm_count} SMs, timer {m.timer_source or 'n/a'}"
        + (f", kernel time {m.kernel_time_us:.2f} us" if m.kernel_time_us else ""),
        f"makespan    {a.makespan_us:.2f} us   (HBM floor {_f(a.hbm_floor_us, ' us')})",
        f"achieved    {_f(a.tflops)} TFLOPS, {_f(a.gbps, digits=0)} GB/s over the makespan"
        + (f"; {_f(a.tflops_kernel)} TFLOPS, {_f(a.gbps_kernel, digits=0)} GB/s over the kernel time"
           if a.kernel_time_us else ""),
        "",
        "time by kind (us, summed over SMs and roles)",
        "  " + "  ".join(f"{k} {v:.2f}" for k, v in a.by_kind_us.items()),
        "",
        f"  {'opcode':<10} {'count':>6} {'total us':>10} {'mean':>8} {'p50':>8} {'p90':>8} {'max':>8}",
    ]
    for name, s in a.op_stats.items():
        lines.append(f"  {name:<10} {s.count:>6} {s.total_us:>10.2f} {s.mean_us:>8.3f} {s.p50_us:>8.3f} "
                     f"{s.p90_us:>8.3f} {s.max_us:>8.3f}")
    n = max(len(a.sm_busy_us), 1)
    lines += [
        "",
        f"SMs         busy {a.busy_us / n:.2f} / wait {a.wait_us / n:.2f} / idle {a.idle_us / n:.2f} us per SM "
        f"(mean); finish min {a.sm_finish_us.min():.2f} max {a.sm_finish_us.max():.2f} us; "
        f"load imbalance {a.load_imbalance:.3f}",
    ]
    if per_sm:
        lines.append(f"  {'sm':>4} {'instr':>5} {'busy':>9} {'wait':>9} {'idle':>9} {'finish':>9}")
        for r in a.sm_table():
            lines.append(f"  {r['sm']:>4} {r['instructions']:>5} {r['busy_us']:>9.3f} {r['wait_us']:>9.3f} "
                         f"{r['idle_us']:>9.3f} {r['finish_us']:>9.3f}")
    if a.kv_stream:
        k = a.kv_stream
        lines += ["", f"KV stream   {k['tiles']} tiles on {k['sms']} SMs, {k['start_us']:.2f} -> {k['end_us']:.2f} us "
                      f"({_f(k['mean_tbps'])} TB/s over it); {a.makespan_us - k['end_us']:.2f} us more to the makespan"]
        if k["tile_interval_us"] is not None:
            lines.append(f"  middle: one tile per SM every {k['tile_interval_us']:.3f} us (median), "
                         f"{k['streaming_sms']:.0f} SMs loading -> {_f(k['steady_tbps'])} TB/s")
    if a.steal_groups:
        g = a.steal_groups
        spread = np.array([x["end_spread_us"] for x in g])
        widest = g[int(spread.argmax())]
        lines += [
            "",
            f"steal groups {len(g)} ({sum(x['members'] for x in g)} partials share their sequences' tiles): tiles per "
            f"member {min(x['tiles_min'] for x in g)}..{max(x['tiles_max'] for x in g)}; members' last tiles end "
            f"within {float(np.median(spread)):.2f} us (median group), {widest['end_spread_us']:.2f} us at most "
            f"(seq {widest['seq']}, {widest['members']} members)",
        ]
    cs = a.critical_summary
    lines += [
        "",
        f"critical path: {cs['steps']} steps on {cs['sms']} SMs, {cs['waits']} semaphore waits "
        f"({cs['wait_us']:.2f} us waiting), {cs['start_us']:.2f} -> {cs['end_us']:.2f} us",
    ]
    if a.critical_path:
        parts = [(k, v) for k, v in a.critical_time_us.items() if abs(v) >= 0.0005]
        lines.append("  its time: " + ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in parts)
                     + f" (us, adding up to {sum(a.critical_time_us.values()):.2f})")
    shown = a.critical_path if steps <= 0 else a.critical_path[-steps:]
    if len(shown) < len(a.critical_path):
        lines.append(f"  ... {len(a.critical_path) - len(shown)} earlier steps (--steps 0 shows all)")
    for s in shown:
        what = f"{s.opcode} seq {s.seq} kv [{s.kv_start},{s.kv_end})"
        how = s.reason
        if s.waited_for:
            wf = s.waited_for
            how = (f"wait {wf['wait_us']:.2f} us for task {wf['task']} (SM {wf['sm']} #{wf['instr']} "
                   f"{wf['opcode']} seq {wf['seq']} kv [{wf['kv_start']},{wf['kv_end']}))")
        lines.append(f"  SM {s.sm:>3} #{s.instr:<3} task {s.task:<5} {what:<34} {s.start_us:>9.2f} -> "
                     f"{s.end_us:>9.2f}  {how}")
    for note in a.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)
