"""The megakernel against the float32 reference on the GPU, over schedulers, named and random workloads,
block-table orders and SM counts. Used by the GPU tests and by `bench/correctness.py` (the committed table).
"""

from __future__ import annotations

import dataclasses
import random

from mlaprof.workloads import NAMED, Workload

TOLERANCE = 3e-3  # bf16 inputs and output: the reference itself rounds to bf16 at ~2e-3


@dataclasses.dataclass
class Case:
    workload: Workload
    scheduler: str
    num_sms: int
    shuffled: bool
    seed: int
    merges: str = "wide"


@dataclasses.dataclass
class Result:
    case: str
    scheduler: str
    num_sms: int
    shuffled: bool
    batch: int
    total_kv: int
    s_q: int
    rel_err: float
    lse_rel_err: float
    all_written: bool
    timing_identical: bool | None
    ok: bool


def random_workloads(count: int, seed: int = 1234) -> list[Workload]:
    """Lengths from 1 to 131072 (log-uniform, plus the edge lengths), s_q 1..4, batch 1..12."""
    rng = random.Random(seed)
    edge = [1, 63, 64, 65, 131072]
    out = []
    for i in range(count):
        s_q = rng.randint(1, 4)
        b = rng.randint(1, 12)
        lens = [max(s_q, int(2 ** rng.uniform(0, 17))) for _ in range(b)]
        lens[0] = max(s_q, edge[i % len(edge)])
        out.append(Workload(f"random-{i}", tuple(lens), s_q))
    return out


def default_cases(num_sms_device: int, random_count: int = 12) -> list[Case]:
    cases = [Case(w, s, num_sms_device, True, 0) for w in NAMED.values() for s in ("static", "makespan")]
    cases += [Case(w, s, num_sms_device, True, 1, "tree") for w in NAMED.values() for s in ("static", "makespan")
              if w.name in ("seed-representative", "b1-65536-q1")]  # the trees that "wide" flattens
    sm_choices = [1, 7, 64, num_sms_device]
    for i, w in enumerate(random_workloads(random_count)):
        cases.append(Case(w, ("static", "makespan")[i % 2], sm_choices[i % len(sm_choices)], i % 3 != 0, 100 + i))
    return cases


def check(case: Case, compare_timing: bool = False) -> Result:
    import numpy as np
    import torch

    from mlaprof.kernel import Megakernel
    from mlaprof.reference import mla_decode_reference, relative_error
    from mlaprof.schedule import make_schedule
    from mlaprof.schedule.encode import encode
    from mlaprof.workloads import build_tensors

    w = case.workload
    t = build_tensors(w, device="cuda", seed=case.seed, shuffle_pages=case.shuffled)
    schedule = make_schedule(w, case.num_sms, case.scheduler, merges=case.merges)
    enc = encode(schedule)
    ins = torch.from_numpy(np.ascontiguousarray(enc.instructions))
    mk = Megakernel(ins, t, enc.num_slots, enc.num_sems, timing=True)
    mk.out.fill_(float("nan"))  # poison: an unwritten element stays NaN
    mk.out_lse.fill_(float("nan"))
    mk.run()
    written = bool(torch.isfinite(mk.out.float()).all() and torch.isfinite(mk.out_lse).all())
    ref_o, ref_lse = mla_decode_reference(t)
    err = relative_error(mk.out.float(), ref_o)
    lse_err = relative_error(mk.out_lse, ref_lse)
    same = None
    if compare_timing:
        off = Megakernel(ins, t, enc.num_slots, enc.num_sems, timing=False)
        off.run()
        if schedule.params.get("steal"):  # which SM computes which tile differs between launches: last bits may
            same = bool(relative_error(off.out.float(), mk.out.float()) < TOLERANCE and
                        relative_error(off.out_lse, mk.out_lse) < TOLERANCE)
        else:
            same = bool(torch.equal(off.out, mk.out) and torch.equal(off.out_lse, mk.out_lse))
    ok = written and err < TOLERANCE and lse_err < TOLERANCE and same is not False
    sched = case.scheduler if case.merges == "wide" else f"{case.scheduler} ({case.merges})"
    return Result(w.name, sched, case.num_sms, case.shuffled, w.batch, w.total_kv, w.s_q, err, lse_err,
                  written, same, ok)


def to_markdown(results: list[Result], gpu: str) -> str:
    lines = [f"Megakernel vs float32 reference on {gpu} (tolerance {TOLERANCE:g}, output poisoned with NaN first).", "",
             "| workload | scheduler | SMs | block table | b | KV tokens | s_q | rel err (O) | rel err (LSE) | all written | timing on = off | ok |",
             "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |"]
    for r in results:
        lines.append(f"| {r.case} | {r.scheduler} | {r.num_sms} | {'shuffled' if r.shuffled else 'in order'} | "
                     f"{r.batch} | {r.total_kv} | {r.s_q} | {r.rel_err:.2e} | {r.lse_rel_err:.2e} | "
                     f"{'yes' if r.all_written else 'NO'} | {'-' if r.timing_identical is None else ('yes' if r.timing_identical else 'NO')} | "
                     f"{'yes' if r.ok else 'NO'} |")
    passed = sum(r.ok for r in results)
    lines += ["", f"{passed} of {len(results)} cases pass."]
    return "\n".join(lines) + "\n"
