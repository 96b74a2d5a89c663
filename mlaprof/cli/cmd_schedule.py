"""`mlaprof schedule`: plan a workload with one or both schedulers; print what each SM runs and the makespan."""

from __future__ import annotations

import argparse
import statistics

from mlaprof.cli.cmd_run import add_schedule_shape_args, add_workload_args, workload_from_args

EXAMPLE = """example:
  mlaprof schedule --workload seed-representative                 # both schedulers side by side
  mlaprof schedule -w b1-65536-q1 --scheduler makespan --sms 132 --per-sm
  mlaprof schedule --lens 4641,45118 --s-q 4 --scheduler static --out plan.npz

--out F.npy writes the int32 instruction tensor [SMs, max instructions, 24] the kernel reads;
F.npz adds the schedule (tasks, queues, workload) so `mlaprof simulate --instructions F.npz` can replay it.
"predicted" is the schedulers' task-level timeline; "simulated" runs the tensor through mlaprof.sim.
"""


def register(sub) -> None:
    p = sub.add_parser("schedule", help="plan a workload (static and/or makespan) and print the result",
                       description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_workload_args(p)
    p.add_argument("--scheduler", "-s", choices=["static", "makespan"], help="one scheduler (default: both)")
    p.add_argument("--sms", type=int, default=132, help="SMs to schedule for (default 132, an H100 SXM)")
    add_schedule_shape_args(p)
    p.add_argument("--sm-rates", action="store_true",
                   help="makespan only: also place queues by the cost model's per-SM rates "
                        "(simulation-only gains; see README)")
    p.add_argument("--cost", help="cost model JSON (from `mlaprof calibrate`); default: the H100 model fitted to "
                                  "measured traces (mlaprof/data/cost_h100.json); 'default': uncalibrated estimates")
    p.add_argument("--per-sm", action="store_true", help="list every SM's instructions")
    p.add_argument("--out", "-o", help="write the instruction tensor: .npy (tensor) or .npz (tensor + schedule)")


def describe(t, s_q: int) -> str:
    if t.op.name == "PARTIAL":
        steal = f"~g{t.steal}" if t.steal >= 0 else ""  # shares its tiles with steal group g's other members
        return f"P s{t.seq}[{t.kv_start}:{t.kv_end}]{steal}{'*' if t.final else ''}"
    token = f"q{t.q_start}" if t.q_count < s_q else ""  # a per-query-token reduction
    cols = f"c{t.col_start}+{t.col_count}" if t.counted else ""  # a column-block merge
    return f"R s{t.seq}{token}{cols}({len(t.inputs)}){'*' if t.final else ''}"


def summary(schedule, encoded, simulated_us: float) -> dict:
    counts = [len(q) for q in schedule.queues]
    ops = [t.op.name for t in schedule.tasks]
    return {
        "partials": ops.count("PARTIAL"),
        "reductions": ops.count("REDUCTION"),
        "tasks per SM (min/median/max)": f"{min(counts)}/{statistics.median(counts):g}/{max(counts)}",
        "idle SMs": sum(c == 0 for c in counts),
        "scratch slots / semaphores": f"{encoded.num_slots}/{encoded.num_sems}",
        "predicted makespan (us)": f"{schedule.predicted_makespan_us:.2f}",
        "simulated makespan (us)": f"{simulated_us:.2f}",
        "scheduler run time (ms)": f"{schedule.compute_ms:.2f}",
    }


def run(args) -> int:
    from mlaprof import costmodel
    from mlaprof.errors import UserError
    from mlaprof.schedule import SCHEDULERS, make_schedule
    from mlaprof.schedule.encode import encode, save
    from mlaprof.sim import simulate

    w = workload_from_args(args)
    if args.sms < 1:
        raise UserError(f"--sms must be >= 1, got {args.sms}")
    if args.out and not args.scheduler:
        raise UserError("--out saves one schedule: choose it with --scheduler static|makespan")
    cost = costmodel.load(args.cost)
    names = [args.scheduler] if args.scheduler else list(SCHEDULERS)
    results = {}
    for name in names:
        s = make_schedule(w, args.sms, name, cost, sm_rates=args.sm_rates, merges=args.merges,
                          steal=args.steal == "on", placement=args.placement)
        enc = encode(s)
        results[name] = (s, enc, simulate(enc, cost).makespan_ns / 1e3)

    print(f"workload {w.name}: {w.batch} sequences, {w.total_kv} KV tokens, s_q {w.s_q}; {args.sms} SMs; "
          f"HBM floor {w.hbm_floor_us():.1f} us")
    rows = {name: summary(*r) for name, r in results.items()}
    keys = list(next(iter(rows.values())))
    width = max(len(k) for k in keys)
    print(f"{'':{width}}  " + "  ".join(f"{n:>12}" for n in names))
    for k in keys:
        print(f"{k:{width}}  " + "  ".join(f"{rows[n][k]:>12}" for n in names))
    if len(names) == 2:
        a, b = (results[n][2] for n in names)
        print(f"makespan vs static (simulated): {100 * (b / a - 1):+.1f}%")
    for name in names:
        s = results[name][0]
        if args.per_sm:
            print(f"\n{name}: instructions per SM (P = partial seq[kv range], R = reduction seq(fan-in), "
                  f"qN = of query token N only, cA+B = B columns from A, * = final)")
            for sm, q in enumerate(s.queues):
                print(f"  SM {sm:3d}: " + ", ".join(describe(s.tasks[t], w.s_q) for t in q))
        if s.params:
            print(f"{name} parameters: " + ", ".join(f"{k}={v}" for k, v in s.params.items() if k != "fillers"))
    if args.out:
        path = save(results[args.scheduler][1], args.out)
        enc = results[args.scheduler][1]
        print(f"wrote {path}: int32 {list(enc.instructions.shape)}, {enc.num_slots} scratch slots, "
              f"{enc.num_sems} semaphores")
    return 0
