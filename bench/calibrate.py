"""Fit the cost model to the measured GPU traces, ship it as package data, and report how well it predicts.

    python bench/calibrate.py [--traces 'traces/*.arrow'] [--out bench/results]

1. Fits ``mlaprof.costmodel`` by least squares on every measured trace (``mlaprof calibrate``'s fit) and
   writes ``mlaprof/data/cost_h100.json`` (the model the tools use by default) with a note of its source.
2. Replays each trace's own schedule (its task table and per-SM order, ``encode.from_trace``) in the
   simulator on the fitted model and on the uncalibrated defaults, and compares with the measured makespan.
   Writes ``calibration.json`` and ``calibration.md``.  ``--evaluate`` skips step 1: it replays the traces on
   the packaged model as it is (an out-of-sample check when the traces were recorded after its fit, with
   the schedules it plans).  Only traces recorded with the current
   ``KV_TILE_TOKENS`` are replayed (the fit itself reads each trace's own tile size and keeps the per-tile
   load and compute as rates, so the model follows a tile-size change until new traces are measured).
"""

from __future__ import annotations

import argparse
import glob
import json
import subprocess
import sys
from pathlib import Path

from mlaprof import format as fmt
from mlaprof.analysis import Spans, kv_stream
from mlaprof.costmodel import CostModel, fit_with_report, trace_tile_tokens
from mlaprof.schedule.encode import encode, from_trace
from mlaprof.sim import simulate
from mlaprof.trace.io import read_trace

ROOT = Path(__file__).resolve().parent.parent
PACKAGED = ROOT / "mlaprof" / "data" / "cost_h100.json"
GOAL = 0.10  # simulated makespan within 10% of the measured one


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--traces", default=str(ROOT / "traces" / "*.arrow"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    ap.add_argument("--model", default=str(PACKAGED), help="the model file: written by a fit, read by --evaluate")
    ap.add_argument("--model-only", action="store_true", help="fit and write the model; no replay, no report")
    ap.add_argument("--evaluate", action="store_true",
                    help="no fit: replay the traces on the model in --model as it is (out-of-sample check)")
    args = ap.parse_args()
    if args.evaluate and args.model_only:
        print("--evaluate and --model-only exclude each other: one fits nothing, the other replays nothing",
              file=sys.stderr)
        return 2
    paths = sorted(glob.glob(args.traces))
    traces = [t for t in (read_trace(p) for p in paths) if t.meta.source == "measured"]
    if not traces:
        print(f"no measured traces match {args.traces}", file=sys.stderr)
        return 2
    gpus = sorted({t.meta.gpu_name for t in traces})
    if args.evaluate:
        stored = json.loads(Path(args.model).read_text())
        model, report = CostModel.load(args.model), stored.get("fit", {"kinds": {}})
        report["evaluated_on"] = f"{len(traces)} measured traces ({', '.join(Path(t.path).name for t in traces)})"
        report["model_source"] = stored.get("source", "")
        return _replay_and_report(traces, model, report, gpus, args.out)
    model, report = fit_with_report(traces, CostModel())
    revs = sorted({t.meta.git_rev for t in traces} - {""}) or [_committed_in(paths)]
    source = (f"fitted by bench/calibrate.py (mlaprof.costmodel.fit) on {len(traces)} measured traces "
              f"({', '.join(Path(t.path).name for t in traces)}) from {', '.join(gpus)}, git {', '.join(revs)}, "
              f"KV tiles of {fmt.KV_TILE_TOKENS} tokens (per-tile constants: re-measure and re-run after a kernel "
              f"change); rms residual {report['rms_ns']:.0f} ns per span")
    model.save(args.model, report, source=source)
    print(f"wrote {args.model}")

    if args.model_only:
        return 0
    return _replay_and_report(traces, model, report, gpus, args.out)


def _replay_and_report(traces, model: CostModel, report: dict, gpus: list[str], out_dir: str) -> int:
    rows = []
    for t in traces:
        tile = trace_tile_tokens(t)
        if tile != fmt.KV_TILE_TOKENS:  # the simulator runs the current kernel's tiles: not a replay
            print(f"{Path(t.path).name}: recorded with {tile}-token KV tiles, the kernel now has "
                  f"{fmt.KV_TILE_TOKENS}: not replayed (re-measure it)")
            continue
        enc = encode(from_trace(t))
        measured = t.makespan_ns / 1e3
        sim_trace = simulate(enc, model)
        sim = sim_trace.makespan_ns / 1e3
        sim_default = simulate(enc, CostModel()).makespan_ns / 1e3
        # the KV stream's middle (mlaprof.analysis.kv_stream): the simulator gives each SM one tile rate, the GPU
        # shares its HBM between the SMs that stream (bench/NOTES.md v23)
        k_meas, k_sim = kv_stream(Spans.of(t)) or {}, kv_stream(Spans.of(sim_trace)) or {}
        rows.append({"workload": t.meta.workload.get("name", "?"), "scheduler": t.meta.scheduler,
                     "trace": Path(t.path).name, "measured_us": round(measured, 2),
                     "simulated_us": round(sim, 2), "error_pct": round(100 * (sim / measured - 1), 1),
                     "simulated_default_us": round(sim_default, 2),
                     "error_default_pct": round(100 * (sim_default / measured - 1), 1),
                     "tile_interval_us": k_meas.get("tile_interval_us"),
                     "simulated_tile_interval_us": k_sim.get("tile_interval_us"),
                     "streaming_sms": k_meas.get("streaming_sms"), "steady_tbps": k_meas.get("steady_tbps")})
        r = rows[-1]
        print(f"{r['workload']:22s} {r['scheduler']:9s} measured {measured:7.1f} us  calibrated {sim:7.1f} us "
              f"({r['error_pct']:+.1f}%)  default {sim_default:7.1f} us ({r['error_default_pct']:+.1f}%)")
    res = {"gpu": gpus, "traces": len(traces), "goal_pct": 100 * GOAL, "model": model.to_json(),
           "fit": report, "rows": rows}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "calibration.json").write_text(json.dumps(res, indent=2) + "\n")
    (out / "calibration.md").write_text(markdown(res))
    print(f"wrote {out / 'calibration.json'} and {out / 'calibration.md'}")
    return 0


def _committed_in(paths: list[str]) -> str:
    """The commit that last changed the traces (measured traces carry no git revision of their own)."""
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%h", "--", *paths], capture_output=True, text=True,
                             cwd=ROOT, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    return f"traces committed in {out}" if out else "traces of unknown revision"


def markdown(res: dict) -> str:
    ok = sum(abs(r["error_pct"]) <= res["goal_pct"] for r in res["rows"])
    if "evaluated_on" in res["fit"]:
        how = (f"The packaged model (`mlaprof/data/cost_h100.json`, {res['fit']['model_source']}) replayed, without "
               f"refitting, on {res['fit']['evaluated_on']} (`python bench/calibrate.py --evaluate`): an out-of-sample "
               f"check when the traces were recorded after its fit.  The fit statistics below are those of its own fit.")
    else:
        how = (f"Model fitted by `python bench/calibrate.py` on {res['traces']} measured traces "
               f"({', '.join(res['gpu'])}) and shipped as `mlaprof/data/cost_h100.json`.")
    lines = [
        "# Cost model calibration: simulated against measured makespan",
        "",
        f"{how}  Each row replays that trace's own schedule (task table and per-SM order) in `mlaprof.sim`.  "
        f"Goal: within {res['goal_pct']:.0f}%; met by {ok} of {len(res['rows'])}.",
        "",
        "| workload | scheduler | measured us | simulated us (calibrated) | error | simulated us (defaults) | error "
        "| tile interval us: measured / simulated | SMs loading, TB/s (measured) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def num(x, fmt_):
        return "n/a" if x is None else format(x, fmt_)

    for r in res["rows"]:
        lines.append(f"| {r['workload']} | {r['scheduler']} | {r['measured_us']:.1f} | {r['simulated_us']:.1f} | "
                     f"{r['error_pct']:+.1f}% | {r['simulated_default_us']:.1f} | {r['error_default_pct']:+.1f}% | "
                     f"{num(r.get('tile_interval_us'), '.2f')} / {num(r.get('simulated_tile_interval_us'), '.2f')} | "
                     f"{num(r.get('streaming_sms'), '.0f')}, {num(r.get('steady_tbps'), '.2f')} |")
    lines += ["", "What the model leaves out (where the misses come from): contention in the memory system, which "
              "makes a partial's store take up to ~2x its mean and merges up to ~2x when many SMs store or merge "
              "at once; the tile rate's dependence on the workload and on how many SMs stream (one fitted rate per SM for all: the tile interval columns, the middle of the KV stream as `mlaprof info` reports it); the SMs' spread, which the simulator gives a fixed per-SM pattern while on the "
              "GPU the slow SMs change from run to run.",
              "", "Fitted constants (ns; per-byte and per-FLOP slopes in ns per unit):", "",
              "| constant | value |", "| --- | --- |"]
    lines += [f"| {k} | {v:.6g} |" for k, v in res["model"].items()]
    lines += ["", "Per span kind: samples, mean and rms residual of the fit:", "", "| kind | n | mean ns | rms ns |",
              "| --- | --- | --- | --- |"]
    for kind, r in res["fit"]["kinds"].items():
        lines.append(f"| {kind} | {r['n']} | {r.get('mean_ns', '')} | {r.get('rms_ns', r.get('spread', ''))} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
