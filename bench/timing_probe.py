"""What timing costs (GPU): the megakernel with timing compiled out and with timing on, same schedule, same
process, interleaved, GPU-only graph time (a sleep covers the host's launch call: bench/NOTES.md v19).

    python bench/timing_probe.py [--workload W ...] [--scheduler static] [--replays 300] [--rounds 2]
                                 [--build NAME] [--out probe.jsonl]

Before timing, each workload's outputs with timing on and off are compared bit for bit (recording must not
change what is computed; to 3e-3 where steal groups let launches split tiles differently) and the trace's event counts are checked against the buffer's capacity. One JSON
line per workload and round goes to stdout (and is appended to ``--out``): ``off_gpu``, ``on_gpu`` (median
us) and ``overhead_pct``. ``--build`` labels the lines, for A/B runs of two source trees.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main() -> int:
    import torch

    from mlaprof.bench import _interleaved_graph_us, emit_probe_record
    from mlaprof.kernel import Megakernel
    from mlaprof.schedule import make_schedule
    from mlaprof.schedule.encode import encode
    from mlaprof.timing import decode_events
    from mlaprof.workloads import NAMED, build_tensors

    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", action="append")
    ap.add_argument("--scheduler", default="static")
    ap.add_argument("--replays", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--build", default="this tree")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    kernels = {}
    for name in args.workload or list(NAMED):
        w = NAMED[name]
        t = build_tensors(w, "cuda", seed=0, shuffle_pages=True)
        sched = make_schedule(w, sms, args.scheduler)
        enc = encode(sched)
        ins = torch.from_numpy(np.ascontiguousarray(enc.instructions))
        off = Megakernel(ins, t, enc.num_slots, enc.num_sems, timing=False)
        on = Megakernel(ins, t, enc.num_slots, enc.num_sems, timing=True)
        off.run()
        on.run()
        # bit for bit, unless steal groups hand tiles out in launch order (then the last bits may differ)
        same = torch.equal(off.out, on.out) if not sched.params.get("steal") else \
            float((off.out.float() - on.out.float()).norm() / on.out.float().norm()) < 3e-3
        if not same:
            raise SystemExit(f"{name}: outputs differ between timing off and on")
        events, counts = on.timing_buffers()
        if counts.max() > on.event_capacity:
            raise SystemExit(f"{name}: {counts.max()} events on one SM, capacity {on.event_capacity}")
        valid = np.arange(events.shape[1])[None, :] < np.minimum(counts, events.shape[1])[:, None]
        ev = events[valid]
        if not ((ev[:, 2] > 0) & (ev[:, 3] >= ev[:, 2])).all():
            raise SystemExit(f"{name}: {int(((ev[:, 2] <= 0) | (ev[:, 3] < ev[:, 2])).sum())} events unwritten "
                             "or ending before they start")
        table, _ = decode_events(events, counts, enc.instructions)  # raises on a malformed event
        kernels[name] = (off, on, table.num_rows)
    for r in range(args.rounds):
        for name, (off, on, events) in kernels.items():
            (_, off_us), (_, on_us) = _interleaved_graph_us([off.launch, on.launch], args.replays,
                                                            [off.check, on.check])
            rec = {"build": args.build, "round": r, "workload": name, "scheduler": args.scheduler,
                   "events": events, "off_gpu": round(off_us, 2), "on_gpu": round(on_us, 2),
                   "overhead_pct": round(100 * (on_us / off_us - 1), 2)}
            emit_probe_record(rec, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
