"""`mlaprof calibrate`: fit the cost model to traces by least squares and write it as JSON."""

from __future__ import annotations

import argparse

EXAMPLE = """example:
  mlaprof run -w seed-representative -s makespan --out m1.arrow && mlaprof run -w b1-65536-q1 --out m2.arrow
  mlaprof calibrate m1.arrow m2.arrow --out cost.json
  mlaprof schedule -w seed-representative --cost cost.json

Each span kind is fitted against what it moves or computes: loads and partial stores against bytes, tile
computes against FLOPs (plus a short last tile's masking), merges against rows and bytes read, reduction
stores against scratch-or-output, plus setups, semaphore latency, the kernel prologue (first KV load) and
the spread of the SMs' tile rates.  Unless given --cost, the tools use the model fitted to H100
traces that ships with mlaprof (mlaprof/data/cost_h100.json); `--cost default` gives the uncalibrated
first-principles estimates.  Traces of several
workloads (different lengths, s_q, fan-ins) pin the constants down best.
"""


def register(sub) -> None:
    p = sub.add_parser("calibrate", help="fit the cost model to traces (least squares) and save it",
                       description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("traces", nargs="+", help="Arrow traces (measured or simulated)")
    p.add_argument("--out", "-o", required=True, help="cost model JSON to write")
    p.add_argument("--base", help="cost model JSON whose constants are kept where the traces cannot fit them "
                                  "(default: the uncalibrated estimates; 'packaged' for the shipped H100 model)")


def run(args) -> int:
    from mlaprof import costmodel
    from mlaprof.trace.io import read_trace

    base = costmodel.default() if args.base == "packaged" else costmodel.load(args.base or "default")
    traces = [read_trace(p) for p in args.traces]
    model, report = costmodel.fit_with_report(traces, base)
    sources = sorted({t.meta.source for t in traces})
    print(f"fitted on {len(traces)} trace(s) ({', '.join(sources)}), {sum(len(t) for t in traces)} spans")
    fitted = model.to_json()
    prior = base.to_json()
    width = max(len(k) for k in fitted)
    print(f"{'constant':{width}}  {'fitted':>12}  {'prior':>12}")
    for k, v in fitted.items():
        print(f"{k:{width}}  {v:12.6g}  {prior[k]:12.6g}")
    print(f"{'kind':12} {'spans':>7} {'mean ns':>9} {'rms ns':>8} {'rel':>6}")
    for kind, r in report["kinds"].items():
        if r["n"] == 0:
            print(f"{kind:12} {0:7d}  {r['note']}")
            continue
        if "spread" in r:  # not a duration: the SMs' relative spread of tile period
            print(f"{kind:12} {r['n']:7d}  spread of per-SM tile period x sqrt(tiles): {r['spread']:.3f}")
            continue
        note = f"  ({r['note']})" if "note" in r else ""
        print(f"{kind:12} {r['n']:7d} {r['mean_ns']:9.1f} {r['rms_ns']:8.1f} {r['rel_rms']:6.3f}{note}")
    print(f"fit residual: rms {report['rms_ns']:.1f} ns, {100 * report['rel_rms']:.1f}% of the mean span")
    path = model.save(args.out, report)
    print(f"wrote {path}")
    return 0
