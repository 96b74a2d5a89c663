"""Cost model: span formulas, JSON, and recovering known constants from noisy simulated traces."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from mlaprof.cli.main import main
from mlaprof.format import KV_TILE_TOKENS
from mlaprof.costmodel import RATES, CostModel, CostModelError, FITTED, fit, fit_with_report, tile_tokens
from mlaprof.schedule import make_schedule
from mlaprof.schedule.encode import encode
from mlaprof.schedule.static import static_schedule
from mlaprof.sim import simulate
from mlaprof.trace.io import write_trace
from mlaprof.schedule.widen import widen_merges
from mlaprof.workloads import Workload

# load and compute bases at the priors: with one tile size they cannot be told from the rates (see _linear)
TRUE = CostModel(setup_ns=420, reduce_setup_ns=230, load_base_ns=100, load_byte_ns=0.05, compute_base_ns=150,
                 compute_flop_ns=2.2e-4, compute_short_ns=310, reduce_base_ns=380, reduce_row_ns=45,
                 reduce_byte_ns=0.0075, store_base_ns=260, store_byte_ns=0.011, reduce_store_ns=240,
                 reduce_fence_ns=520, first_load_ns=2100, sm_spread=0.2, sem_latency_ns=1300,
                 counted_base_ns=900, counted_round_ns=1400, counted_line_ns=1.7)


def test_partial_time_is_the_pipelined_tile_loop():
    c = CostModel()
    for tokens in (1, 31, 32, 33, 100, 416, 4641):
        for rows in (16, 64):
            t = tile_tokens(tokens)
            L, C = c.load_ns(t), c.compute_ns(t, rows)
            loop = max(c.setup_ns, L[0]) + np.maximum(L[1:], C[:-1]).sum() + C[-1]  # setup beside the first load
            assert np.isclose(c.partial_ns(tokens, rows, False), loop + c.store_ns(rows, False))
    fixed, per_tile = c.partial_linear(64, False)
    assert np.isclose(c.partial_ns(KV_TILE_TOKENS * 10, 64, False), fixed + 10 * per_tile)
    # rows pad to wgmma's M of 64: 16 rows cost what 64 do on the tensor cores
    assert c.compute_ns(KV_TILE_TOKENS, 16) == c.compute_ns(KV_TILE_TOKENS, 64)
    assert c.reduction_ns(6, 64, False) > c.reduction_ns(2, 64, False) >= c.reduction_ns(2, 64, True)
    # a per-token reduction (16 rows) reads and merges a quarter of a whole one's rows
    assert TRUE.reduce_ns(6, 16) < TRUE.reduce_ns(6, 64)
    # a short last tile pays the masking; a reduction's store is its barrier, plus the fence for scratch
    assert TRUE.compute_ns(KV_TILE_TOKENS - 1, 64) - TRUE.compute_ns(KV_TILE_TOKENS, 64) == TRUE.compute_short_ns
    assert TRUE.load_ns(3) == TRUE.load_ns(KV_TILE_TOKENS)  # a tile is loaded whole
    assert TRUE.store_ns(16, False, True) - TRUE.store_ns(16, True, True) == TRUE.reduce_fence_ns
    # SM spread: deterministic, centred, shrinking the mean of many tiles
    f = TRUE.sm_factors(132)
    assert np.array_equal(f, TRUE.sm_factors(132)) and abs(f.mean()) < 1e-9 and 0.15 < f.std() < 0.25


def test_json_round_trip_and_refusals(tmp_path):
    path = TRUE.save(tmp_path / "c.json", {"note": "kept"})
    assert CostModel.load(path) == TRUE
    assert json.loads(path.read_text())["fit"] == {"note": "kept"}
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(CostModelError, match="not valid JSON"):
        CostModel.load(tmp_path / "bad.json")
    (tmp_path / "u.json").write_text(json.dumps({"setup_ns": 1, "warp_speed": 9}))
    with pytest.raises(CostModelError, match="unknown fields"):
        CostModel.load(tmp_path / "u.json")
    (tmp_path / "n.json").write_text(json.dumps({"setup_ns": -5}))
    with pytest.raises(CostModelError, match=">= 0"):
        CostModel.load(tmp_path / "n.json")
    with pytest.raises(CostModelError, match="no such"):
        CostModel.load(tmp_path / "missing.json")


@pytest.fixture(scope="module")
def noisy_traces():
    """Simulated with known constants and 3% noise on every span, over varied lengths, s_q and fan-ins."""
    rng = random.Random(0)
    traces = []
    for s_q in (1, 2, 4):
        w = Workload("cal", tuple(rng.randint(100, 9000) for _ in range(40)), s_q)
        for scheduler in ("static", "makespan"):  # static: whole reductions; makespan: per-token ones
            # fixed ranges: steal groups would draw the noise in another order (test_steal.py fits on them)
            s = make_schedule(w, 132, scheduler, TRUE, steal=False) if scheduler == "makespan" or s_q == 1 \
                else static_schedule(w, 132, TRUE, per_token=False)
            traces.append(simulate(encode(s), TRUE, jitter=0.03, seed=len(traces)))
    # deep trees flattened into counted merges of several widths and fan-ins
    for lens, s_q, col_block in (((60000, 20000), 1, 16), ((100000,), 2, 64), ((45000, 9000), 4, 32),
                                 ((130000, 30000), 1, 128)):
        s = widen_merges(static_schedule(Workload("deep", lens, s_q), 132, TRUE), TRUE, col_block=col_block)
        traces.append(simulate(encode(s), TRUE, jitter=0.03, seed=len(traces)))
    return traces


def test_fit_recovers_known_constants(noisy_traces):
    model, report = fit_with_report(noisy_traces)
    for kind, (base, slopes) in FITTED.items():
        mean = report["kinds"][kind]["mean_ns"]
        # each base within 2% of the spans it is part of; slopes within 3% (per-token reductions, short
        # tiles and scratch stores are a minority of their kind's spans)
        assert abs(getattr(model, base) - getattr(TRUE, base)) < 0.02 * mean, base
        for slope in slopes:
            assert getattr(model, slope) == pytest.approx(getattr(TRUE, slope), rel=0.03), slope
        note = report["kinds"][kind].get("note", "")
        assert report["kinds"][kind]["n"] > 0 and (note == "" or (kind in RATES and "one tile size" in note))
    assert model.sm_spread == pytest.approx(TRUE.sm_spread, abs=0.05)
    assert 0.02 < report["rel_rms"] < 0.06  # the 3% noise (and the SM spread of loads), not model error
    # and far from the defaults it started from
    assert fit(noisy_traces, CostModel()).setup_ns != CostModel().setup_ns


def test_calibrate_cli(noisy_traces, tmp_path, capsys):
    paths = [write_trace(tmp_path / f"t{i}.arrow", t.table, t.meta) for i, t in enumerate(noisy_traces[:2])]
    assert main(["calibrate", *map(str, paths), "--out", str(tmp_path / "cost.json")]) == 0
    out = capsys.readouterr().out
    assert "load_byte_ns" in out and "fit residual" in out
    saved = json.loads((tmp_path / "cost.json").read_text())
    assert saved["fit"]["traces"] == 2
    model = CostModel.load(tmp_path / "cost.json")
    assert model.load_byte_ns == pytest.approx(TRUE.load_byte_ns, rel=0.03)
    assert main(["calibrate", str(tmp_path / "nope.arrow"), "--out", str(tmp_path / "x.json")]) == 2
    assert "no such trace" in capsys.readouterr().err
    assert main(["calibrate", *map(str, paths), "--out", "/proc/cost.json"]) == 2  # cannot be written: one line
    err = capsys.readouterr().err.strip()
    assert "cannot use /proc/cost.json" in err and len(err.splitlines()) == 1
