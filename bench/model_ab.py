"""Two cost models' schedules side by side (GPU): a refitted model changes what the schedulers plan, and the
simulator's word is not enough to ship it (bench/NOTES.md v22e, v23). For each workload and scheduler, the
schedule planned on model A and on model B (the packaged one by default), each checked against the
reference, then timed interleaved (GPU-only graph time, bench/NOTES.md v19).

    python bench/model_ab.py --a OTHER.json [--b NEW.json] [--workload W ...] [--scheduler static ...]
                             [--replays 300] [--rounds 2] [--out probe.jsonl]

One JSON line per workload, scheduler and round: ``a_gpu``, ``b_gpu`` (median us), ``delta_pct`` (B against
A), each schedule's predicted makespan and whether the two schedules are the same.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main() -> int:
    import torch

    from mlaprof.bench import _interleaved_graph_us, checked_probe_kernel, emit_probe_record, probe_inputs
    from mlaprof.costmodel import load
    from mlaprof.schedule import make_schedule
    from mlaprof.schedule.encode import encode
    from mlaprof.workloads import NAMED

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="cost model JSON of the A schedules")
    ap.add_argument("--b", default=None, help="cost model JSON of the B schedules (default: the packaged model)")
    ap.add_argument("--workload", action="append")
    ap.add_argument("--scheduler", action="append")
    ap.add_argument("--replays", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    models = {"a": load(args.a), "b": load(args.b)}
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for name in args.workload or list(NAMED):
        w, t, ref, _ = probe_inputs(name)
        for sched in args.scheduler or ["static", "makespan"]:
            plans = {k: make_schedule(w, sms, sched, cost=m) for k, m in models.items()}
            encs = {k: encode(s) for k, s in plans.items()}
            same = bool(np.array_equal(encs["a"].instructions, encs["b"].instructions))
            kernels, errs = {}, {}
            for k, enc in encs.items():
                kernels[k], errs[k] = checked_probe_kernel(enc, t, ref)
            for r in range(args.rounds):
                (_, a), (_, b) = _interleaved_graph_us([k.launch for k in kernels.values()], args.replays,
                                                       [k.check for k in kernels.values()])
                emit_probe_record({"workload": name, "scheduler": sched, "round": r, "a_gpu": round(a, 2),
                                   "b_gpu": round(b, 2), "delta_pct": round(100 * (b / a - 1), 2), "same_schedule": same,
                                   "predicted_a_us": round(plans["a"].predicted_makespan_us, 2),
                                   "predicted_b_us": round(plans["b"].predicted_makespan_us, 2),
                                   "rel_err_a": errs["a"], "rel_err_b": errs["b"], "a": args.a, "b": args.b or "packaged"},
                                  args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
