"""Steal groups against fixed ranges (GPU): the megakernel with timing off, each scheduler's default schedule
with its split sequences' partials in steal groups ("steal", ``mlaprof.schedule.steal``) and without ("fixed"),
checked against the reference (several launches: which SM computes which tile changes between them), then
timed interleaved (GPU-only graph time, bench/NOTES.md v19). The tile counters must be back at zero after
every launch.

    python bench/steal_probe.py [--workload W ...] [--replays 300] [--traces DIR] [--out probe.json]

``--traces DIR`` also records one timing-on trace per variant (``W__scheduler__steal|fixed.arrow``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    import torch

    from mlaprof.bench import checked_probe_kernel, probe_inputs, record_probe_trace, time_probe_records
    from mlaprof.reference import relative_error
    from mlaprof.schedule import make_schedule
    from mlaprof.schedule.encode import encode
    from mlaprof.workloads import NAMED

    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", action="append")
    ap.add_argument("--replays", type=int, default=300)
    ap.add_argument("--traces", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    rows = []
    for name in args.workload or list(NAMED):
        w, t, ref, ref_lse = probe_inputs(name)
        kernels, recs = [], []
        for sched in ("static", "makespan"):
            for steal in (True, False):
                s = make_schedule(w, sms, sched, steal=steal)
                mk, worst = checked_probe_kernel(encode(s), t, ref)
                kernels.append(mk)
                recs.append({"workload": name, "scheduler": sched, "tiles": "steal" if steal else "fixed",
                             "groups": s.params.get("steal", 0), "rel_err_max": worst,
                             "lse_rel_err": relative_error(mk.out_lse, ref_lse)})
                if args.traces:
                    recs[-1]["trace_us"] = record_probe_trace(args.traces, w, sched, sms, recs[-1]["tiles"],
                                                              steal=steal)
        rows += time_probe_records(recs, kernels, args.replays)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
