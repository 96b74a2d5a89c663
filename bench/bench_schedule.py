"""CPU benchmark of the host side: scheduler run time, simulation time, and a 1M-span trace written and read.

    python bench/bench_schedule.py [--repeat 21] [--out bench/results]

Writes schedule_cpu.json and schedule_cpu.md.  Every scheduler call recomputes from scratch (no caches);
times are medians (and minima) of ``--repeat`` warm calls in this process (one untimed call first: the
native core's loading and the cost model's per-SM pattern happen once per process).  The schedulers run on
their native core (``mlaprof/schedule/native``) where it could be built, and are timed once more in Python
(``native.python_only()``, the fallback: the same schedules).  The simulated makespans compare the two
schedulers on the calibrated H100 cost model the tools use by default (``mlaprof/data/cost_h100.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mlaprof import format as fmt
from mlaprof.schedule import make_schedule, native
from mlaprof.schedule.encode import encode
from mlaprof.sim import simulate
from mlaprof.trace.io import read_trace, write_trace
from mlaprof.workloads import NAMED, Workload

NUM_SMS = 132


def timed(fn, repeat: int, warm: bool = False) -> tuple[float, float, object]:
    times, out = [], fn() if warm else None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times), out


def bench_workloads(repeat: int) -> list[dict]:
    rows = []
    for w in NAMED.values():
        row = {"workload": w.name}
        for scheduler in ("static", "makespan"):
            med, best, s = timed(lambda: make_schedule(w, NUM_SMS, scheduler), repeat, warm=True)
            # the planner alone: its trees, before widen.py flattens the deep ones (the default above)
            tree_med, tree_best, _ = timed(lambda: make_schedule(w, NUM_SMS, scheduler, merges="tree"), repeat, warm=True)
            with native.python_only():
                py_med, py_best, _ = timed(lambda: make_schedule(w, NUM_SMS, scheduler), repeat, warm=True)
            enc = encode(s)
            sim_med, sim_best, trace = timed(lambda: simulate(enc), max(5, repeat // 3))
            row[scheduler] = {
                "schedule_ms_median": round(med, 3), "schedule_ms_min": round(best, 3),
                "trees_ms_median": round(tree_med, 3), "trees_ms_min": round(tree_best, 3),
                "python_schedule_ms_median": round(py_med, 3), "python_schedule_ms_min": round(py_best, 3),
                "sim_ms_median": round(sim_med, 3), "sim_ms_min": round(sim_best, 3),
                "simulated_makespan_us": round(trace.makespan_ns / 1e3, 3),
                "predicted_makespan_us": round(s.predicted_makespan_us, 3),
                "partials": sum(t.op.name == "PARTIAL" for t in s.tasks),
                "reductions": sum(t.op.name == "REDUCTION" for t in s.tasks),
                "spans": len(trace), "params": s.params,
            }
        a, b = row["static"]["simulated_makespan_us"], row["makespan"]["simulated_makespan_us"]
        row["makespan_vs_static_pct"] = round(100 * (b / a - 1), 2)
        rows.append(row)
        st, ms = row["static"], row["makespan"]
        print(f"{w.name:24s} static {st['schedule_ms_median']:7.3f} ms  makespan {ms['schedule_ms_median']:7.3f} ms  "
              f"(trees only {st['trees_ms_median']:.2f} / {ms['trees_ms_median']:.2f})  "
              f"(Python {st['python_schedule_ms_median']:.2f} / {ms['python_schedule_ms_median']:.2f})  "
              f"sim {ms['sim_ms_median']:6.1f} ms  makespan {a:.2f} -> {b:.2f} us "
              f"({row['makespan_vs_static_pct']:+.1f}%)", flush=True)
    return rows


def bench_big_trace(repeat: int) -> dict:
    """A real simulated trace of about a million spans (132 whole sequences of ~3,800 KV tiles), written and
    read.  Spans scale with tiles, so the length follows the kernel's tile size."""
    length = 122_000 * fmt.KV_TILE_TOKENS // 32
    w = Workload(f"b132-{length // 1000}k-q4", (length,) * NUM_SMS, 4)
    t0 = time.perf_counter()
    trace = simulate(encode(make_schedule(w, NUM_SMS, "static")))
    sim_s = time.perf_counter() - t0
    out = {"spans": len(trace), "simulate_s": round(sim_s, 3)}
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "big.arrow"
        writes, reads, scans = [], [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            write_trace(path, trace.table, trace.meta)
            writes.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            back = read_trace(path)  # memory-mapped, validated
            reads.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            total = sum(int(np.asarray(back.table.column(c).combine_chunks().to_numpy(zero_copy_only=False)).size)
                        for c in ("sm", "start_ns", "end_ns", "instr", "task", "aux"))
            kinds = back.codes("kind", ["instruction", "setup", "load", "compute", "wait", "store"])
            scans.append(time.perf_counter() - t0)
            assert total == 6 * len(trace) and len(kinds) == len(trace)
        out.update(
            file_mb=round(path.stat().st_size / 1e6, 2),
            write_s_median=round(statistics.median(writes), 3),
            read_s_median=round(statistics.median(reads), 3),
            column_scan_s_median=round(statistics.median(scans), 3),
        )
        out["write_plus_read_s"] = round(out["write_s_median"] + out["read_s_median"] + out["column_scan_s_median"], 3)
    print(f"1M-span trace: {out}", flush=True)
    return out


def markdown(res: dict) -> str:
    lines = [
        "# Host-side benchmark: schedulers, simulator, trace I/O (CPU)",
        "",
        f"Machine: {res['machine']['cpus']} CPUs, load average {res['machine']['load_avg']} at start "
        f"(shared with other jobs), Python {res['machine']['python']}.  {res['repeat']} warm calls per median; "
        f"{NUM_SMS} SMs; the calibrated H100 cost model (`mlaprof/data/cost_h100.json`); schedulers on the "
        f"{res['scheduler_core']} core.  Produced by `python bench/bench_schedule.py`.",
        "",
        "| workload | static ms, median (min) | makespan ms, median (min) | Python fallback ms, median (static / makespan) | sim ms (static / makespan) | static us | makespan us | change | reductions (makespan shape) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in res["workloads"]:
        s, m = r["static"], r["makespan"]
        lines.append(
            f"| {r['workload']} | {s['schedule_ms_median']:.2f} ({s['schedule_ms_min']:.2f}) | "
            f"{m['schedule_ms_median']:.2f} ({m['schedule_ms_min']:.2f}) | "
            f"{s['python_schedule_ms_median']:.2f} / {m['python_schedule_ms_median']:.2f} | "
            f"{s['sim_ms_median']:.1f} / {m['sim_ms_median']:.1f} | {s['simulated_makespan_us']:.2f} | "
            f"{m['simulated_makespan_us']:.2f} | {r['makespan_vs_static_pct']:+.1f}% | "
            f"{m['params'].get('reductions', '')} ({m['params'].get('shape', '')}) |"
        )
    b = res["big_trace"]
    lines += [
        "",
        "Schedule times are medians of whole scheduler calls (from workload to Schedule, Task objects "
        "included); the Python fallback plans the same schedules without the native core.  sim times run the "
        "encoded tensor through `mlaprof.sim.simulate` (events, decode, metadata).  us columns: simulated "
        "makespan on the calibrated model.",
        "",
        f"1M-span trace ({b['spans']} spans, simulated): file {b['file_mb']} MB; write {b['write_s_median']} s, "
        f"open (memory-mapped, validated) {b['read_s_median']} s, six columns + kind codes to numpy "
        f"{b['column_scan_s_median']} s; together {b['write_plus_read_s']} s.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=21)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args()
    res = {
        "machine": {"cpus": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()],
                    "python": platform.python_version(), "platform": platform.platform()},
        "repeat": args.repeat,
        "scheduler_core": "native" if native.library() is not None else "Python",
        "workloads": bench_workloads(args.repeat),
        "big_trace": bench_big_trace(max(3, args.repeat // 7)),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "schedule_cpu.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "schedule_cpu.md").write_text(markdown(res))
    print(f"wrote {out / 'schedule_cpu.json'} and {out / 'schedule_cpu.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
