"""Placing plans on SMs of different rates (mlaprof.schedule.spread): relabelling queues and offloading the
slowest SMs' whole sequences."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from mlaprof import format as fmt
from mlaprof.costmodel import default
from mlaprof.schedule import make_schedule
from mlaprof.schedule.encode import encode
from mlaprof.schedule.spread import offload, relabel
from mlaprof.schedule.static import best_static_plan
from mlaprof.sim import simulate
from mlaprof.workloads import Workload
from tests.test_schedule import check_schedule

P, R = int(fmt.Opcode.PARTIAL), int(fmt.Opcode.REDUCTION)


def test_relabel_puts_streaming_on_the_fastest_sms():
    cost = default()
    assert cost.sm_spread > 0
    num_sms = 8
    # queue q streams q tiles (one partial each), and queue 0 only merges
    op = [P] * 7 + [R]
    kv_len = [64 * q for q in range(1, 8)] + [0]
    queues = [[7]] + [[q - 1] for q in range(1, 8)]
    out = relabel(op, kv_len, queues, cost)
    assert sorted(map(tuple, out)) == sorted(map(tuple, queues))  # a permutation of the queues
    f = cost.sm_factors(num_sms)
    tiles_on = [kv_len[q[0]] // 64 if op[q[0]] == P else 0 for q in out]
    # more tiles -> a faster (smaller factor) SM; the merge-only queue on the slowest
    by_rate = np.argsort(f)
    assert [tiles_on[s] for s in by_rate] == sorted(tiles_on, reverse=True)


def test_equal_rates_leave_plans_alone():
    flat = dataclasses.replace(default(), sm_spread=0.0)
    assert relabel([P], [64], [[0]], flat) is None
    w = Workload("w", (4096,) * 16, 4)
    base = best_static_plan(w, 16, flat)
    cols = {k: base[k] for k in ("op", "seq", "kv0", "kv1", "inputs", "final", "q0", "qn", "queues", "sm")}
    assert offload(cols, base["end"], 4, flat) == []
    assert "sm_order" not in make_schedule(w, 16, "makespan", flat).params


def test_offload_only_when_the_last_sm_runs_one_whole_sequence():
    cost = default()
    w = Workload("w", (65536,), 1)  # one sequence split over every SM: nothing whole to hand over
    base = best_static_plan(w, 32, cost)
    cols = {k: base[k] for k in ("op", "seq", "kv0", "kv1", "inputs", "final", "q0", "qn", "queues", "sm")}
    assert offload(cols, base["end"], 1, cost) == []


def _check_offload_candidates(w: Workload, num_sms: int, cost) -> None:
    base = best_static_plan(w, num_sms, cost)
    cols = {k: base[k] for k in ("op", "seq", "kv0", "kv1", "inputs", "final", "q0", "qn", "queues", "sm")}
    for split in offload(cols, base["end"], w.s_q, cost):
        reds = [t for t, o in enumerate(split["op"]) if o == R]
        assert reds and all(split["final"][t] and len(split["inputs"][t]) == 2 for t in reds)
        # the tail half runs first on its fast SM, the merge last on the slow SM
        for t in reds:
            head, tail = split["inputs"][t]
            assert split["queues"][split["sm"][tail]][0] == tail and split["queues"][split["sm"][t]][-1] == t
            assert split["kv1"][head] == split["kv0"][tail] and split["kv1"][head] % fmt.KV_TILE_TOKENS == 0


def _simulated(w: Workload, num_sms: int, cost):
    s = make_schedule(w, num_sms, "makespan", cost, sm_rates=True, steal=False)  # as planned: predicted = simulated
    check_schedule(s, w, num_sms)
    sim = simulate(encode(s), cost).makespan_ns / 1e3
    assert sim == pytest.approx(s.predicted_makespan_us, abs=2e-3)  # the simulator rounds to whole ns
    return s, sim, simulate(encode(make_schedule(w, num_sms, "static", cost, steal=False)), cost).makespan_ns / 1e3


@pytest.mark.parametrize("num_sms, length, s_q", [(64, 4096, 1), (64, 2048, 4), (132, 2048, 2), (132, 8192, 4)])
def test_offload_splits_equal_sequences_and_ends_sooner(num_sms, length, s_q):
    """One equal whole sequence per SM: the slowest SMs hand tiles to the fastest; the result is a valid
    schedule that the per-tile simulator runs (no deadlock) to the predicted end, sooner than static."""
    w, cost = Workload("w", (length,) * num_sms, s_q), default()
    _check_offload_candidates(w, num_sms, cost)
    s, sim, static_sim = _simulated(w, num_sms, cost)
    assert s.params["split_pairs"] >= 1 and sim < static_sim


@pytest.mark.parametrize("seed", range(4))
def test_offload_on_unequal_whole_sequences_stays_valid(seed):
    rng = random.Random(seed)
    num_sms = rng.choice([16, 64, 132])
    w, cost = Workload("w", tuple(rng.randint(3000, 5000) for _ in range(num_sms)), rng.randint(1, 4)), default()
    _check_offload_candidates(w, num_sms, cost)
    _, sim, static_sim = _simulated(w, num_sms, cost)
    assert sim <= static_sim + 1e-3
