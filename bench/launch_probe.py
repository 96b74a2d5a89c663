"""Where the time outside the kernel's trace goes (GPU): graph-replay time of the megakernel measured several
ways, interleaved, per named workload (timing compiled out, static schedule).

    python bench/launch_probe.py [--workload W ...] [--replays 200] [--out launch_probe.json]

- ``reset_then_kernel``: a graph of a status reset (torch's fill kernel) and the megakernel, one replay
  between two events: what ``mlaprof bench`` timed before the launch stopped resetting the status.
- ``kernel``: a graph of the megakernel alone, one replay between two events (the host's graph-launch call
  runs while the start event is already recorded, so its latency can leak into the time).
- ``kernel_covered``: as ``kernel``, with the GPU kept busy (a sleep kernel) while the host records the start
  event and launches the graph, so the events bracket the GPU's work on the graph alone.
- ``kernel_x20``: a graph of 20 back-to-back megakernel launches, one replay, divided by 20.
- ``fill_covered``: the status reset alone, covered: what one tiny kernel costs in a graph.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import statistics
import sys
import threading
import time

import numpy as np

BACK_TO_BACK = 20


def main() -> int:
    import torch

    from mlaprof.bench import _capture, _replay_us
    from mlaprof.kernel import Megakernel
    from mlaprof.reference import mla_decode_reference, relative_error
    from mlaprof.schedule import make_schedule
    from mlaprof.schedule.encode import encode
    from mlaprof.workloads import NAMED, build_tensors

    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", action="append")
    ap.add_argument("--scheduler", default="static")
    ap.add_argument("--replays", type=int, default=200)
    ap.add_argument("--out", default=None)
    ap.add_argument("--watchdog", type=float, default=0,
                    help="seconds a workload may take before the Python stacks and the kernel's status and "
                         "semaphores (read on a side stream) are printed to stderr")
    args = ap.parse_args()
    sms = torch.cuda.get_device_properties(0).multi_processor_count

    t_start = time.time()

    def log(msg: str) -> None:  # progress on stderr: a stalled run shows its last step
        print(f"[{time.time() - t_start:7.2f} s] {msg}", file=sys.stderr, flush=True)

    rows = []
    for name in args.workload or list(NAMED):
        w = NAMED[name]
        t = build_tensors(w, "cuda", seed=0, shuffle_pages=True)
        enc = encode(make_schedule(w, sms, args.scheduler))
        ins = torch.from_numpy(np.ascontiguousarray(enc.instructions))
        mk = Megakernel(ins, t, enc.num_slots, enc.num_sems, timing=False)
        done = threading.Event()
        if args.watchdog:
            threading.Thread(target=_watchdog, args=(mk, name, args.watchdog, done), daemon=True).start()
        log(f"{name}: tensors, schedule and kernel ready")
        ref, _ = mla_decode_reference(t)
        torch.cuda.synchronize()
        log(f"{name}: reference done")
        mk.out.fill_(float("nan"))
        mk.run()
        err = relative_error(mk.out.float(), ref)
        log(f"{name}: first launch checked")

        def reset_then_kernel():
            mk.status.zero_()
            mk.launch()

        def many():
            for _ in range(BACK_TO_BACK):
                mk.launch()

        variants = {
            "reset_then_kernel": (_capture(reset_then_kernel), False, 1),
            "kernel": (_capture(mk.launch), False, 1),
            "kernel_covered": (_capture(mk.launch), True, 1),
            "kernel_x20": (_capture(many), True, BACK_TO_BACK),
            "fill_covered": (_capture(lambda: mk.status.zero_()), True, 1),
        }
        mk.check()
        log(f"{name}: graphs captured")
        times = {k: [] for k in variants}
        rounds = 10
        for r in range(rounds):
            keys = list(variants)
            keys = keys[r % len(keys):] + keys[: r % len(keys)]
            for k in keys:
                g, cover, per = variants[k]
                times[k] += [_replay_us(g, cover) / per for _ in range(max(1, args.replays // rounds))]
            mk.check()
        rec = {"workload": name, "scheduler": args.scheduler, "rel_err": err}
        rec.update({f"{k}_us": round(statistics.median(v), 2) for k, v in times.items()})
        done.set()
        rows.append(rec)
        print(json.dumps(rec), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


def _watchdog(mk, name: str, after_s: float, done: threading.Event) -> None:
    """Reports a stalled workload: where Python is, and what the kernel's status and semaphores hold now (a
    copy on its own stream runs beside a kernel that never ends)."""
    import torch

    if done.wait(after_s):
        return
    print(f"WATCHDOG {name}: not done after {after_s} s; Python stacks:", file=sys.stderr, flush=True)
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    side = torch.cuda.Stream(device=mk.status.device)
    with torch.cuda.stream(side):
        status = mk.status.to("cpu", non_blocking=True)
        sems = mk.sems.to("cpu", non_blocking=True)
        ev = torch.cuda.Event()
        ev.record(side)
    t0 = time.time()
    while not ev.query() and time.time() - t0 < 5:
        time.sleep(0.05)
    if not ev.query():
        print("WATCHDOG: the side-stream copy did not finish within 5 s either", file=sys.stderr, flush=True)
        return
    nz = sems.nonzero().flatten().tolist()
    print(f"WATCHDOG {name}: status {status.tolist()}; {len(nz)} of {sems.numel()} semaphores set: "
          f"{[(i, int(sems[i])) for i in nz[:40]]}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    sys.exit(main())
