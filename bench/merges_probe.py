"""Reduction trees against one level of column-block merges (GPU): the megakernel with timing off, each
scheduler's schedule as planned ("tree") and flattened by ``mlaprof.schedule.widen`` ("wide", per column
block: "wide" as widen chooses it, "wide16" etc. as asked), checked against the reference, then timed
interleaved (GPU-only graph time, bench/NOTES.md v19).

    python bench/merges_probe.py [--workload W ...] [--col-block 16 --col-block 32] [--replays 300]
                                 [--traces DIR] [--out probe.json]

``--traces DIR`` also records one timing-on trace per variant (``W__scheduler__merges.arrow``).
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
    from mlaprof.schedule.widen import widen_merges
    from mlaprof.sim import simulate

    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", action="append")
    ap.add_argument("--col-block", type=int, action="append")
    ap.add_argument("--replays", type=int, default=300)
    ap.add_argument("--traces", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    rows = []
    for name in args.workload or ["seed-representative", "b1-65536-q1"]:
        w, t, ref, _ = probe_inputs(name)
        variants = {}
        for sched in ("static", "makespan"):
            tree = make_schedule(w, sms, sched, merges="tree")
            variants[(sched, "tree")] = tree
            variants[(sched, "wide")] = widen_merges(tree)  # the column block chosen by widen.auto_col_block
            for cb in args.col_block or []:
                variants[(sched, f"wide{cb}")] = widen_merges(tree, col_block=cb)
        kernels, recs = [], []
        for (sched, merges), s in variants.items():
            enc = encode(s)
            mk, err = checked_probe_kernel(enc, t, ref, launches=1)
            sim_us = float(simulate(enc).table.column("end_ns").to_numpy().max()) / 1e3
            kernels.append(mk)
            recs.append({"workload": name, "scheduler": sched, "merges": merges, "rel_err": err,
                         "sim_us": round(sim_us, 2), "instructions": int((enc.instructions[..., 0] != 0).sum())})
            if args.traces and merges in ("tree", "wide"):  # what `mlaprof run --merges` records
                recs[-1]["trace_us"] = record_probe_trace(args.traces, w, sched, sms, merges, merges=merges)
        rows += time_probe_records(recs, kernels, args.replays)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
