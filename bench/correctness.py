"""Correctness table for the GPU run (committed under bench/results/): python bench/correctness.py [OUT_DIR]"""

import dataclasses
import json
import sys
from pathlib import Path

import torch

from mlaprof.correctness import check, default_cases, to_markdown

out = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results")
sms = torch.cuda.get_device_properties(0).multi_processor_count
results = []
for i, case in enumerate(default_cases(sms)):
    r = check(case, compare_timing=True)
    print(f"[{i + 1}] {r.case} {r.scheduler} sms={r.num_sms} rel_err={r.rel_err:.2e} ok={r.ok}", flush=True)
    results.append(r)
gpu = torch.cuda.get_device_name()
out.mkdir(parents=True, exist_ok=True)
(out / "correctness_h100.md").write_text(to_markdown(results, gpu))
(out / "correctness_h100.json").write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=1))
print(f"{sum(r.ok for r in results)}/{len(results)} ok")
sys.exit(0 if all(r.ok for r in results) else 1)
