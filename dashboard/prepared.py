"""One trace under one filter set, ready for any view: the spans that pass, sorted by start, and the pyramid.

``GanttData`` holds a whole trace; a view of the Gantt needs only the spans that pass the kind, opcode and
sequence filters, and, zoomed out, the pyramid of their visible time.  Both are computed once per filter set
and kept (``for_filters``, a small LRU per trace), so a zoom or pan costs a binary search for the spans in
sight plus either drawing those spans raw or slicing a pyramid level.  The SM range and the y zoom are not
part of the key: they select rows at view time.
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

from dashboard import lod
from dashboard.data import Filters, GanttData
from dashboard.pyramid import Pyramid, finest_buckets
from mlaprof.trace.schema import KIND_NAMES, ROLE_NAMES

BOUNDARY_LIMIT = 20_000  # instruction boundary marks drawn exactly; above it, one per pixel per row
CACHE_PER_TRACE = 3  # filter sets kept per trace (each up to ~40 MB with its pyramid)


@dataclasses.dataclass
class Selection:
    """What one view draws: raw bars or an aggregated grid, and the instruction boundary marks."""

    drawn: lod.Bars | lod.Grid
    mark_sm: np.ndarray
    mark_x: np.ndarray


class Prepared:
    def __init__(self, data: GanttData, f: Filters, shown: list[str]):
        self.split = f.split_roles
        self.per_sm = len(ROLE_NAMES) if f.split_roles else 1
        self.n_rows = data.sm_count * self.per_sm
        self.priority = [KIND_NAMES.index(k) for k in shown]
        every_sm = dataclasses.replace(f, sm_range=None)
        idx = np.flatnonzero(data.mask(every_sm, shown))
        idx = idx[np.argsort(data.start_us[idx], kind="stable")]
        self.idx = idx  # positions in the whole trace, by start time
        self.start, self.end = data.start_us[idx], data.end_us[idx]
        self.row = data.bar_rows(idx, f.split_roles)
        self.kind = data.spans.kind[idx].astype(np.int64)
        self.max_dur = float((self.end - self.start).max(initial=0.0))
        self.extent = (min(0.0, float(self.start.min(initial=0.0))),
                       max(data.makespan_us, float(self.end.max(initial=0.0)), 1e-3))
        sm, x = data.boundary_positions(every_sm) if f.boundaries else (np.zeros(0, np.int64), np.zeros(0))
        order = np.argsort(x, kind="stable")
        self.mark_sm, self.mark_x = sm[order].astype(np.int64), x[order]
        self.sm_count = data.sm_count
        self._pyramid: Pyramid | None = None
        self._build_lock = threading.Lock()  # callbacks run in threads: one builds, the others wait for it
        self._started = False

    def pyramid(self, target: int = lod.BUCKETS, raw_limit: int = lod.RAW_LIMIT) -> Pyramid:
        """The pyramid, built now if nobody has yet (blocks while another thread builds it)."""
        with self._build_lock:
            if self._pyramid is None:
                b0 = finest_buckets(len(self.idx), self.n_rows, len(self.priority), target, raw_limit)
                self._pyramid = Pyramid(self.row, self.kind, self.start, self.end, self.n_rows, self.priority,
                                        self.extent, b0, self.mark_sm, self.mark_x, self.sm_count)
            return self._pyramid

    def ready_pyramid(self, target: int = lod.BUCKETS, raw_limit: int = lod.RAW_LIMIT) -> Pyramid | None:
        """The pyramid if built; else None, and it starts building in the background.  A new filter set's
        first view is then computed directly (what a view cost before the pyramid), not made to wait for a
        build that costs about twice that, and the zooms after it get the pyramid."""
        if self._pyramid is None and not self._started:
            self._started = True
            threading.Thread(target=self.pyramid, args=(target, raw_limit), daemon=True).start()
        return self._pyramid

    def select(self, window: lod.Window, sms: tuple[int, int], raw_limit: int = lod.RAW_LIMIT,
               buckets: int = lod.BUCKETS) -> Selection:
        """Bars for SMs sms[0]..sms[1] in ``window``: raw (over the window padded for panning) when at most
        ``raw_limit`` spans are in sight, else the grid of the window at about ``buckets`` per width."""
        rows = (sms[0] * self.per_sm, (sms[1] + 1) * self.per_sm)
        padded = window.padded(*self.extent)
        lo = int(np.searchsorted(self.start, padded.x0 - self.max_dur, "left"))
        hi = int(np.searchsorted(self.start, padded.x1, "right"))
        keep = self.end[lo:hi] >= padded.x0
        if rows != (0, self.n_rows):
            keep &= (self.row[lo:hi] >= rows[0]) & (self.row[lo:hi] < rows[1])
        count = int(np.count_nonzero(keep))
        if count <= raw_limit:
            pos = lo + np.flatnonzero(keep)
            bars = lod.Bars(row=self.row[pos], kind=self.kind[pos], x0=self.start[pos], x1=self.end[pos],
                            index=self.idx[pos], visible_spans=count)
            return Selection(bars, *self._marks(padded, sms, buckets))
        pyr = self.ready_pyramid(buckets, raw_limit)
        level = pyr.level_for(window, buckets) if pyr is not None else None
        if level is not None:
            ms, mx = pyr.marks_in(window, sms, level)
            return Selection(pyr.grid(window, rows, level, count), ms, mx)
        # zoomed in past the pyramid's finest level, yet too many spans to draw raw (then the spans in sight
        # are a small share of the trace, by construction of level 0), or the pyramid is still being built:
        # compute this window directly from the spans in sight
        pos = lo + np.flatnonzero(keep)
        vis = lod.visible_time(self.row[pos] - rows[0], self.kind[pos], self.start[pos], self.end[pos], window,
                               rows[1] - rows[0], self.priority, buckets)
        grid = lod.winners(vis, window.x0, window.width / buckets, self.priority, rows[0], count)
        return Selection(grid, *self._marks(window, sms, buckets))

    def _marks(self, window: lod.Window, sms: tuple[int, int], buckets: int):
        lo = int(np.searchsorted(self.mark_x, window.x0, "left"))
        hi = int(np.searchsorted(self.mark_x, window.x1, "right"))
        sm, x = self.mark_sm[lo:hi], self.mark_x[lo:hi]
        keep = (sm >= sms[0]) & (sm <= sms[1])
        return lod.thin_marks(sm[keep], x[keep], window, BOUNDARY_LIMIT, buckets)


def key(f: Filters, shown: list[str]) -> tuple:
    return (tuple(shown), tuple(f.opcodes), tuple(sorted(f.seqs)), f.split_roles, f.boundaries)


def for_filters(data: GanttData, f: Filters, shown: list[str]) -> Prepared:
    """The cached ``Prepared`` of this trace for these filters (built on first use)."""
    k = key(f, shown)
    cache, lock = data.prepared_cache, data.prepared_lock
    with lock:
        if k in cache:
            cache[k] = cache.pop(k)  # most recently used last
            return cache[k]
    p = Prepared(data, f, shown)
    with lock:
        p = cache.setdefault(k, p)
        while len(cache) > CACHE_PER_TRACE:
            cache.pop(next(iter(cache)))
    return p
