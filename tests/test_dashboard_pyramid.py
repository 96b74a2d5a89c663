"""The pyramid (precomputed visible time per level) and the view selection built on it.

Checked against direct computations: every level conserves each row's time per kind and the row's busy
union; a pyramid level gives the same grid as computing that window from the spans; a view draws raw spans
exactly when few are in sight, and otherwise a grid whose size does not grow with the trace.
"""

import numpy as np
import plotly.io as pio
import pytest

from dashboard import figures, lod, prepared, pyramid
from dashboard.data import Filters, GanttData
from dashboard.synthetic import synthesize
from dashboard.view import View
from mlaprof.trace.io import Trace
from mlaprof.trace.schema import KIND_NAMES

PRIORITY = [2, 0, 3, 1]  # kind codes, bottom to top


def _spans(seed, n=3000, rows=5, t=200.0):
    rng = np.random.default_rng(seed)
    s = rng.random(n) * t
    return rng.integers(0, rows, n), rng.choice(PRIORITY, n), s, s + rng.exponential(0.8, n)


def _union_length(s, e) -> float:
    """Length of the union of intervals, by a plain sweep."""
    total, reach = 0.0, -np.inf
    for a, b in sorted(zip(s, e)):
        if b > reach:
            total += b - max(a, reach)
            reach = b
    return total


def test_levels_conserve_each_kinds_visible_time_and_the_busy_union():
    row, kind, s, e = _spans(0)
    p = pyramid.Pyramid(row, kind, s, e, 5, PRIORITY, (0.0, 210.0), 256)
    base = p.levels[0].astype(np.float64).sum(axis=2)  # [kinds, rows]
    for lvl in p.levels[1:]:
        np.testing.assert_allclose(lvl.astype(np.float64).sum(axis=2), base, rtol=1e-5)
    assert p.levels[-1].shape[2] == 1
    for r in range(5):
        # all kinds together: the row's busy union; each kind: union(it and above) - union(above)
        np.testing.assert_allclose(base[:, r].sum(), _union_length(s[row == r], e[row == r]), rtol=1e-5)
        for lv in range(len(PRIORITY)):
            at_or_above = (row == r) & np.isin(kind, PRIORITY[lv:])
            above = (row == r) & np.isin(kind, PRIORITY[lv + 1:])
            want = _union_length(s[at_or_above], e[at_or_above]) - _union_length(s[above], e[above])
            assert base[lv, r] == pytest.approx(want, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("level", [0, 2, 3])
def test_a_pyramid_level_draws_what_the_direct_computation_draws(level):
    row, kind, s, e = _spans(1)
    p = pyramid.Pyramid(row, kind, s, e, 5, PRIORITY, (0.0, 1024.0), 2048)
    w = 0.5 * 2 ** level
    window = lod.Window(32.0, 32.0 + 100 * w)  # on the level's bucket edges: 100 buckets
    got = p.grid(window, (1, 4), level, visible_spans=0)
    want = lod.level_of_detail(row, kind, s, e, window, 5, PRIORITY, buckets=100, raw_limit=0)
    assert got.x0 == pytest.approx(window.x0) and got.bucket_us == pytest.approx(w)
    same = got.kind == want.kind[1:4]
    # float32 sums can flip an exact tie between two kinds' visible times, nothing else
    assert same.mean() > 0.995, np.argwhere(~same)[:5]
    np.testing.assert_allclose(got.visible_us, want.visible_us[1:4], rtol=1e-4, atol=1e-5)


def test_finest_buckets_reach_the_raw_zoom_within_the_memory_cap():
    assert pyramid.finest_buckets(100_000, 132, 5, 1000, 20_000) == 8192 // 2  # 4M cells cap: 4096
    assert pyramid.finest_buckets(30_000, 132, 5, 1000, 20_000) == 2048
    assert pyramid.finest_buckets(10 ** 7, 396, 5, 1000, 20_000) == 1024  # never below the view's buckets
    b = pyramid.finest_buckets(10 ** 6, 132, 5, 1000, 20_000)
    assert 132 * 5 * b <= pyramid.MAX_CELLS


@pytest.fixture(scope="module")
def big():
    table, meta = synthesize(60_000, num_sms=132, seed=2)
    return GanttData.of(Trace(table=table, meta=meta), "big")


def test_zoomed_in_draws_every_span_in_sight_raw(big):
    shown = figures.DRAW_ORDER
    p = prepared.for_filters(big, Filters(), shown)
    window = lod.Window(0.5 * big.makespan_us, 0.5 * big.makespan_us + 3.0)
    sel = p.select(window, (0, 131), raw_limit=5000)
    assert sel.drawn.raw
    padded = window.padded(*p.extent)
    bar = big.spans.kind != KIND_NAMES.index("instruction")  # instructions are boundaries, not bars
    want = np.flatnonzero((big.end_us >= padded.x0) & (big.start_us <= padded.x1) & bar)
    np.testing.assert_array_equal(np.sort(sel.drawn.index), want)
    np.testing.assert_array_equal(sel.drawn.x0, big.start_us[sel.drawn.index])
    assert sel.drawn.visible_spans == len(want) <= 5000


def test_zoomed_out_grid_is_capped_whatever_the_span_count(big):
    small_t, small_m = synthesize(8_000, num_sms=132, seed=2)
    small = GanttData.of(Trace(table=small_t, meta=small_m), "small")
    sizes = []
    for d in (small, big):
        fig, info = figures.gantt_figure(d, Filters(), View(), raw_limit=1000)
        assert not info["raw"] and info["visible_spans"] > 1000
        heat = [t for t in fig["data"] if t["type"] == "heatmap"]
        assert len(heat) == 1 and not any(t["type"] == "scattergl" for t in fig["data"])  # no WebGL zoomed out
        assert info["bars"] <= 132 * 1.42 * lod.BUCKETS  # a cell per row and about one per pixel, at most
        sizes.append(len(pio.json.to_json_plotly(fig)))
    assert sizes[1] < 1.2 * sizes[0]  # 7.5x the spans, about the same bytes


def test_grid_cells_hold_no_more_time_than_the_kind_is_visible(big):
    """Aggregation conserves time: a kind's cells never claim more than its visible time in the row."""
    shown = figures.DRAW_ORDER
    p = prepared.for_filters(big, Filters(), shown)
    sel = p.select(lod.Window(0.0, big.makespan_us), (0, 131), raw_limit=1000)
    grid, levels0 = sel.drawn, p.pyramid().levels[0]
    for lv, code in enumerate(p.priority):
        claimed = np.where(grid.kind == code, grid.visible_us, 0).sum(axis=1)
        assert np.all(claimed <= levels0[lv].astype(np.float64).sum(axis=1) * (1 + 1e-5) + 1e-6)
    # and every row's drawn cells together cover most of its busy time (the winner of a cell fills >= 1/kinds)
    busy = levels0.astype(np.float64).sum(axis=(0, 2))
    assert np.all(grid.visible_us.sum(axis=1) >= busy / len(shown) - 1e-6)


def test_past_the_finest_level_the_window_is_computed_from_its_spans(monkeypatch):
    monkeypatch.setattr(pyramid, "MAX_CELLS", 132 * 5 * 1024)  # level 0 = 1024 buckets
    table, meta = synthesize(60_000, num_sms=132, seed=2)
    d = GanttData.of(Trace(table=table, meta=meta), "fresh")  # a fresh GanttData: nothing cached
    p = prepared.for_filters(d, Filters(), figures.DRAW_ORDER)
    window = lod.Window(0.3 * d.makespan_us, 0.6 * d.makespan_us)  # narrower than 1000 level-0 buckets
    sel = p.select(window, (0, 131), raw_limit=1000)
    assert p.pyramid().levels[0].shape[2] == 1024 and p.pyramid().level_for(window, lod.BUCKETS) is None
    want = lod.level_of_detail(p.row, p.kind, p.start, p.end, window, p.n_rows, p.priority, raw_limit=0)
    np.testing.assert_array_equal(sel.drawn.kind, want.kind)



def test_a_new_filter_sets_pyramid_is_built_once_and_then_serves_the_views():
    table, meta = synthesize(30_000, num_sms=132, seed=5)
    d = GanttData.of(Trace(table=table, meta=meta), "fresh")
    f = Filters(kinds=("load", "compute", "wait"))
    shown = [k for k in figures.DRAW_ORDER if k in f.kinds]
    p = prepared.for_filters(d, f, shown)
    window = lod.Window(0.0, d.makespan_us)
    first = p.select(window, (0, 131), raw_limit=1000)  # the pyramid may still be building: direct then
    assert not first.drawn.raw and first.drawn.kind.shape[0] == 132
    pyr = p.pyramid()  # waits for the background build; a second build never starts
    assert p.pyramid() is pyr and prepared.for_filters(d, f, shown) is p
    later = p.select(window, (0, 131), raw_limit=1000)
    level = pyr.level_for(window, lod.BUCKETS)
    assert later.drawn.bucket_us == pytest.approx(pyr.width0 * 2 ** level)
    assert set(np.unique(later.drawn.kind)) - {-1} <= {p.priority[i] for i in range(3)}


def test_diff_of_two_aggregated_traces_puts_one_heatmap_on_each_axis(big):
    table, meta = synthesize(60_000, num_sms=132, seed=2, slowdown=0.8)
    b = GanttData.of(Trace(table=table, meta=meta), "b")
    fig, ia, ib = figures.diff_figure(big, b, Filters(), View(), raw_limit=1000)
    assert not ia["raw"] and not ib["raw"]
    heat = [t for t in fig["data"] if t["type"] == "heatmap"]
    assert sorted((t["xaxis"], t["yaxis"]) for t in heat) == [("x", "y"), ("x2", "y2")]
    # on the shared axis each grid covers its own trace from its start to its end
    for t in heat:
        end = (big if t["yaxis"] == "y" else b).makespan_us
        cols = int(t["z"]["shape"].split(",")[1])
        assert t["x0"] - t["dx"] / 2 <= 1e-6 and t["x0"] + (cols - 0.5) * t["dx"] >= end - 1e-6
    assert fig["layout"]["legend"]["itemclick"] is False
