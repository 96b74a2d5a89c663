"""A partial on every SM (schedule/every_sm.py, static.spread_parts): the makespan scheduler's simulated choice
between its own schedule and one whose partial counts follow each sequence's tiles."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlaprof import format as fmt
from mlaprof.schedule import make_schedule
from mlaprof.schedule.encode import encode, validate
from mlaprof.schedule.every_sm import every_sm_schedule, streaming_sms
from mlaprof.schedule.placement import _simulated_times
from mlaprof.schedule.static import spread_parts
from mlaprof.sim import simulate
from mlaprof.workloads import NAMED, Workload
from tests.test_schedule import check_schedule

TILE = fmt.KV_TILE_TOKENS


@settings(max_examples=300, deadline=None)
@given(lens=st.lists(st.integers(1, 20_000), min_size=1, max_size=160), num_sms=st.integers(1, 200))
def test_spread_parts_fill_every_sm_in_proportion(lens, num_sms):
    lens = np.asarray(lens, dtype=np.int64)
    tiles = -(-lens // TILE)
    parts = spread_parts(lens, num_sms)
    if len(lens) > num_sms or tiles.sum() < num_sms:
        assert parts is None
        return
    assert parts.sum() == num_sms
    assert ((1 <= parts) & (parts <= tiles)).all()
    # the largest tiles per partial is as small as any counts summing to num_sms could make it: the least r
    # with sum(ceil(tiles / r)) <= num_sms, among the ratios tiles_i / p
    ratios = sorted({t / p for t in tiles.tolist() for p in range(1, min(t, num_sms) + 1)})
    best = next(r for r in ratios if np.ceil(tiles / r - 1e-9).sum() <= num_sms)
    assert (tiles / parts).max() <= best + 1e-9


def test_seed_puts_a_partial_on_every_sm():
    """seed-representative: 831 tiles on 132 SMs; chunks of 7 tiles leave 12 SMs without a partial, and the
    makespan scheduler takes the every-SM schedule because the simulator ends it sooner."""
    w = NAMED["seed-representative"]
    merges_only = make_schedule(w, 132, "makespan", placement="merges")
    assert streaming_sms(merges_only) == 120
    s = make_schedule(w, 132, "makespan")
    assert s.params["shape"] == "every SM" and streaming_sms(s) == 132
    before, after = (float(x) for x in s.params["every_sm"].split(" us")[0].split(" -> "))
    assert after < before
    assert s.predicted_makespan_us == pytest.approx(_simulated_times(s, None)[1])
    assert s.predicted_makespan_us < _simulated_times(merges_only, None)[1]
    check_schedule(s, w, 132)
    validate(s)


def test_no_every_sm_without_steal_groups_or_where_every_sm_already_streams():
    w = NAMED["seed-representative"]
    assert "every_sm" not in make_schedule(w, 132, "makespan", steal=False).params
    assert "every_sm" not in make_schedule(NAMED["b132-4096-q4"], 132, "makespan").params  # one sequence per SM
    planned = make_schedule(w, 132, "makespan", placement="plan")
    assert every_sm_schedule(planned, None, "wide") is not None
    assert every_sm_schedule(make_schedule(w, 132, "makespan"), None, "wide") is None  # already on every SM


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lens=st.lists(st.integers(1, 40_000), min_size=1, max_size=12), s_q=st.integers(1, 4),
       num_sms=st.integers(1, 160), merges=st.sampled_from(["wide", "tree"]))
def test_the_choice_is_valid_and_never_simulates_later(lens, s_q, num_sms, merges):
    w = Workload("hyp", tuple(max(n, s_q) for n in lens), s_q)
    merges_only = make_schedule(w, num_sms, "makespan", merges=merges, placement="merges")
    s = make_schedule(w, num_sms, "makespan", merges=merges)
    check_schedule(s, w, num_sms)
    assert _simulated_times(s, None)[1] <= _simulated_times(merges_only, None)[1] + 1e-6
    if s.params.get("shape") == "every SM":
        assert streaming_sms(s) > streaming_sms(merges_only)
        simulate(encode(s))  # runs to the end: no SM waits forever


def test_cli_placement_merges(capsys):
    from mlaprof.cli.main import main

    assert main(["schedule", "-w", "seed-representative", "-s", "makespan"]) == 0
    assert "every SM" in capsys.readouterr().out
    assert main(["schedule", "-w", "seed-representative", "-s", "makespan", "--placement", "merges"]) == 0
    out = capsys.readouterr().out
    assert "every SM" not in out and "placed_merges=" in out
