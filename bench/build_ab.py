"""Two builds of the megakernel side by side (GPU): this tree's csrc/ ("new") against another source tree
("base", e.g. a copy of the last commit's csrc/) and/or extra preprocessor defines, in one process on one
GPU. For each workload and scheduler both builds run the same instruction tensor with timing compiled out;
each is checked against the reference over several launches, then all are timed interleaved (GPU-only
graph time, bench/NOTES.md v19), so that clock drift falls on both alike.

    python bench/build_ab.py --base DIR/csrc [--base-define NAME ...] [--define NAME ...]
                             [--workload W ...] [--scheduler static ...] [--replays 300] [--rounds 1]
                             [--traces DIR] [--out probe.jsonl]

``--traces DIR`` records one timing-on trace per build (``W__scheduler__base|new.arrow``). One JSON line per
workload, scheduler and round: ``base_gpu``, ``new_gpu`` (median us), ``delta_pct`` (new against base).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path



def main() -> int:
    import torch

    from mlaprof.bench import (_interleaved_graph_us, checked_probe_kernel, emit_probe_record, probe_inputs,
                               record_probe_trace)
    from mlaprof.kernel import CSRC, Build
    from mlaprof.schedule import make_schedule
    from mlaprof.schedule.encode import encode
    from mlaprof.workloads import NAMED

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", default=str(CSRC), help="csrc/ directory of the base build (default: this tree's)")
    ap.add_argument("--base-define", action="append", default=[], help="preprocessor define for the base build")
    ap.add_argument("--define", action="append", default=[], help="preprocessor define for the new build")
    ap.add_argument("--workload", action="append")
    ap.add_argument("--scheduler", action="append")
    ap.add_argument("--replays", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--traces", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    builds = {"base": Build(Path(args.base).resolve(), tuple(args.base_define)), "new": Build(CSRC, tuple(args.define))}
    if builds["base"] == builds["new"]:
        raise SystemExit("build_ab: base and new are the same build; give --base another csrc/ or defines")
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for name in args.workload or list(NAMED):
        w, t, ref, _ = probe_inputs(name)
        for sched in args.scheduler or ["static", "makespan"]:
            enc = encode(make_schedule(w, sms, sched))
            kernels, errs = {}, {}
            for label, build in builds.items():
                kernels[label], errs[label] = checked_probe_kernel(enc, t, ref, build=build)
            traces = {}
            if args.traces:
                for label, build in builds.items():
                    traces[label] = record_probe_trace(args.traces, w, sched, sms, label, build=build)
            for r in range(args.rounds):
                times = _interleaved_graph_us([k.launch for k in kernels.values()], args.replays,
                                              [k.check for k in kernels.values()])
                (_, base), (_, new) = times
                rec = {"workload": name, "scheduler": sched, "round": r, "base_gpu": round(base, 2),
                       "new_gpu": round(new, 2), "delta_pct": round(100 * (new / base - 1), 2),
                       "rel_err_base": errs["base"], "rel_err_new": errs["new"],
                       "base": str(builds["base"].csrc), "base_defines": list(builds["base"].defines),
                       "new_defines": list(builds["new"].defines)}
                if traces:
                    rec.update(trace_us_base=traces["base"], trace_us_new=traces["new"])
                emit_probe_record(rec, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
