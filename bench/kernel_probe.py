"""Quick look at where the megakernel's time goes, per named workload (GPU): graph-replay time with timing
off and on, and from one measured trace the mean span per kind and opcode. Used between optimisation steps
(bench/NOTES.md); `mlaprof bench` is the full side-by-side benchmark.

    python bench/kernel_probe.py [--scheduler static] [--out probe.json]
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np


def main() -> int:
    import torch

    from mlaprof.bench import _median_graph_us
    from mlaprof.kernel import Megakernel
    from mlaprof.reference import mla_decode_reference, relative_error
    from mlaprof.schedule import make_schedule
    from mlaprof.schedule.encode import encode
    from mlaprof.timing import decode_events
    from mlaprof.workloads import NAMED, build_tensors

    ap = argparse.ArgumentParser()
    ap.add_argument("--scheduler", default="static")
    ap.add_argument("--workload", action="append")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    rows = []
    for name in args.workload or list(NAMED):
        w = NAMED[name]
        t = build_tensors(w, "cuda", seed=0, shuffle_pages=True)
        enc = encode(make_schedule(w, sms, args.scheduler))
        ins = torch.from_numpy(np.ascontiguousarray(enc.instructions))
        ref, _ = mla_decode_reference(t)
        rec = {"workload": name, "scheduler": args.scheduler, "floor_us": round(w.hbm_floor_us(), 1)}
        for timing in (False, True):
            mk = Megakernel(ins, t, enc.num_slots, enc.num_sems, timing=timing)
            mk.out.fill_(float("nan"))
            mk.run()
            rec[f"rel_err_{timing}"] = relative_error(mk.out.float(), ref)
            us, us_gpu = _median_graph_us(mk.launch, 100)
            rec[f"us_graph_timing_{'on' if timing else 'off'}"] = round(us, 2)
            rec[f"us_graph_gpu_timing_{'on' if timing else 'off'}"] = round(us_gpu, 2)
            if timing:
                mk.run()
                ev, cnt = mk.timing_buffers()
                table, _ = decode_events(ev, cnt, enc.instructions)
                d = table.to_pydict()
                kind, op = np.array(d["kind"]), np.array(d["opcode"])
                dur = np.array(d["end_ns"]) - np.array(d["start_ns"])
                rec["trace_span_us"] = round((max(d["end_ns"]) - min(d["start_ns"])) / 1e3, 2)
                for k in ("setup", "load", "compute", "wait", "store", "instruction"):
                    for o in ("partial", "reduction"):
                        m = (kind == k) & (op == o)
                        if m.any():
                            rec[f"{k}_{o}_mean_ns"] = round(float(dur[m].mean()), 1)
                            rec[f"{k}_{o}_count"] = int(m.sum())
                sm = np.array(d["sm"])
                ends = [max(np.array(d["end_ns"])[sm == s]) for s in np.unique(sm)]
                rec["sm_end_us_min_median_max"] = [round(float(x) / 1e3, 2) for x in (min(ends), np.median(ends), max(ends))]
        rows.append(rec)
        print(json.dumps(rec), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
