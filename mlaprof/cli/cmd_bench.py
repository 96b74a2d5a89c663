"""`mlaprof bench`: the megakernel against its baselines and peers on this GPU, JSON + Markdown results."""

from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLE = """example:
  mlaprof bench                                  # all five named workloads -> bench/results/bench_<gpu>.{json,md}
  mlaprof bench --workload seed-representative --replays 500
"""


def register(sub) -> None:
    p = sub.add_parser("bench", help="benchmark the megakernel against baselines and peers (GPU)",
                       description=__doc__, epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", "-w", action="append", help="named workload (repeatable; default: all five)")
    p.add_argument("--replays", type=int, default=200, help="CUDA-graph replays per entry (median is reported)")
    p.add_argument("--out-dir", default="bench/results")
    p.add_argument("--stem", default=None, help="file name stem (default: bench_<gpu>)")


def run(args) -> int:
    from mlaprof import workloads
    from mlaprof.bench import run_bench, to_markdown, write_results
    from mlaprof.kernel import require_gpu

    require_gpu()
    import torch

    names = args.workload or list(workloads.NAMED)
    entries = run_bench([workloads.get(n) for n in names], replays=args.replays)
    gpu = torch.cuda.get_device_name().replace(" ", "_")
    j, m = write_results(entries, Path(args.out_dir), args.stem or f"bench_{gpu}")
    print(to_markdown(entries))
    print(f"wrote {j} and {m}")
    return 0
