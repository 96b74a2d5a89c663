"""`mlaprof run`: run the instrumented megakernel on the GPU and write a measured trace."""

from __future__ import annotations

import argparse
import statistics

from mlaprof.errors import UserError

EXAMPLE = """example:
  mlaprof run --workload seed-representative --scheduler makespan --repeat 20 --out traces/seed.arrow
  mlaprof run --lens 4641,45118 --s-q 4 --scheduler static --out custom.arrow
  mlaprof run --workload b1-65536-q1 --scheduler static --no-timing     # kernel time only, timing compiled out
"""


def add_workload_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workload", "-w", help="named workload or a .json file {name, lens, s_q}")
    p.add_argument("--lens", help="comma-separated KV lengths of a custom workload")
    p.add_argument("--s-q", type=int, default=1, help="query tokens per sequence for --lens (1..4)")


def add_schedule_shape_args(p: argparse.ArgumentParser) -> None:
    """How the planned schedule is shaped before it runs (``make_schedule``'s merges, steal and placement)."""
    p.add_argument("--merges", default="wide", choices=["wide", "tree"],
                   help="wide (default): deep reduction trees flattened into one level of column-block merges; "
                        "tree: the scheduler's own trees")
    p.add_argument("--steal", default="on", choices=["on", "off"],
                   help="on (default): the partials that split a sequence share their KV tiles on the GPU (steal "
                        "groups); off: each computes its planned range")
    p.add_argument("--placement", default="sim", choices=["sim", "plan"],
                   help="makespan only. sim (default): the merges placed again by simulated time, the ones on the "
                        "critical path on SMs of their own; plan: as the planner placed them")


def workload_from_args(args):
    from mlaprof import workloads

    if args.lens:
        return workloads.from_lens(args.lens, args.s_q)
    if not args.workload:
        raise UserError("give --workload NAME (or a .json file) or --lens L1,L2,... --s-q N")
    return workloads.get(args.workload)


def register(sub) -> None:
    p = sub.add_parser("run", help="run the megakernel on the GPU and record a trace",
                       description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_workload_args(p)
    p.add_argument("--scheduler", "-s", default="makespan", choices=["static", "makespan"])
    add_schedule_shape_args(p)
    p.add_argument("--sms", type=int, default=None, help="SMs to schedule for (default: all of the GPU's)")
    p.add_argument("--repeat", type=int, default=10, help="timed launches; the median one becomes the trace")
    p.add_argument("--no-timing", action="store_true", help="timing compiled out: report kernel time only")
    p.add_argument("--event-capacity", type=int, default=None, help="events per SM in the timing buffer")
    p.add_argument("--in-order-pages", action="store_true", help="in-order block table (default: shuffled)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", "-o", help="trace file to write (.arrow)")


def run(args) -> int:
    from mlaprof import format as fmt
    from mlaprof.measure import measure
    from mlaprof.trace.io import write_trace

    w = workload_from_args(args)
    if not args.no_timing and not args.out:
        raise UserError("--out F.arrow is needed to write the trace (or pass --no-timing for kernel time only)")
    if args.no_timing and args.out:
        raise UserError("--no-timing records no events, so there is no trace to write: drop --out or --no-timing")
    result = measure(w, args.scheduler, num_sms=args.sms, repeat=args.repeat, seed=args.seed,
                     shuffle_pages=not args.in_order_pages, timing=not args.no_timing,
                     event_capacity=args.event_capacity or fmt.DEFAULT_EVENT_CAPACITY, merges=args.merges,
                     steal=args.steal == "on", placement=args.placement)
    times = result.kernel_times_us
    merges = f", {args.merges} merges, steal groups {args.steal}"
    print(f"workload {w.name}: {w.batch} sequences, {w.total_kv} KV tokens, s_q {w.s_q}; scheduler {args.scheduler}{merges}")
    print(f"relative error vs float32 reference: {result.rel_err:.2e}")
    print(f"kernel time (CUDA events, {len(times)} launches): median {statistics.median(times):.1f} us, "
          f"min {min(times):.1f} us; HBM floor {w.hbm_floor_us():.1f} us")
    if result.trace is not None:
        meta = result.trace.meta
        fid = meta.extra["fidelity"]
        write_trace(args.out, result.trace.table, meta)
        print(f"trace: {len(result.trace)} spans, span {fid['trace_span_us']} us of {fid['kernel_time_us']} us "
              f"launch (gap {fid['gap_us']} us), overlaps {fid['overlaps']}, timer step {meta.timer_resolution_ns} ns, "
              f"SM start skew {meta.start_skew_ns} ns -> {args.out}")
    return 0
