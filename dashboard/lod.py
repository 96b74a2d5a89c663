"""Level of detail: what to draw for a time window, so a 1,000,000-span trace stays interactive.

Zoomed in (at most ``raw_limit`` spans overlap the window) every span is drawn as itself, with full hover
details, in painter's order: kinds later in ``priority`` paint over earlier ones where spans of two roles
overlap in one row (``Bars``).

Zoomed out, each row is cut into equal time buckets (about one per screen pixel) and each bucket gets the
kind that the raw drawing would show over most of it (``Grid``): for every kind, the time in the bucket
where it is the top-most kind present (its *visible* time) is computed exactly, from the union of the spans
of that kind and every kind above it, clipped to bucket edges.  Visible time is additive over time, so the
grid of a coarse bucket is the sum of the grids of the fine buckets inside it: ``pyramid.py`` computes the
finest grid once per trace and sums it into coarser levels, and a view only picks a level and slices it.
Idle time competes like a kind: a bucket that is idle for longer than any kind is visible in it stays
empty, so idle gaps survive aggregation as well as busy stretches do.  One exception keeps rare things on
screen: a kind visible somewhere in a row that wins no bucket of that row (a short store amid idle time) is
drawn in the bucket where it shows most.  The output is bounded by rows x buckets whatever the trace size.

With the painter's order the Gantt uses (wait at the bottom), a bucket shows *wait* only where the SM does
nothing but wait, which is how ``mlaprof.analysis`` defines wait time.

Pure numpy, no plotly: figures.py turns ``Bars`` and ``Grid`` into traces.
"""

from __future__ import annotations

import dataclasses

import numpy as np

RAW_LIMIT = 20_000  # spans drawn one by one (with hover details) when at most this many are visible
BUCKETS = 1000  # time buckets across the visible width: about one per pixel of the Gantt's plot area


@dataclasses.dataclass(frozen=True)
class Window:
    """A time range [x0, x1] in µs."""

    x0: float
    x1: float

    def __post_init__(self):
        if not (np.isfinite(self.x0) and np.isfinite(self.x1)) or self.x1 <= self.x0:
            object.__setattr__(self, "x1", self.x0 + 1e-3)  # degenerate zoom: keep a positive width

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    def padded(self, lo: float, hi: float, pad: float = 0.5) -> "Window":
        """Widen by ``pad`` x width on each side (clipped to [lo, hi]) so a short pan shows bars at once."""
        w = self.width * pad
        return Window(max(lo, self.x0 - w), min(hi, self.x1 + w)) if hi > lo else self


@dataclasses.dataclass
class Bars:
    """Raw bars: one per span (``index`` = the span's position in the input arrays)."""

    row: np.ndarray  # int64 row number
    kind: np.ndarray  # int64 kind code
    x0: np.ndarray  # float64 µs
    x1: np.ndarray
    index: np.ndarray  # int64
    visible_spans: int  # spans overlapping the window
    raw: bool = True

    def __len__(self) -> int:
        return len(self.row)


@dataclasses.dataclass
class Grid:
    """Aggregated: per row and time bucket, the kind drawn (-1: nothing) and how long it is visible there.

    Bucket ``j`` covers [x0 + j * bucket_us, x0 + (j + 1) * bucket_us); row ``i`` is row ``first_row + i``.
    """

    level: np.ndarray  # int8 [rows, buckets]: index into ``priority`` of the kind drawn, -1 for nothing
    priority: list[int]  # kind codes, bottom to top
    visible_us: np.ndarray  # float32 [rows, buckets], time the drawn kind is the visible one (0 where empty)
    x0: float
    bucket_us: float
    first_row: int
    visible_spans: int
    raw: bool = False

    @property
    def kind(self) -> np.ndarray:
        """int64 [rows, buckets]: the kind code drawn, -1 for nothing."""
        return np.asarray([-1] + list(self.priority), np.int64)[self.level + 1]

    def __len__(self) -> int:  # cells with a kind drawn: the aggregated "bars"
        return int(np.count_nonzero(self.level >= 0))


def overlapping(start: np.ndarray, end: np.ndarray, window: Window) -> np.ndarray:
    """Indices of the spans that overlap the window (a zero-length span on its edge counts)."""
    return np.flatnonzero((end >= window.x0) & (start <= window.x1))


def level_of_detail(
    row: np.ndarray,
    kind: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    window: Window,
    n_rows: int,
    priority: list[int],
    buckets: int = BUCKETS,
    raw_limit: int = RAW_LIMIT,
) -> Bars | Grid:
    """Raw bars when few spans are visible, else the grid of visible kinds computed exactly for ``window``.

    ``row`` is in [0, n_rows); ``priority`` lists kind codes bottom to top (spans of other kinds are ignored).
    This is the direct computation (cost grows with the visible spans); ``pyramid.py`` serves zoomed-out
    views of big traces from precomputed sums instead.
    """
    idx = overlapping(start, end, window)
    idx = idx[np.isin(kind[idx], priority)]
    if len(idx) <= raw_limit:
        return Bars(row=row[idx].astype(np.int64), kind=kind[idx].astype(np.int64), x0=start[idx].astype(np.float64),
                    x1=end[idx].astype(np.float64), index=idx.astype(np.int64), visible_spans=len(idx))
    vis = visible_time(row[idx], kind[idx], start[idx], end[idx], window, n_rows, priority, buckets)
    return winners(vis, window.x0, window.width / buckets, priority, first_row=0, visible_spans=len(idx))


def visible_time(row, kind, start, end, window: Window, n_rows: int, priority: list[int], buckets: int) -> np.ndarray:
    """[len(priority), n_rows, buckets] float64: per kind (bottom to top), row and bucket, the time in the
    bucket where that kind is the top-most one present.  Per row and bucket the kinds' times sum to the
    union of all spans (no time counted twice, none lost).  Kinds come first so each kind's plane is one
    contiguous block: ``winners`` walks the planes."""
    r, k, s, e = _sorted(row, kind, start, end, window)
    out = np.zeros((len(priority), n_rows, buckets))
    rank = np.full(max(priority) + 1, -1, np.int64)
    rank[priority] = np.arange(len(priority))
    kr = rank[k]
    off = window.width * 2 + 1.0  # rows apart on one time line: one sorted key and one running max serve all
    key_s, key_e = s + r * off, e + r * off
    merged = (np.zeros(0), np.zeros(0))  # union of the kinds above, as disjoint intervals on the keyed line
    above = np.zeros((n_rows, buckets))  # union coverage of the kinds above the current one
    for level in range(len(priority) - 1, -1, -1):  # top-most kind first
        m = kr == level
        merged = _merge_intervals(*merged, key_s[m], key_e[m])
        mr = np.floor(merged[0] / off).astype(np.int64)
        union = coverage(mr, np.zeros(len(mr), np.int64), merged[0] - mr * off + window.x0,
                         merged[1] - mr * off + window.x0, window, n_rows, 1, buckets)[:, 0, :]
        out[level] = union - above
        above = union
    return out


def winners(vis: np.ndarray, x0: float, bucket_us: float, priority: list[int], first_row: int,
            visible_spans: int) -> Grid:
    """The grid drawn from visible times ``vis`` [kinds bottom to top, rows, buckets].

    Written with arithmetic on int8 planes rather than masked assignment or np.where, which are several
    times slower on the unpredictable masks of a busy trace (this runs on every zoomed-out view).
    """
    w = bucket_us
    n_kinds = vis.shape[0]
    best = vis[n_kinds - 1].copy()
    level = np.full(best.shape, n_kinds - 1, np.int8)  # index into priority
    for lv in range(n_kinds - 2, -1, -1):  # top-most first: a tie goes to the kind drawn on top
        more = (vis[lv] > best).view(np.int8)
        level += more * (np.int8(lv) - level)
        np.maximum(best, vis[lv], out=best)
    union = vis.sum(axis=0)
    empty = ((best <= w * 1e-6) | (w - union > best)).view(np.int8)  # idle covers more than any kind
    level -= empty * (level + np.int8(1))  # -> -1
    # a kind visible somewhere in a row but winning no bucket there (short stores amid idle time) still gets
    # the one bucket where it shows most, so nothing present is drawn as absent; higher kinds go last and win
    for lv in range(n_kinds):
        v = vis[lv]
        lost = (v.max(axis=1, initial=0.0) > w * 1e-6) & ~(level == lv).any(axis=1)
        if lost.any():
            rows = np.flatnonzero(lost)
            b = np.argmax(v[rows], axis=1)
            level[rows, b] = lv
            best[rows, b] = v[rows, b]
    best = np.minimum(best, w) * (level >= 0)
    return Grid(level=level, priority=list(priority), visible_us=best.astype(np.float32, copy=False), x0=float(x0),
                bucket_us=float(w), first_row=first_row, visible_spans=visible_spans)


def _sorted(row, kind, start, end, window: Window):
    """Spans clipped to the window (times relative to its start), ordered by (row, start)."""
    s = np.clip(start.astype(np.float64), window.x0, window.x1) - window.x0
    e = np.clip(end.astype(np.float64), window.x0, window.x1) - window.x0
    r = row.astype(np.int64)
    order = np.argsort(r.astype(np.int32), kind="stable")  # cheap when rows are already grouped
    r_o, s_o = r[order], s[order]
    if len(r) > 1 and not np.all((np.diff(s_o) >= 0) | (np.diff(r_o) != 0)):
        order = np.lexsort((s, r))  # starts not sorted within rows: sort properly
    return r[order], kind[order], s[order], e[order]


def _merge_intervals(a_s, a_e, b_s, b_e) -> tuple[np.ndarray, np.ndarray]:
    """Union of disjoint sorted intervals ``a`` and start-sorted intervals ``b``, as disjoint sorted intervals."""
    if not len(b_s):
        return a_s, a_e
    pos = np.searchsorted(a_s, b_s, side="right") + np.arange(len(b_s))  # where b lands in the merged order
    n = len(a_s) + len(b_s)
    s, e = np.empty(n), np.empty(n)
    is_b = np.zeros(n, bool)
    is_b[pos] = True
    s[pos], e[pos] = b_s, b_e
    s[~is_b], e[~is_b] = a_s, a_e
    reach = np.maximum.accumulate(e)
    gap = np.r_[True, s[1:] > reach[:-1]]  # a new interval starts where nothing before reaches it
    first = np.flatnonzero(gap)
    last = np.r_[first[1:] - 1, n - 1]
    return s[first], reach[last]


def coverage(row, kind, start, end, window: Window, n_rows: int, n_kinds: int, buckets: int) -> np.ndarray:
    """Time (µs) the spans of each kind cover in each bucket of each row, overlaps counted twice.

    Returns [n_rows, n_kinds, buckets].  Spans are clipped to the window.
    """
    w = window.width / buckets
    s = np.clip(np.asarray(start, np.float64), window.x0, window.x1) - window.x0
    e = np.clip(np.asarray(end, np.float64), window.x0, window.x1) - window.x0
    fb = np.minimum((s / w).astype(np.int64), buckets - 1)
    lb = np.minimum((e / w).astype(np.int64), buckets - 1)
    base = (np.asarray(row, np.int64) * n_kinds + np.asarray(kind, np.int64)) * (buckets + 1)
    size = n_rows * n_kinds * (buckets + 1)
    same = fb == lb
    # spans inside one bucket add their length; longer ones add a partial first and last bucket, and the
    # buckets in between, entirely covered, are filled through a difference array (+1, -1, cumsum, x w)
    direct = np.zeros(size)  # (bincount of nothing is int64, so accumulate into floats explicitly)
    direct += np.bincount(base[same] + fb[same], weights=e[same] - s[same], minlength=size)
    m = ~same
    direct += np.bincount(base[m] + fb[m], weights=(fb[m] + 1) * w - s[m], minlength=size)
    direct += np.bincount(base[m] + lb[m], weights=e[m] - lb[m] * w, minlength=size)
    inner = m & (lb > fb + 1)
    diff = np.zeros(size)
    diff += np.bincount(base[inner] + fb[inner] + 1, minlength=size)
    diff -= np.bincount(base[inner] + lb[inner], minlength=size)
    cov = direct.reshape(-1, buckets + 1) + np.cumsum(diff.reshape(-1, buckets + 1), axis=1) * w
    return cov[:, :buckets].reshape(n_rows, n_kinds, buckets)


def thin_marks(row: np.ndarray, x: np.ndarray, window: Window, limit: int, buckets: int = BUCKETS):
    """Instruction boundary marks in the window; above ``limit``, at most one per (row, bucket), snapped."""
    keep = (x >= window.x0) & (x <= window.x1)
    row, x = row[keep], x[keep]
    if len(x) <= limit:
        return row, x
    w = window.width / buckets
    b = np.minimum(((x - window.x0) / w).astype(np.int64), buckets - 1)
    key = np.unique(row.astype(np.int64) * buckets + b)
    return key // buckets, window.x0 + (key % buckets) * w
