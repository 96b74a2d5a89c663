"""Traces opened by the dashboard, cached: the file, its analysis, its Gantt arrays, and the browser rows.

A trace is read once (memory-mapped), analysed once with ``mlaprof.analysis`` and diffed with
``mlaprof.diff``; zooming and filtering then only index cached arrays.  Entries are keyed by the file's
real path, size and modification time, so a trace rewritten in place (``write_trace`` renames a new file
over it) is read again.  A file that cannot be used keeps its one-line error, shown as an error card.
Loading also builds what the default (unfiltered, unzoomed) Gantt needs (``figures.warm``: the filtered
arrays and, for big traces, the pyramid), so the first figure of a trace costs what any later one does.
Each trace is loaded by one thread at a time: callbacks run in parallel threads, and a page that asks for
the Gantt and the summary of a new trace at once must not read and analyse it twice.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
from pathlib import Path

from dashboard import figures
from dashboard.data import GanttData
from dashboard.files import TraceDir
from mlaprof import analysis, diff
from mlaprof.errors import UserError
from mlaprof.trace.io import Trace, read_trace


@dataclasses.dataclass
class Loaded:
    rel: str
    trace: Trace
    analysis: analysis.Analysis
    gantt: GanttData


@dataclasses.dataclass
class Row:
    """One line of the trace browser (every number from the library's analysis)."""

    path: str
    ok: bool
    error: str = ""
    workload: str = ""
    scheduler: str = ""
    gpu: str = ""
    source: str = ""
    date: str = ""
    spans: int = 0
    makespan_us: float | None = None
    kernel_us: float | None = None
    busy_pct: float | None = None

    def to_record(self) -> dict:
        r = dataclasses.asdict(self)
        r["status"] = "ok" if self.ok else "error"
        return r


def _busy_share(an: analysis.Analysis) -> float | None:
    """SM utilisation: the library's busy time over all SM time (busy + wait + idle, i.e. SMs x makespan)."""
    total = an.busy_us + an.wait_us + an.idle_us
    return round(100.0 * an.busy_us / total, 1) if total > 0 else None


def _row(rel: str, ld: Loaded) -> Row:
    m, an = ld.trace.meta, ld.analysis
    return Row(path=rel, ok=True, workload=str(m.workload.get("name", "?")), scheduler=m.scheduler,
               gpu=m.gpu_name or "—", source=m.source, date=(m.created or "")[:19].replace("T", " "),
               spans=an.num_spans, makespan_us=an.makespan_us, kernel_us=m.kernel_time_us, busy_pct=_busy_share(an))


class TraceStore:
    def __init__(self, tdir: TraceDir, capacity: int = 6):
        self.dir = tdir
        self.capacity = capacity
        self._loaded: collections.OrderedDict[tuple, Loaded] = collections.OrderedDict()
        self._rows: dict[tuple, Row] = {}
        self._diffs: collections.OrderedDict[tuple, diff.Diff] = collections.OrderedDict()
        self._lock = threading.RLock()  # Flask serves callbacks from several threads
        self._loading: dict[tuple, threading.Lock] = {}  # one per trace being loaded

    def _key(self, rel: str) -> tuple:
        real = self.dir.resolve(rel)  # the safety gate: raises for anything outside DIR
        st = real.stat()
        return (str(real), st.st_size, st.st_mtime_ns)

    def load(self, rel: str) -> Loaded:
        """The trace at ``rel`` under DIR, analysed; UserError (one line) when it cannot be used."""
        key = self._key(rel)
        with self._lock:
            if key in self._loaded:
                self._loaded.move_to_end(key)
                return self._loaded[key]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # a second caller for the same trace waits here, then finds it loaded
            with self._lock:
                if key in self._loaded:
                    return self._loaded[key]
            try:
                return self._read(rel, key)
            finally:
                with self._lock:
                    self._loading.pop(key, None)

    def _read(self, rel: str, key: tuple) -> Loaded:
        real = key[0]
        try:
            trace = read_trace(Path(real))
            an = analysis.analyze(trace)
            gantt = GanttData.of(trace, rel, an.critical_path)
            figures.warm(gantt)
        except UserError as e:
            raise UserError(str(e).replace(real, rel)) from None  # the page shows paths under DIR only
        except Exception as e:  # noqa: BLE001 - a damaged or foreign file must give an error card, not a 500
            first = (str(e).splitlines() or [""])[0].replace(real, rel)
            raise UserError(f"{rel}: cannot use this file ({type(e).__name__}: {first})") from None
        ld = Loaded(rel=rel, trace=trace, analysis=an, gantt=gantt)
        with self._lock:
            self._loaded[key] = ld
            while len(self._loaded) > self.capacity:
                self._loaded.popitem(last=False)
        return ld

    def row(self, rel: str) -> Row:
        try:
            key = self._key(rel)
        except UserError as e:
            return Row(path=rel, ok=False, error=str(e))
        with self._lock:
            if key in self._rows:
                return self._rows[key]
        try:
            r = _row(rel, self.load(rel))
        except UserError as e:
            r = Row(path=rel, ok=False, error=str(e))
        with self._lock:
            self._rows[key] = r
        return r

    def catalogue(self) -> list[Row]:
        """Every trace under DIR, readable or not (unreadable ones carry their error)."""
        return [self.row(rel) for rel in self.dir.discover()]

    def diff(self, rel_a: str, rel_b: str) -> diff.Diff:
        a, b = self.load(rel_a), self.load(rel_b)
        key = (self._key(rel_a), self._key(rel_b))
        with self._lock:
            if key in self._diffs:
                return self._diffs[key]
        try:
            d = diff.diff(a.trace, b.trace, a.analysis, b.analysis)
        except Exception as e:  # noqa: BLE001 - inconsistent metadata in either file: an error card, not a 500
            raise UserError(f"cannot diff {rel_a} and {rel_b} ({type(e).__name__}: {e})") from None
        with self._lock:
            self._diffs[key] = d
            while len(self._diffs) > self.capacity:
                self._diffs.popitem(last=False)
        return d

