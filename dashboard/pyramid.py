"""A trace's multi-resolution summary: exact visible time per (row, kind, bucket) at power-of-two widths.

Built once per trace and filter set (``prepared.py`` caches it), so a zoomed-out view is a slice of a
precomputed level, then the per-bucket decision of ``lod.winners``: a few ms whatever the span count.

Why it is exact: the time a kind is the visible (top-most) one in a bucket is additive over time, so a
bucket of level L + 1 holds the sum of its two buckets of level L, and every level conserves each row's
time per kind (tests/test_dashboard_lod.py checks both against a direct computation).

Level 0 has ``buckets0`` buckets over the trace's extent, sized so that (1) the views that still aggregate,
those with more than ``lod.RAW_LIMIT`` spans in sight, find a level with about a pixel per bucket, and
(2) it holds at most ``MAX_CELLS`` (rows x kinds x buckets) float32 values: 16 MB, 32 MB with its levels.
Views narrower than level 0 allows (zoomed in, yet too many spans for raw drawing) go back to the direct
computation of ``lod.level_of_detail`` over the spans in sight, which are then a small share of the trace.

Instruction boundaries get the same treatment: a count per (SM, bucket) per level, so a zoomed-out view
draws one tick per pixel that holds a boundary.
"""

from __future__ import annotations

import math

import numpy as np

from dashboard import lod

MAX_CELLS = 4_000_000


def finest_buckets(n_spans: int, n_rows: int, n_kinds: int, target: int, raw_limit: int) -> int:
    """Level-0 bucket count: a power of two, enough that a window holding ``raw_limit`` spans (if spread
    evenly) still gets ``target`` buckets, within ``MAX_CELLS``; never fewer than ``target``."""
    want = target * max(1.0, n_spans / max(1, raw_limit))
    cap = MAX_CELLS // max(1, n_rows * n_kinds)
    b = 2 ** math.ceil(math.log2(max(want, 1)))
    while b > cap and b > target:
        b //= 2
    return max(b, 2 ** math.ceil(math.log2(max(target, 1))))


class Pyramid:
    def __init__(self, row, kind, start, end, n_rows: int, priority: list[int], extent: tuple[float, float],
                 buckets0: int, mark_row=None, mark_x=None, n_mark_rows: int = 0):
        self.priority = list(priority)
        self.n_rows = n_rows
        self.t0 = float(extent[0])
        self.width0 = (float(extent[1]) - self.t0) / buckets0
        window = lod.Window(self.t0, self.t0 + self.width0 * buckets0)
        vis = lod.visible_time(row, kind, start, end, window, n_rows, priority, buckets0).astype(np.float32)
        self.levels = [vis]  # level L: [kinds, rows, buckets of width0 * 2**L]
        while self.levels[-1].shape[2] > 1:
            v = self.levels[-1]
            self.levels.append(v.reshape(v.shape[0], v.shape[1], -1, 2).sum(axis=3))
        self.marks = []
        if mark_x is not None and n_mark_rows:
            b = np.clip(((np.asarray(mark_x) - self.t0) / self.width0).astype(np.int64), 0, buckets0 - 1)
            m = np.bincount(np.asarray(mark_row, np.int64) * buckets0 + b,
                            minlength=n_mark_rows * buckets0).reshape(n_mark_rows, buckets0).astype(np.int32)
            self.marks = [m]
            while self.marks[-1].shape[1] > 1:
                self.marks.append(self.marks[-1].reshape(n_mark_rows, -1, 2).sum(axis=2))

    @property
    def nbytes(self) -> int:
        return sum(v.nbytes for v in self.levels) + sum(m.nbytes for m in self.marks)

    def level_for(self, window: lod.Window, target: int) -> int | None:
        """The level whose buckets across the window number closest to ``target`` (0.71x to 1.41x of it);
        None when even level 0 is too coarse for the window."""
        ratio = window.width / (target * self.width0)  # bucket width wanted, in level-0 buckets
        level = int(math.floor(math.log2(ratio) + 0.5)) if ratio > 0 else -1
        return None if level < 0 else min(level, len(self.levels) - 1)

    def _columns(self, window: lod.Window, level: int) -> tuple[int, int, float]:
        w = self.width0 * 2 ** level
        n = self.levels[level].shape[2]
        b0 = max(0, int(math.floor((window.x0 - self.t0) / w)))
        b1 = min(n, int(math.ceil((window.x1 - self.t0) / w)))
        return b0, max(b1, b0 + 1), w

    def grid(self, window: lod.Window, rows: tuple[int, int], level: int, visible_spans: int) -> lod.Grid:
        """The drawn grid for rows [rows[0], rows[1]) over the window, from level ``level``."""
        b0, b1, w = self._columns(window, level)
        vis = self.levels[level][:, rows[0]:rows[1], b0:b1]
        return lod.winners(vis, self.t0 + b0 * w, w, self.priority, first_row=rows[0], visible_spans=visible_spans)

    def marks_in(self, window: lod.Window, sms: tuple[int, int], level: int) -> tuple[np.ndarray, np.ndarray]:
        """(SM, x at the bucket's middle) of each bucket of the window holding an instruction boundary."""
        if not self.marks:
            return np.zeros(0, np.int64), np.zeros(0)
        b0, b1, w = self._columns(window, level)
        m = self.marks[level][sms[0]:sms[1] + 1, b0:b1]
        r, c = np.nonzero(m)
        return r + sms[0], self.t0 + (b0 + c + 0.5) * w
