"""Merge placement by simulated time against the planner's (GPU): the megakernel with timing off, the makespan
scheduler's schedule with its merges placed again (``mlaprof.schedule.placement``, "sim") and as planned
("plan"), and the static schedule beside them, each checked against the reference over several launches,
then timed interleaved (GPU-only graph time, bench/NOTES.md v19).

    python bench/placement_probe.py [--workload W ...] [--variant SCHED:PLACEMENT ...] [--replays 300]
                                    [--rounds 2] [--traces DIR] [--out probe.json]

``--variant`` (repeatable; default the three above) picks the schedules, e.g. ``makespan:sim``.

``--traces DIR`` also records one timing-on trace per variant (``W__scheduler__sim|plan.arrow``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    import torch

    from mlaprof.bench import checked_probe_kernel, probe_inputs, record_probe_trace, time_probe_records
    from mlaprof.schedule import make_schedule
    from mlaprof.schedule.encode import encode

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workload", action="append")
    ap.add_argument("--variant", action="append", help="SCHEDULER:PLACEMENT, e.g. makespan:plan (repeatable)")
    ap.add_argument("--replays", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--traces", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    rows = []
    for name in args.workload or ["seed-representative", "b64-rand256to1024-q4"]:
        w, t, ref, _ = probe_inputs(name)
        kernels, recs = [], []
        for variant in args.variant or ["static:plan", "makespan:plan", "makespan:sim"]:
            sched, placement = variant.split(":")
            s = make_schedule(w, sms, sched, placement=placement)
            mk, worst = checked_probe_kernel(encode(s), t, ref)
            kernels.append(mk)
            recs.append({"workload": name, "scheduler": sched, "placement": placement, "rel_err_max": worst,
                         "predicted_us": round(s.predicted_makespan_us, 2),
                         "placed_merges": s.params.get("placed_merges", 0)})
            if args.traces:
                recs[-1]["trace_us"] = record_probe_trace(args.traces, w, sched, sms, placement, placement=placement)
        for r in range(args.rounds):
            rows += time_probe_records([{**rec, "round": r} for rec in recs], kernels, args.replays)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
