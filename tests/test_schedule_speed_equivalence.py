"""The schedulers' outputs, frozen: the speed work (vectorised timeline, shared reduction trees, ranked
rollouts) must return the very schedules the plain-Python code returned.

``tests/golden/schedules/schedules.json`` was written by the code as it was before any optimisation
(commit c69339b, with that commit's calibrated cost model pinned beside it), by ``python -m tests.test_schedule_speed_equivalence --regen``.  Per case it keeps a hash of
the structure (every task's op, sequence, query and KV range, inputs, final flag, SM; every queue) and the
predicted times as sums, since a reordered float sum may move the last bits but nothing more.  Regenerate
only for a deliberate change of outputs, and say why in the commit (never for a speed change).
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from pathlib import Path

import numpy as np
import pytest

from mlaprof import format as fmt
from mlaprof.costmodel import CostModel
from mlaprof.schedule.plan import ScheduleError, evaluate
from mlaprof.schedule import make_schedule
from mlaprof.workloads import NAMED, Workload

GOLDEN = Path(__file__).parent / "golden" / "schedules" / "schedules.json"
# the packaged calibrated model as of c69339b, pinned: a refit of mlaprof/data/cost_h100.json changes what the
# schedulers plan, and must not read as a change of the code
PINNED_COST = GOLDEN.parent / "cost_h100_c69339b.json"


def _random_workloads() -> list[tuple[str, Workload, int]]:
    """A fixed handful of random workloads and SM counts: short and long sequences, every s_q, SM counts
    from 1 to beyond an H100's 132."""
    rng = random.Random(2024)
    out = []
    for n in range(14):
        s_q = rng.randint(1, 4)
        batch = rng.choice([1, 2, 3, 5, 17, 64, 140])
        lens = tuple(rng.choice([rng.randint(s_q, 4096), rng.randint(s_q, 131072)]) for _ in range(batch))
        sms = rng.choice([1, 2, 7, 31, 64, 132, 200])
        out.append((f"rand{n}", Workload(f"rand{n}", lens, s_q), sms))
    return out


def cases() -> list[tuple[str, Workload, int, str, str]]:
    """(case id, workload, SMs, scheduler, cost model name)."""
    out = []
    for name, w in NAMED.items():
        for sms in (132, 16):
            for sched in ("static", "makespan"):
                out.append((f"{name}@{sms}/{sched}", w, sms, sched, "calibrated"))
        for sched in ("static", "makespan"):  # the uncalibrated estimates plan differently (whole reductions)
            out.append((f"{name}@132/{sched}/builtin", w, 132, sched, "builtin"))
    for name, w, sms in _random_workloads():
        for sched in ("static", "makespan"):
            out.append((f"{name}@{sms}/{sched}", w, sms, sched, "calibrated"))
    return out


def fingerprint(s) -> dict:
    """The schedule's structure, hashed exactly; its predicted times as sums (float-order tolerant)."""
    structure = [
        [int(t.op), t.seq, t.q_start, t.q_count, t.kv_start, t.kv_end, list(t.inputs), t.final, t.sm]
        for t in s.tasks
    ]
    blob = json.dumps({"tasks": structure, "queues": s.queues}, separators=(",", ":")).encode()
    params = {k: v for k, v in s.params.items()}
    return {
        "structure_sha256": hashlib.sha256(blob).hexdigest(),
        "tasks": len(s.tasks),
        "predicted_makespan_us": s.predicted_makespan_us,
        "sum_start_us": sum(t.est_start_us for t in s.tasks),
        "sum_end_us": sum(t.est_end_us for t in s.tasks),
        "weighted_end_us": sum((i % 97 + 1) * t.est_end_us for i, t in enumerate(s.tasks)),
        "params": params,
    }


def _cost(name: str) -> CostModel:
    return CostModel() if name == "builtin" else CostModel.load(PINNED_COST)


def compute_all() -> dict:
    return {cid: fingerprint(make_schedule(w, sms, sched, _cost(cost), merges="tree", steal=False, placement="plan")) for cid, w, sms, sched, cost in cases()}


@pytest.fixture(scope="module")
def golden() -> dict:
    return json.loads(GOLDEN.read_text())


def test_golden_covers_every_case(golden):
    assert sorted(golden) == sorted(c[0] for c in cases())


@pytest.mark.parametrize("cid,w,sms,sched,cost", cases(), ids=[c[0] for c in cases()])
def test_schedule_matches_golden(golden, cid, w, sms, sched, cost):
    want = golden[cid]
    got = fingerprint(make_schedule(w, sms, sched, _cost(cost), merges="tree", steal=False, placement="plan"))
    assert got["tasks"] == want["tasks"]
    assert got["structure_sha256"] == want["structure_sha256"], "tasks or queues changed"
    for k in ("predicted_makespan_us", "sum_start_us", "sum_end_us", "weighted_end_us"):
        assert got[k] == pytest.approx(want[k], rel=1e-9, abs=1e-6), k
    assert got["params"] == want["params"]


@pytest.mark.parametrize("cid,w,sms,sched,cost", cases()[::3], ids=[c[0] for c in cases()[::3]])
def test_timeline_rounds_equal_loop(cid, w, sms, sched, cost):
    """The numpy round-by-round timeline and the per-SM Python walk agree bit for bit."""
    s = make_schedule(w, sms, sched, _cost(cost), merges="tree", steal=False, placement="plan")
    t = s.tasks
    args = ([int(x.op) for x in t], [x.kv_end - x.kv_start for x in t], [len(x.inputs) for x in t],
            [x.final for x in t], [x.inputs for x in t], s.queues, [x.q_count * fmt.NUM_HEADS_Q for x in t],
            _cost(cost))
    a, b = evaluate(*args, method="loop"), evaluate(*args, method="rounds")
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert float(a[1].max()) / 1e3 == pytest.approx(s.predicted_makespan_us, rel=1e-12)


def test_timeline_rounds_report_deadlock():
    """Two SMs each waiting on the other's second task: both walks name the same stuck SMs."""
    P, R = int(fmt.Opcode.PARTIAL), int(fmt.Opcode.REDUCTION)
    op, kv, fan, fin = [P, P, R, R], [64, 64, 0, 0], [0, 0, 1, 1], [False, False, True, True]
    inputs, queues = [(), (), (1,), (0,)], [[2, 0], [3, 1]]
    msgs = set()
    for method in ("loop", "rounds"):
        with pytest.raises(ScheduleError) as e:
            evaluate(op, kv, fan, fin, inputs, queues, 16, CostModel(), method=method)
        msgs.add(str(e.value))
    assert len(msgs) == 1 and "2 SMs stuck" in msgs.pop()


@pytest.mark.parametrize("cid,w,sms,sched,cost", [c for c in cases() if c[3] == "makespan"],
                         ids=[c[0] for c in cases() if c[3] == "makespan"])
def test_work_bound_never_exceeds_planned_T(cid, w, sms, sched, cost):
    """The makespan scheduler skips shapes by a closed-form bound; it must be a true lower bound on every
    shape's planned T, or a skipped shape could have been timed."""
    from mlaprof.schedule import makespan as M

    model = _cost(cost)
    c = M._Costs(model, w.s_q * fmt.NUM_HEADS_Q)
    tiles = -(-np.asarray(w.lens, dtype=np.int64) // fmt.KV_TILE_TOKENS)
    memo: dict = {}
    for per_token in (False, True):
        for name, m_fill, chunk, k, copies in M.candidates(tiles, sms, c, w.s_q, (per_token,)):
            bound = M._work_bound(tiles, sms, c, m_fill, chunk, k, copies, memo)
            plan = M._plan(w.lens, tiles, sms, c, m_fill, chunk, k, copies, memo)
            assert bound <= plan["T"] * (1 + 1e-9), name


if __name__ == "__main__":
    if sys.argv[1:] != ["--regen"]:
        sys.exit("usage: python -m tests.test_schedule_speed_equivalence --regen  (rewrites the golden file)")
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text(json.dumps(compute_all(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN}")
