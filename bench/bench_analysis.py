"""Speed of trace analysis, diff and export on 1,000,000-span traces (goal: analysis and diff <= 2 s each).

Two synthetic traces of one workload (132 SMs, ~20,000 instructions, pipelined loads, reductions waiting on
other SMs; tests/golden/synthetic.py) are written to a temporary folder, then timed end to end as the CLI runs
them: ``analysis`` = read_trace + analyze (what `mlaprof info` does), ``diff`` = read both + analyze both + diff
(what `mlaprof diff` does). Each is repeated and the median and minimum reported.

  python bench/bench_analysis.py                 # writes bench/results/analysis_cpu.{json,md}
  python bench/bench_analysis.py --spans 200000 --repeat 3 --tag quick
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.golden.synthetic

from mlaprof.analysis import analyze  # noqa: E402
from mlaprof.diff import diff  # noqa: E402
from mlaprof.export import export  # noqa: E402
from mlaprof.trace.io import read_trace, write_trace  # noqa: E402
from tests.golden import synthetic  # noqa: E402

GOAL_S = 2.0


def timed(fn, repeat: int) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spans", type=int, default=1_000_000, help="approximate spans per trace")
    p.add_argument("--sms", type=int, default=132)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--tag", default="cpu", help="results go to bench/results/analysis_TAG.{json,md}")
    p.add_argument("--no-export", action="store_true", help="skip timing the Perfetto export")
    args = p.parse_args()

    chunk = 1024
    per_seq = synthetic.spans_per_seq(synthetic.workload_lens(2000, chunk), chunk)
    num_seqs = max(1, round(args.spans * 1.03 / per_seq))  # lens are random: aim a little high to reach --spans
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        t = time.perf_counter()
        for seed in (0, 1):
            table, meta = synthetic.build(num_sms=args.sms, num_seqs=num_seqs, chunk_tokens=chunk, seed=seed,
                                          scheduler=f"synthetic-seed{seed}")
            paths.append(write_trace(Path(tmp) / f"s{seed}.arrow", table, meta))
        build_s = time.perf_counter() - t
        a, b = paths

        read_times, trace = timed(lambda: read_trace(a), args.repeat)
        analyze_times, an = timed(lambda: analyze(trace), args.repeat)
        analysis_times, _ = timed(lambda: analyze(read_trace(a)), args.repeat)
        diff_times, d = timed(lambda: diff(read_trace(a), read_trace(b)), args.repeat)
        export_s = None
        if not args.no_export:
            ex_times, _ = timed(lambda: export(trace, Path(tmp) / "x.json"), 1)
            export_s = ex_times[0]
            export_mb = (Path(tmp) / "x.json").stat().st_size / 2**20

        def stat(ts):
            return {"median_s": round(statistics.median(ts), 4), "min_s": round(min(ts), 4),
                    "runs_s": [round(x, 4) for x in ts]}

        result = {
            "what": "read+analyze one trace, and read+analyze+diff two traces, of ~1M spans each",
            "machine": {"platform": platform.platform(), "python": platform.python_version(),
                        "cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
            "trace": {"spans": len(trace), "sms": trace.meta.sm_count, "instructions": an.num_instructions,
                      "sequences": num_seqs, "file_mib": round(a.stat().st_size / 2**20, 2),
                      "critical_path_steps": len(an.critical_path), "makespan_us": an.makespan_us},
            "build_and_write_two_traces_s": round(build_s, 2),
            "read_trace": stat(read_times),
            "analyze_only": stat(analyze_times),
            "analysis": stat(analysis_times),
            "diff": stat(diff_times),
            "diff_result": {"mode": d.mode, "matched": d.ops["matched"] if d.ops else 0,
                            "makespan_delta_us": d.makespan_delta_us},
            "export_perfetto_s": None if export_s is None else round(export_s, 2),
            "export_mib": None if export_s is None else round(export_mb, 1),
            "goal_s": GOAL_S,
            "meets_goal": statistics.median(analysis_times) <= GOAL_S and statistics.median(diff_times) <= GOAL_S,
        }
    out = ROOT / "bench" / "results" / f"analysis_{args.tag}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(render_md(result))
    print(render_md(result))
    return 0 if result["meets_goal"] else 1


def render_md(r: dict) -> str:
    t = r["trace"]
    rows = [("read_trace (memory-mapped, validated)", r["read_trace"]), ("analyze (in memory)", r["analyze_only"]),
            ("**analysis** = read + analyze", r["analysis"]), ("**diff** = read 2 + analyze 2 + diff", r["diff"])]
    lines = [
        "# Trace analysis speed",
        "",
        f"Machine: {r['machine']['platform']}, {r['machine']['cpus']} CPUs, Python {r['machine']['python']}.",
        f"Trace: {t['spans']:,} spans, {t['sms']} SMs, {t['instructions']:,} instructions, {t['sequences']} sequences, "
        f"{t['file_mib']} MiB; critical path {t['critical_path_steps']} steps; makespan {t['makespan_us']} µs.",
        f"Diff: {r['diff_result']['mode']}, {r['diff_result']['matched']:,} instructions matched, makespan delta "
        f"{r['diff_result']['makespan_delta_us']} µs.",
        "",
        "| step | median s | min s | goal |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, s in rows:
        goal = f"≤ {r['goal_s']} s" if name.startswith("**") else ""
        lines.append(f"| {name} | {s['median_s']:.3f} | {s['min_s']:.3f} | {goal} |")
    if r["export_perfetto_s"] is not None:
        lines.append(f"| export to Perfetto JSON ({r['export_mib']} MiB), once | {r['export_perfetto_s']:.2f} | | |")
    lines += ["", f"Meets the goal: **{'yes' if r['meets_goal'] else 'no'}**.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
