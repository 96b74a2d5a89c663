"""A trace's spans prepared for drawing (µs floats, row positions) and the Gantt filters.

Built once per trace file and cached by ``store.py``; every zoom or filter change only indexes these arrays.
The columns come from ``mlaprof.analysis.Spans`` (the library's one reading of a trace into numpy).
"""

from __future__ import annotations

import dataclasses
import threading

import numpy as np

from mlaprof.analysis import Spans
from mlaprof.format import Kind, Role
from mlaprof.trace.io import Trace
from mlaprof.trace.schema import KIND_NAMES, OPCODE_NAMES, ROLE_NAMES

BAR_KINDS = [k for k in KIND_NAMES if k != "instruction"]  # INSTRUCTION spans are drawn as boundaries, not bars
ROLE_OFFSET = {Role.CONTROLLER: -0.3, Role.PRODUCER: 0.0, Role.CONSUMER: 0.3}  # sub-row position inside an SM row


@dataclasses.dataclass(frozen=True)
class Filters:
    """What the user asked to see. Empty ``seqs`` means every sequence; ``sm_range`` is inclusive."""

    kinds: tuple[str, ...] = tuple(BAR_KINDS)
    opcodes: tuple[str, ...] = ("partial", "reduction")
    sm_range: tuple[int, int] | None = None
    seqs: tuple[int, ...] = ()
    split_roles: bool = False
    boundaries: bool = True
    critical: bool = True  # the analysis' critical path drawn over the bars


@dataclasses.dataclass(frozen=True)
class CriticalPath:
    """``mlaprof.analysis``'s critical path, prepared for drawing: per step its SM, the time from which it
    was on the path (its binding wait's end, else its start) to its end, and for a wait the SM and time of
    the release it waited for (-1 and NaN otherwise), and a hover line."""

    sm: np.ndarray
    begin_us: np.ndarray
    end_us: np.ndarray
    from_sm: np.ndarray
    release_us: np.ndarray
    text: list[str]

    @classmethod
    def of(cls, steps) -> "CriticalPath":
        n = len(steps)
        text = []
        for k, s in enumerate(steps):
            w = s.waited_for
            why = (f"waited {w['wait_us']:.2f} µs for task {w['task']} on SM {w['sm']}" if w else
                   {"queue": "queued behind the SM's previous instruction", "start": "first on the path"}.get(
                       s.reason, s.reason))
            text.append(f"<b>critical path</b> {k + 1}/{n} · SM {s.sm} #{s.instr} · {s.opcode} seq {s.seq} "
                        f"KV [{s.kv_start}, {s.kv_end})<br>{s.start_us:.3f} → {s.end_us:.3f} µs · {why}")
        return cls(
            sm=np.asarray([s.sm for s in steps], np.float32),
            begin_us=np.asarray([s.waited_for["wait_end_us"] if s.waited_for else s.start_us for s in steps], np.float32),
            end_us=np.asarray([s.end_us for s in steps], np.float32),
            from_sm=np.asarray([s.waited_for["sm"] if s.waited_for else -1 for s in steps], np.float32),
            release_us=np.asarray([s.waited_for["release_us"] if s.waited_for else np.nan for s in steps], np.float32),
            text=text,
        )


@dataclasses.dataclass
class GanttData:
    spans: Spans
    start_us: np.ndarray  # float64
    end_us: np.ndarray
    sm_count: int
    makespan_us: float
    label: str  # shown in titles: the file's path under DIR
    # from the trace's analysis, where the caller has one
    critical: CriticalPath | None = dataclasses.field(default=None, compare=False)
    # per filter set, the spans that pass and their pyramid (dashboard.prepared); not part of equality
    prepared_cache: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)
    prepared_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def of(cls, trace: Trace, label: str, critical_path=None) -> "GanttData":
        """``critical_path``: ``Analysis.critical_path`` of the same trace, to draw over the bars."""
        sp = Spans.of(trace)
        sm_count = max(int(trace.meta.sm_count), int(sp.sm.max()) + 1 if len(sp) else 1)
        return cls(spans=sp, start_us=sp.start / 1000.0, end_us=sp.end / 1000.0, sm_count=sm_count,
                   makespan_us=trace.makespan_ns / 1000.0, label=label,
                   critical=CriticalPath.of(critical_path) if critical_path else None)

    @property
    def sequences(self) -> list[int]:
        return sorted(int(s) for s in np.unique(self.spans.seq))

    def kinds_present(self) -> list[str]:
        present = np.unique(self.spans.kind)
        return [KIND_NAMES[c] for c in present if 0 <= c < len(KIND_NAMES) and KIND_NAMES[c] in BAR_KINDS]

    def mask(self, f: Filters, kinds: list[str] | tuple[str, ...]) -> np.ndarray:
        """Spans of the given kinds that pass the opcode, SM-range and sequence filters."""
        sp = self.spans
        m = np.isin(sp.kind, [KIND_NAMES.index(k) for k in kinds if k in KIND_NAMES])
        m &= np.isin(sp.opcode, [OPCODE_NAMES.index(o) for o in f.opcodes if o in OPCODE_NAMES])
        if f.sm_range is not None:
            m &= (sp.sm >= f.sm_range[0]) & (sp.sm <= f.sm_range[1])
        if f.seqs:
            m &= np.isin(sp.seq, np.asarray(f.seqs, dtype=sp.seq.dtype))
        return m

    def bar_rows(self, idx: np.ndarray, split_roles: bool) -> np.ndarray:
        """Integer row per span: the SM, or 3 x SM + role when roles get their own sub-rows."""
        sm = self.spans.sm[idx].astype(np.int64)
        if not split_roles:
            return sm
        return sm * len(ROLE_NAMES) + np.clip(self.spans.role[idx], 0, len(ROLE_NAMES) - 1)

    def boundary_positions(self, f: Filters) -> tuple[np.ndarray, np.ndarray]:
        """(sm, x µs) of every instruction start and end that passes the filters."""
        idx = np.flatnonzero(self.mask(f, ["instruction"]))
        sm = self.spans.sm[idx]
        return np.r_[sm, sm], np.r_[self.start_us[idx], self.end_us[idx]]


def row_to_y(row: np.ndarray, split_roles: bool) -> np.ndarray:
    """Plot y of an integer row: the SM index, shifted by the role's offset when roles are split."""
    if not split_roles:
        return row.astype(np.float32)
    n = len(ROLE_NAMES)
    offsets = np.array([ROLE_OFFSET[Role(r)] for r in range(n)], np.float32)
    return (row // n).astype(np.float32) + offsets[row % n]


assert KIND_NAMES.index("instruction") == Kind.INSTRUCTION
