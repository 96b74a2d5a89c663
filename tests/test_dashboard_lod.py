"""Level of detail against brute force: exact coverage, the painter's-order winner per bucket, bounded output;
the pyramid against the direct computation; the view selection (raw when zoomed in, a capped grid when not)."""

import numpy as np
import pytest

from dashboard import lod

PRIORITY = [2, 0, 3, 1]  # kind codes, bottom to top


def _random_spans(seed, n=2500, rows=4, kinds=4, t=100.0):
    rng = np.random.default_rng(seed)
    s = rng.random(n) * t
    return rng.integers(0, rows, n), rng.integers(0, kinds, n), s, s + rng.exponential(0.6, n)


def _painted(row, kind, s, e, window, rows, buckets, samples=200):
    """Per (row, bucket): the kind (or -1 for idle) that the raw drawing shows over most of the bucket,
    sampled at ``samples`` points per bucket, and the set of kinds seen at all per row."""
    bw = window.width / buckets
    ts = window.x0 + (np.arange(buckets * samples) + 0.5) * bw / samples
    grid = np.full((rows, buckets), -1)
    seen = []
    for r in range(rows):
        top = np.full(len(ts), -1)
        for k in PRIORITY:  # bottom to top: later kinds overwrite
            m = (row == r) & (kind == k)
            cov = np.zeros(len(ts), bool)
            for a, z in zip(s[m], e[m]):
                cov |= (ts >= a) & (ts < z)
            top[cov] = k
        seen.append(set(np.unique(top)) - {-1})
        per = top.reshape(buckets, samples)
        for j in range(buckets):
            vals, cnt = np.unique(per[j], return_counts=True)
            grid[r, j] = vals[np.argmax(cnt)]
    return grid, seen


def test_coverage_is_exact():
    row, kind, s, e = _random_spans(0)
    w = lod.Window(10.0, 60.0)
    cov = lod.coverage(row, kind, s, e, w, 4, 4, 25)
    edges = w.x0 + np.arange(26) * w.width / 25
    for r, k in ((0, 0), (3, 2)):
        m = (row == r) & (kind == k)
        brute = [np.clip(np.minimum(e[m], edges[j + 1]) - np.maximum(s[m], edges[j]), 0, None).sum() for j in range(25)]
        np.testing.assert_allclose(cov[r, k], brute, atol=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_aggregate_matches_painted_pixels(seed):
    row, kind, s, e = _random_spans(seed)
    w, rows, buckets = lod.Window(10.0, 60.0), 4, 50
    grid = lod.level_of_detail(row, kind, s, e, w, rows, PRIORITY, buckets=buckets, raw_limit=10)
    assert not grid.raw and grid.visible_spans > 10 and grid.kind.shape == (rows, buckets)
    got, want = grid.kind, _painted(row, kind, s, e, w, rows, buckets)[0]
    for r in range(rows):
        for j in np.flatnonzero(got[r] != want[r]):
            # the only allowed difference: a kind that would win no bucket of this row keeps its best one
            k = got[r, j]
            assert k >= 0 and not np.any(want[r] == k), (r, j, k, want[r, j])
            assert np.sum(got[r] == k) == 1


def test_nothing_visible_is_lost():
    """A short span amid idle time (loses every bucket to idle) still gets a bar."""
    row = np.array([0, 0, 1])
    kind = np.array([0, 1, 0])
    s = np.array([0.0, 50.0, 0.0])
    e = np.array([40.0, 50.05, 100.0])
    grid = lod.level_of_detail(row, kind, s, e, lod.Window(0, 100), 2, [0, 1], buckets=10, raw_limit=0)
    r, b = np.nonzero(grid.kind >= 0)
    assert {(int(i), int(grid.kind[i, j])) for i, j in zip(r, b)} == {(0, 0), (0, 1), (1, 0)}
    (r1, b1), = zip(*np.nonzero(grid.kind == 1))
    assert r1 == 0 and grid.x0 + b1 * grid.bucket_us <= 50.0 < grid.x0 + (b1 + 1) * grid.bucket_us
    assert grid.visible_us[r1, b1] == pytest.approx(0.05, rel=1e-5)  # the hover's share: 0.05 of a 10 µs cell


def test_raw_below_limit_and_bounded_above():
    row, kind, s, e = _random_spans(3, n=5000, rows=8)
    w = lod.Window(0.0, 100.0)
    raw = lod.level_of_detail(row, kind, s, e, w, 8, PRIORITY, buckets=100, raw_limit=10_000)
    assert raw.raw and len(raw) == len(lod.overlapping(s, e, w)) and np.all(row[raw.index] == raw.row)
    agg = lod.level_of_detail(row, kind, s, e, w, 8, PRIORITY, buckets=100, raw_limit=100)
    assert not agg.raw and agg.kind.shape == (8, 100) and 0 < len(agg) <= 8 * 100
    assert agg.bucket_us == pytest.approx(1.0)
    drawn = agg.kind >= 0
    assert np.all(agg.visible_us[drawn] > 0) and np.all(agg.visible_us[~drawn] == 0)
    assert np.all(agg.visible_us <= 1.0 + 1e-6)


def test_unsorted_input_gives_the_same_bars():
    row, kind, s, e = _random_spans(4)
    perm = np.random.default_rng(9).permutation(len(row))
    w = lod.Window(0.0, 100.0)
    a = lod.level_of_detail(row, kind, s, e, w, 4, PRIORITY, buckets=64, raw_limit=0)
    b = lod.level_of_detail(row[perm], kind[perm], s[perm], e[perm], w, 4, PRIORITY, buckets=64, raw_limit=0)
    np.testing.assert_array_equal(a.kind, b.kind)
    np.testing.assert_allclose(a.visible_us, b.visible_us, rtol=1e-5, atol=1e-9)


def test_thin_marks_cap():
    x = np.linspace(0, 10, 1000)
    row = np.zeros(1000, np.int64)
    r, xs = lod.thin_marks(row, x, lod.Window(0, 10), limit=2000)
    assert len(xs) == 1000
    r, xs = lod.thin_marks(row, x, lod.Window(0, 10), limit=10, buckets=50)
    assert len(xs) == 50 and np.all(np.diff(xs) > 0)
