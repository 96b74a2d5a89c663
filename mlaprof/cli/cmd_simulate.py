"""`mlaprof simulate`: run a schedule's instruction tensor on the cost model and write a simulated trace."""

from __future__ import annotations

import argparse
import time

from mlaprof import format as fmt
from mlaprof.cli.cmd_run import add_schedule_shape_args, add_workload_args, workload_from_args

EXAMPLE = """example:
  mlaprof simulate --workload seed-representative --scheduler makespan --out traces/sim.arrow
  mlaprof simulate -w b1-65536-q1 -s static --sms 66 --cost cost.json --out b1_66sms.arrow
  mlaprof schedule -w b64-512-q2 -s makespan --out plan.npz && mlaprof simulate --instructions plan.npz --out plan.arrow

The trace has the schema of a measured one (source=simulated, timer_source=cost-model): open it with
`mlaprof info`, `mlaprof dash` or `mlaprof diff` against a GPU trace of the same schedule.
"""


def register(sub) -> None:
    p = sub.add_parser("simulate", help="simulate a schedule on the cost model and write a trace",
                       description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_workload_args(p)
    p.add_argument("--scheduler", "-s", default="makespan", choices=["static", "makespan"])
    p.add_argument("--sms", type=int, default=132, help="SMs to schedule for (default 132)")
    add_schedule_shape_args(p)
    p.add_argument("--sm-rates", action="store_true",
                   help="makespan only: also place queues by the cost model's per-SM rates "
                        "(simulation-only gains; see README)")
    p.add_argument("--instructions", help="simulate a saved .npz/.npy from `mlaprof schedule --out` instead")
    p.add_argument("--cost", help="cost model JSON (from `mlaprof calibrate`); default: the H100 model fitted to "
                                  "measured traces (mlaprof/data/cost_h100.json); 'default': uncalibrated estimates")
    p.add_argument("--stages", type=int, default=fmt.KV_STAGES,
                   help=f"KV pipeline stages per SM (default {fmt.KV_STAGES}, as the kernel has)")
    p.add_argument("--jitter", type=float, default=0.0, help="relative noise on every span duration (e.g. 0.05)")
    p.add_argument("--seed", type=int, default=0, help="seed of the jitter")
    p.add_argument("--out", "-o", required=True, help="trace file to write (.arrow)")


def run(args) -> int:
    from mlaprof import costmodel
    from mlaprof.errors import UserError
    from mlaprof.schedule import make_schedule
    from mlaprof.schedule.encode import encode, load
    from mlaprof.sim import simulate
    from mlaprof.trace.io import write_trace

    if args.jitter < 0 or args.stages < 1 or args.sms < 1:
        raise UserError("--jitter must be >= 0, --stages and --sms >= 1")
    cost = costmodel.load(args.cost)
    if args.instructions:
        enc = load(args.instructions)
        what = f"{args.instructions} ({enc.schedule.scheduler if enc.schedule else 'bare tensor'})"
    else:
        w = workload_from_args(args)
        enc = encode(make_schedule(w, args.sms, args.scheduler, cost, sm_rates=args.sm_rates, merges=args.merges,
                                   steal=args.steal == "on", placement=args.placement))
        what = f"{w.name} / {args.scheduler} on {args.sms} SMs"
    t0 = time.perf_counter()
    trace = simulate(enc, cost, stages=args.stages, jitter=args.jitter, seed=args.seed)
    sim_ms = (time.perf_counter() - t0) * 1e3
    path = write_trace(args.out, trace.table, trace.meta)
    s = enc.schedule
    print(f"simulated {what}: {len(trace)} spans, makespan {trace.makespan_ns / 1e3:.2f} us"
          + (f" (scheduler predicted {s.predicted_makespan_us:.2f} us)" if s else ""))
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB) in {sim_ms:.1f} ms of simulation")
    return 0
