"""What one trace says: where the time went, per SM and per op, and the critical path that set the makespan.

Everything is vectorised over the span columns (a 1,000,000-span trace analyses in well under 2 s); only the
critical-path walk is a Python loop, and it visits at most one step per instruction.

Definitions (all times in µs from the kernel start, the trace's time origin):

* makespan: ``Trace.makespan_ns`` (latest span end).
* per SM, the three parts of the makespan, disjoint and summing to it:
  - busy: the length of the union of all SETUP, LOAD, COMPUTE and STORE spans of any role on that SM.
    INSTRUCTION spans are excluded because they enclose the waits.
  - wait: the length of the union of WAIT spans that is *not* covered by busy time, i.e. time in which the
    SM does nothing but wait on a semaphore (a producer loading an earlier input while the controller waits
    on the next one counts as busy).
  - idle: makespan - busy - wait (before the SM's first span, between spans, after its last span).
* finish (per SM): its latest span end. Load imbalance: the latest finish over the mean finish of the SMs that
  recorded at least one span (1.0 means every SM finished together).
* by_kind_us: the sum of span durations per kind, all SMs and roles (overlapping spans of two roles both
  count). by_opcode_us: the sum of INSTRUCTION span durations per opcode. op_stats: count, mean, p50, p90 and
  max of INSTRUCTION span durations per opcode.
* achieved TFLOPS and GB/s: ``Workload.flops`` and ``.bytes`` over the makespan, and over the metadata's
  ``kernel_time_us`` (CUDA-event time of the launch) when the trace has it.
* steal groups (schedules whose split sequences' partials share their tiles, ``Task.steal``): per group, its
  members, the tiles each computed (COMPUTE spans) and the spread of the members' last tile ends, which is
  what the groups exist to shrink.
* KV stream: the partials' KV tile loads (LOAD spans with a tile index; the Q load has none): SMs, tiles,
  first start, last end, and the mean rate over that span (whole tiles of ``costmodel.TILE_BYTES``). Then
  the stream's middle (its span less 20% at each end, where the ramp and the tail are not): the median
  interval between two tile loads ending on one SM, the median number of SMs with a tile load in flight,
  and the rate the two imply (SMs x tile / interval). A rate that stays put while the interval grows with
  the SMs is HBM-bound; an interval that stays put while the rate grows with them is bound by each SM.
* critical path time: the path's span from 0 to its end, split by what was happening on it. Each step counts from
  its binding wait's end (a wait step) or its start, but not before the previous step's end, to its own end;
  within that, each instant goes to the first kind active on the step's SM for that instruction, in the order
  compute, store, setup, load, wait (a load under a compute is hidden; a load alone is the SM waiting on
  KV), and to ``unrecorded`` where none is. Between steps: ``semaphore`` (the previous step's end to the
  binding wait's end: release, its visibility, the poll) and ``queue`` (the gap to the next instruction on
  one SM); ``before_first`` is 0 to the first step. The parts add up to the path's end.
* critical path: start from the instruction that ends last. An instruction was held back either by the
  previous instruction on its SM (reason ``queue``) or by the task its *binding* wait was for (reason
  ``wait``); the walk continues from that predecessor. A wait binds when the task it waited for released its
  semaphore (the end of that task's STORE span, or of its instruction when no STORE span was recorded) after
  the wait began; among binding waits the one that ended last is taken. The wait is the reason only when it
  ended after the previous instruction on the SM did (a controller that fetches ahead may wait while the SM is
  still busy; then the queue held it). The first step, which nothing before it delayed, has reason
  ``start``. Steps are listed first to last.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from mlaprof.format import Kind, Opcode
from mlaprof.trace.io import Trace, read_trace
from mlaprof.trace.schema import KIND_NAMES, OPCODE_NAMES, ROLE_NAMES

WORK_KINDS = (Kind.SETUP, Kind.LOAD, Kind.COMPUTE, Kind.STORE)
NS_PER_US = 1000.0


def _us(ns) -> float:
    return round(float(ns) / NS_PER_US, 4)


@dataclasses.dataclass
class Spans:
    """The trace's columns as numpy arrays; dictionary columns as integer codes into the schema's name lists."""

    sm: np.ndarray
    kind: np.ndarray  # codes into KIND_NAMES (== Kind values)
    role: np.ndarray  # codes into ROLE_NAMES
    opcode: np.ndarray  # codes into OPCODE_NAMES
    instr: np.ndarray
    task: np.ndarray
    start: np.ndarray  # ns
    end: np.ndarray
    seq: np.ndarray
    q_start: np.ndarray
    q_count: np.ndarray
    kv_start: np.ndarray
    kv_end: np.ndarray
    aux: np.ndarray
    wait_task: np.ndarray

    @classmethod
    def of(cls, trace: Trace) -> "Spans":
        ints = {n: np.asarray(trace.col(n)) for n in (
            "sm", "instr", "task", "start_ns", "end_ns", "seq", "q_start", "q_count", "kv_start", "kv_end",
            "aux", "wait_task")}
        return cls(
            sm=ints["sm"].astype(np.int64), kind=trace.codes("kind", KIND_NAMES), role=trace.codes("role", ROLE_NAMES),
            opcode=trace.codes("opcode", OPCODE_NAMES), instr=ints["instr"].astype(np.int64), task=ints["task"],
            start=ints["start_ns"].astype(np.int64), end=ints["end_ns"].astype(np.int64), seq=ints["seq"],
            q_start=ints["q_start"], q_count=ints["q_count"], kv_start=ints["kv_start"], kv_end=ints["kv_end"],
            aux=ints["aux"], wait_task=ints["wait_task"],
        )

    def __len__(self) -> int:
        return len(self.sm)


@dataclasses.dataclass
class Instructions:
    """One row per (SM, instruction index), sorted by SM then index. Times in ns.

    start/end come from the INSTRUCTION span, or from the extent of the instruction's spans when the trace has
    no INSTRUCTION span for it. The ``wait_*`` fields describe the binding wait (see the module docstring);
    ``wait_task`` is -1 when the instruction had none.
    """

    sm: np.ndarray
    instr: np.ndarray
    task: np.ndarray
    opcode: np.ndarray
    seq: np.ndarray
    q_start: np.ndarray
    q_count: np.ndarray
    kv_start: np.ndarray
    kv_end: np.ndarray
    start: np.ndarray
    end: np.ndarray
    release: np.ndarray  # when its result became visible: STORE end, else instruction end
    wait_task: np.ndarray
    wait_start: np.ndarray
    wait_end: np.ndarray

    def __len__(self) -> int:
        return len(self.sm)

    def row_of_task(self) -> np.ndarray:
        """task id -> row (or -1); a task recorded twice keeps its first row."""
        n = int(self.task.max()) + 1 if len(self) else 0
        lut = np.full(max(n, 1), -1, np.int64)
        ok = self.task >= 0
        rows = np.flatnonzero(ok)
        lut[self.task[rows][::-1]] = rows[::-1]  # reversed so the first occurrence wins
        return lut

    def describe(self, i: int) -> dict:
        return {
            "sm": int(self.sm[i]), "instr": int(self.instr[i]), "task": int(self.task[i]),
            "opcode": _name(OPCODE_NAMES, self.opcode[i]), "seq": int(self.seq[i]),
            "q_start": int(self.q_start[i]), "q_count": int(self.q_count[i]),
            "kv_start": int(self.kv_start[i]), "kv_end": int(self.kv_end[i]),
        }


def _name(names: list[str], code) -> str:
    code = int(code)
    return names[code] if 0 <= code < len(names) else "unknown"


def instruction_table(sp: Spans) -> Instructions:
    """Group spans by (SM, instruction index) into one row each, with the binding wait attached."""
    n = len(sp)
    empty = np.zeros(0, np.int64)
    if n == 0:
        return Instructions(*([empty] * 15))
    width = int(sp.instr.max()) + 1
    key = sp.sm * width + sp.instr
    order = np.argsort(key, kind="stable")
    k = key[order]
    first = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
    big = np.iinfo(np.int64).max
    is_ins = sp.kind[order] == Kind.INSTRUCTION
    s, e = sp.start[order], sp.end[order]
    ext_start = np.minimum.reduceat(s, first)
    ext_end = np.maximum.reduceat(e, first)
    ins_start = np.minimum.reduceat(np.where(is_ins, s, big), first)
    ins_end = np.maximum.reduceat(np.where(is_ins, e, -big), first)
    has_ins = ins_start != big
    start = np.where(has_ins, ins_start, ext_start)
    end = np.where(has_ins, ins_end, ext_end)
    is_store = sp.kind[order] == Kind.STORE
    store_end = np.maximum.reduceat(np.where(is_store, e, -big), first)
    release = np.where(store_end != -big, store_end, end)
    pick = order[first]
    ins = Instructions(
        sm=sp.sm[pick], instr=sp.instr[pick], task=sp.task[pick].astype(np.int64), opcode=sp.opcode[pick],
        seq=sp.seq[pick], q_start=sp.q_start[pick], q_count=sp.q_count[pick], kv_start=sp.kv_start[pick],
        kv_end=sp.kv_end[pick], start=start, end=end, release=release,
        wait_task=np.full(len(first), -1, np.int64), wait_start=np.zeros(len(first), np.int64),
        wait_end=np.zeros(len(first), np.int64),
    )
    _attach_binding_waits(sp, ins, key, width)
    return ins


def _attach_binding_waits(sp: Spans, ins: Instructions, key: np.ndarray, width: int) -> None:
    w = np.flatnonzero((sp.kind == Kind.WAIT) & (sp.wait_task >= 0))
    if not w.size or not len(ins):
        return
    task_row = ins.row_of_task()
    wt = sp.wait_task[w].astype(np.int64)
    known = wt < len(task_row)
    w, wt = w[known], wt[known]
    src = task_row[wt]
    w, wt, src = w[src >= 0], wt[src >= 0], src[src >= 0]
    binding = ins.release[src] > sp.start[w]
    w, wt = w[binding], wt[binding]
    if not w.size:
        return
    # per instruction, the binding wait that ended last
    order = np.lexsort((sp.end[w], key[w]))
    w, wt = w[order], wt[order]
    kw = key[w]
    last = np.flatnonzero(np.r_[kw[1:] != kw[:-1], True])
    ins_key = ins.sm * width + ins.instr
    rows = np.searchsorted(ins_key, kw[last])
    ins.wait_task[rows] = wt[last]
    ins.wait_start[rows] = sp.start[w[last]]
    ins.wait_end[rows] = sp.end[w[last]]


@dataclasses.dataclass
class OpStats:
    count: int
    total_us: float
    mean_us: float
    p50_us: float
    p90_us: float
    max_us: float


@dataclasses.dataclass
class CriticalStep:
    sm: int
    instr: int
    task: int
    opcode: str
    seq: int
    q_start: int
    q_count: int
    kv_start: int
    kv_end: int
    start_us: float
    end_us: float
    reason: str  # "start" | "queue" | "wait"
    waited_for: dict | None = None  # the task waited for (reason "wait"), with its SM, operands and release


@dataclasses.dataclass
class Analysis:
    workload: dict
    scheduler: str
    scheduler_params: dict
    source: str
    gpu_name: str
    sm_count: int
    kernel_time_us: float | None
    num_spans: int
    num_instructions: int
    makespan_us: float
    by_kind_us: dict[str, float]
    by_opcode_us: dict[str, float]
    op_stats: dict[str, OpStats]
    busy_us: float  # summed over SMs
    wait_us: float
    idle_us: float
    load_imbalance: float
    tflops: float | None  # over the makespan
    gbps: float | None
    tflops_kernel: float | None  # over kernel_time_us
    gbps_kernel: float | None
    hbm_floor_us: float | None
    sm_busy_us: np.ndarray  # [sm_count]
    sm_wait_us: np.ndarray
    sm_idle_us: np.ndarray
    sm_finish_us: np.ndarray
    sm_instructions: np.ndarray
    critical_path: list[CriticalStep]
    steal_groups: list[dict] = dataclasses.field(default_factory=list)
    kv_stream: dict | None = None
    critical_time_us: dict[str, float] = dataclasses.field(default_factory=dict)
    notes: list[str] = dataclasses.field(default_factory=list)
    instructions: Instructions | None = dataclasses.field(default=None, repr=False)  # for diff; not in JSON

    @property
    def critical_summary(self) -> dict:
        path = self.critical_path
        on_path = {}
        for s in path:
            begin = s.waited_for["wait_end_us"] if s.waited_for else s.start_us
            on_path[s.opcode] = round(on_path.get(s.opcode, 0.0) + s.end_us - begin, 4)
        return {
            "steps": len(path),
            "waits": sum(s.reason == "wait" for s in path),
            "sms": len({s.sm for s in path}),
            "start_us": path[0].start_us if path else 0.0,
            "end_us": path[-1].end_us if path else 0.0,
            "wait_us": round(sum(s.waited_for["wait_us"] for s in path if s.waited_for), 4),
            "on_path_us_by_opcode": on_path,
        }

    def sm_table(self) -> list[dict]:
        return [
            {"sm": i, "instructions": int(self.sm_instructions[i]), "busy_us": round(float(self.sm_busy_us[i]), 4),
             "wait_us": round(float(self.sm_wait_us[i]), 4), "idle_us": round(float(self.sm_idle_us[i]), 4),
             "finish_us": round(float(self.sm_finish_us[i]), 4)}
            for i in range(len(self.sm_busy_us))
        ]

    def to_json(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            if f.name == "instructions" or f.name.startswith("sm_") and f.name != "sm_count":
                continue
            v = getattr(self, f.name)
            if f.name == "op_stats":
                v = {k: dataclasses.asdict(s) for k, s in v.items()}
            elif f.name == "critical_path":
                v = [dataclasses.asdict(s) for s in v]
            out[f.name] = v
        out["critical_summary"] = self.critical_summary
        out["sms"] = self.sm_table()
        return out


def _union_per_sm(sm: np.ndarray, start: np.ndarray, end: np.ndarray, num_sms: int, offset: int) -> np.ndarray:
    """Length of the union of intervals per SM; input sorted by (sm, start), times >= 0, ``offset`` > max end.

    Adding sm * offset keeps SMs apart, so one running maximum serves all SMs: each interval adds what it
    reaches beyond every earlier interval.
    """
    if not len(sm):
        return np.zeros(num_sms)
    s = start + sm * offset
    e = end + sm * offset
    reach = np.maximum.accumulate(e)
    prev = np.r_[np.int64(-1), reach[:-1]]
    gain = np.maximum(0, e - np.maximum(s, prev))
    return np.bincount(sm, weights=gain, minlength=num_sms)[:num_sms]


def _workload_rates(meta, makespan_us: float, notes: list[str]):
    from mlaprof.errors import UserError
    from mlaprof.workloads import Workload

    try:
        w = Workload.from_json(meta.workload)
    except UserError as e:
        notes.append(f"workload metadata unusable, no TFLOPS/GB/s: {e}")
        return None, None, None, None, None

    def rate(amount, us, unit):  # amount per second, in units of ``unit``
        return round(amount / (us * 1e-6) / unit, 4) if us and us > 0 else None

    k = meta.kernel_time_us
    return (rate(w.flops, makespan_us, 1e12), rate(w.bytes, makespan_us, 1e9), rate(w.flops, k, 1e12),
            rate(w.bytes, k, 1e9), round(w.hbm_floor_us(), 4))


def analyze(trace: Trace) -> Analysis:
    sp = Spans.of(trace)
    meta = trace.meta
    notes: list[str] = []
    num_sms = max(int(meta.sm_count), int(sp.sm.max()) + 1 if len(sp) else 0, 1)
    makespan_ns = trace.makespan_ns
    t_min = min(0, int(sp.start.min())) if len(sp) else 0
    dur = sp.end - sp.start

    by_kind = np.bincount(np.clip(sp.kind, 0, None), weights=dur, minlength=len(KIND_NAMES))
    is_ins = sp.kind == Kind.INSTRUCTION
    ins_op, ins_dur = sp.opcode[is_ins], dur[is_ins]
    op_stats, by_opcode = {}, {}
    for code, name in enumerate(OPCODE_NAMES):
        d = ins_dur[ins_op == code]
        if code == Opcode.END and not d.size:
            continue
        by_opcode[name] = _us(d.sum())
        if d.size:
            p50, p90 = np.percentile(d, [50, 90])
            op_stats[name] = OpStats(int(d.size), _us(d.sum()), _us(d.mean()), _us(p50), _us(p90), _us(d.max()))

    # per-SM unions: sort once by (sm, start), then take the work subset and the work-or-wait subset
    offset = makespan_ns - t_min + 1
    order = np.argsort(sp.sm * offset + (sp.start - t_min), kind="stable")
    sm_o, s_o, e_o, k_o = sp.sm[order], sp.start[order] - t_min, sp.end[order] - t_min, sp.kind[order]
    work = np.isin(k_o, WORK_KINDS)
    work_or_wait = work | (k_o == Kind.WAIT)
    busy = _union_per_sm(sm_o[work], s_o[work], e_o[work], num_sms, offset)
    occupied = _union_per_sm(sm_o[work_or_wait], s_o[work_or_wait], e_o[work_or_wait], num_sms, offset)
    wait = occupied - busy
    idle = makespan_ns - occupied  # makespan_ns already runs from min(0, earliest start)
    finish = np.zeros(num_sms)
    if len(sm_o):
        firsts = np.flatnonzero(np.r_[True, sm_o[1:] != sm_o[:-1]])
        finish[sm_o[firsts]] = np.maximum.reduceat(e_o, firsts) + t_min
    present = np.bincount(sp.sm, minlength=num_sms)[:num_sms] > 0
    imbalance = float(finish.max() / finish[present].mean()) if present.any() and finish[present].mean() > 0 else 1.0

    ins = instruction_table(sp)
    sm_instr = np.bincount(ins.sm, minlength=num_sms)[:num_sms] if len(ins) else np.zeros(num_sms, np.int64)
    makespan_us = _us(makespan_ns)
    tflops, gbps, tflops_k, gbps_k, floor = _workload_rates(meta, makespan_us, notes)
    if len(sp) and not is_ins.any():
        notes.append("no INSTRUCTION spans: instruction extents are taken from their other spans")
    path = critical_path(ins)
    return Analysis(
        workload=meta.workload, scheduler=meta.scheduler, scheduler_params=meta.scheduler_params, source=meta.source,
        gpu_name=meta.gpu_name, sm_count=int(meta.sm_count), kernel_time_us=meta.kernel_time_us,
        num_spans=len(sp), num_instructions=len(ins), makespan_us=makespan_us,
        by_kind_us={name: _us(by_kind[i]) for i, name in enumerate(KIND_NAMES)},
        by_opcode_us=by_opcode, op_stats=op_stats,
        busy_us=_us(busy.sum()), wait_us=_us(wait.sum()), idle_us=_us(idle.sum()), load_imbalance=round(imbalance, 6),
        tflops=tflops, gbps=gbps, tflops_kernel=tflops_k, gbps_kernel=gbps_k, hbm_floor_us=floor,
        sm_busy_us=busy / NS_PER_US, sm_wait_us=wait / NS_PER_US, sm_idle_us=idle / NS_PER_US,
        sm_finish_us=finish / NS_PER_US, sm_instructions=sm_instr,
        critical_path=path, steal_groups=steal_groups(meta.tasks or [], sp), kv_stream=kv_stream(sp),
        critical_time_us=critical_time(sp, path), notes=notes,
        instructions=ins,
    )


def steal_groups(tasks: list[dict], sp: Spans) -> list[dict]:
    """Per steal group: sequence, KV range, members, tiles per member (min/max) and the spread of the members'
    last tile ends (µs). Empty when the schedule has none."""
    groups: dict[int, list[dict]] = {}
    for t in tasks:
        if t.get("steal", -1) >= 0:
            groups.setdefault(t["steal"], []).append(t)
    if not groups:
        return []
    comp = sp.kind == Kind.COMPUTE
    task, end = sp.task[comp], sp.end[comp]
    order = np.argsort(task, kind="stable")
    task, end = task[order], end[order]
    ids, first, counts = np.unique(task, return_index=True, return_counts=True)
    last_end = np.maximum.reduceat(end, first) if len(first) else end
    tiles_of = dict(zip(ids.tolist(), counts.tolist()))
    end_of = dict(zip(ids.tolist(), last_end.tolist()))
    out = []
    for g, members in sorted(groups.items()):
        ids_g = [m["id"] for m in members]
        tiles = [tiles_of.get(i, 0) for i in ids_g]
        ends = [end_of[i] for i in ids_g if i in end_of]
        out.append({"group": g, "seq": members[0]["seq"], "kv_start": min(m["kv_start"] for m in members),
                    "kv_end": max(m["kv_end"] for m in members), "members": len(members), "tiles": sum(tiles),
                    "tiles_min": min(tiles), "tiles_max": max(tiles),
                    "end_spread_us": _us(max(ends) - min(ends)) if ends else 0.0})
    return out


STREAM_EDGE = 0.2  # the share of the KV stream's span left out at each end for its steady rate (ramp, tail)
STREAM_SAMPLES = 64  # times in the stream's middle at which the SMs with a load in flight are counted


def kv_stream(sp: Spans) -> dict | None:
    """The KV tile loads' extent and rates (module docstring); None without any. The steady fields are None
    when no SM has two tile loads ending in the stream's middle."""
    from mlaprof.costmodel import TILE_BYTES

    tile = (sp.kind == Kind.LOAD) & (sp.aux >= 0) & (sp.opcode == Opcode.PARTIAL)
    if not tile.any():
        return None
    sm, start, end = sp.sm[tile], sp.start[tile], sp.end[tile]
    t0, t1 = int(start.min()), int(end.max())
    out = {"sms": int(np.count_nonzero(np.bincount(sm))), "tiles": int(tile.sum()), "start_us": _us(t0), "end_us": _us(t1),
           "mean_tbps": round(int(tile.sum()) * TILE_BYTES / (t1 - t0) / 1e3, 4) if t1 > t0 else None,
           "tile_interval_us": None, "streaming_sms": None, "steady_tbps": None}
    lo, hi = t0 + STREAM_EDGE * (t1 - t0), t1 - STREAM_EDGE * (t1 - t0)
    mid = (end > lo) & (end <= hi)
    order = np.lexsort((end[mid], sm[mid]))
    m_sm, m_end = sm[mid][order], end[mid][order]
    same_sm = m_sm[1:] == m_sm[:-1]
    if not same_sm.any():
        return out
    interval = float(np.median(np.diff(m_end)[same_sm]))
    # an SM's load spans do not overlap (one producer), so spans in flight = SMs loading
    at = np.linspace(lo, hi, STREAM_SAMPLES)
    in_flight = np.searchsorted(np.sort(start), at, side="right") - np.searchsorted(np.sort(end), at, side="right")
    streaming = float(np.median(in_flight))
    out.update(tile_interval_us=_us(interval), streaming_sms=streaming,
               steady_tbps=round(streaming * TILE_BYTES / interval / 1e3, 4) if interval > 0 else None)
    return out


PATH_KINDS = (Kind.COMPUTE, Kind.STORE, Kind.SETUP, Kind.LOAD, Kind.WAIT)  # who gets an instant on the path first
CRITICAL_PARTS = ("before_first", "setup", "load", "compute", "store", "wait", "unrecorded", "semaphore", "queue")


def _ns(us: float) -> int:
    return int(round(us * NS_PER_US))  # a step's µs carry 4 decimals: the trace's integer ns come back exactly


def critical_time(sp: Spans, path: list[CriticalStep]) -> dict[str, float]:
    """The critical path's time by part (module docstring), in µs; every part 0 when there is no path."""
    out = dict.fromkeys(CRITICAL_PARTS, 0)
    if not path:
        return {k: 0.0 for k in out}
    n = len(path)
    begins, ends = np.zeros(n, np.int64), np.zeros(n, np.int64)
    prev_end = None
    for i, step in enumerate(path):
        begin, end = _ns(step.waited_for["wait_end_us"] if step.waited_for else step.start_us), _ns(step.end_us)
        if prev_end is None:
            out["before_first"] += begin
        else:
            begin = min(max(begin, prev_end), end)
            out["semaphore" if step.reason == "wait" else "queue"] += begin - prev_end
        begins[i], ends[i], prev_end = begin, end, end
    # each path instruction's spans, found through a table over (sm, instr) keys, clipped to its step
    lo_instr = int(sp.instr.min())  # keys >= 0 whatever the instruction indices (the reader does not bound them)
    stride = int(sp.instr.max()) - lo_instr + 1
    key_all = sp.sm * stride + (sp.instr - lo_instr)
    step_of = np.full(int(key_all.max()) + 1, -1, np.int64)
    step_of[[s.sm * stride + (s.instr - lo_instr) for s in path]] = np.arange(n)
    rows = np.flatnonzero((step_of[key_all] >= 0) & np.isin(sp.kind, PATH_KINDS))
    step = step_of[key_all[rows]]
    s = np.clip(sp.start[rows], begins[step], ends[step])
    e = np.clip(sp.end[rows], begins[step], ends[step])
    keep = e > s
    rows, step, s, e = rows[keep], step[keep], s[keep], e[keep]
    # one sweep over every step, each shifted onto its own stretch of the time axis: per event, how many spans
    # of each kind are open; each interval inside a step goes to the first open kind (PATH_KINDS order)
    stretch = int(ends.max() - min(begins.min(), 0)) + 1
    idx = np.arange(n)
    t = np.r_[s + step * stretch, e + step * stretch, begins + idx * stretch, ends + idx * stretch]
    kinds = np.r_[sp.kind[rows], sp.kind[rows], np.full(2 * n, -1)]
    delta = np.r_[np.ones(len(rows), np.int64), -np.ones(len(rows), np.int64), np.zeros(2 * n, np.int64)]
    owner = np.r_[step, step, idx, idx]
    order = np.argsort(t, kind="stable")
    t, kinds, delta, owner = t[order], kinds[order], delta[order], owner[order]
    length = np.diff(t)
    in_step = owner[1:] == owner[:-1]  # not the stretch between one step's end and the next one's begin
    claimed = ~in_step
    for kind in PATH_KINDS:
        open_ = np.cumsum(np.where(kinds == kind, delta, 0))[:-1] > 0
        out[KIND_NAMES[kind]] += int(length[open_ & ~claimed].sum())
        claimed |= open_
    out["unrecorded"] += int(length[~claimed].sum())
    return {k: _us(v) for k, v in out.items()}


def critical_path(ins: Instructions) -> list[CriticalStep]:
    """Walk back from the instruction that ends last (see the module docstring); steps first to last."""
    if not len(ins):
        return []
    task_row = ins.row_of_task()
    same_sm_prev = np.r_[False, ins.sm[1:] == ins.sm[:-1]]  # rows are sorted by (sm, instr)
    cur = int(np.argmax(ins.end))
    seen = set()
    steps = []
    while cur >= 0 and cur not in seen:
        seen.add(cur)
        d = ins.describe(cur)
        wt = int(ins.wait_task[cur])
        # a controller that fetches ahead can finish waiting while the previous instruction still runs: then the
        # previous instruction, not the semaphore, held this one back
        if wt >= 0 and not (same_sm_prev[cur] and ins.end[cur - 1] >= ins.wait_end[cur]):
            p = int(task_row[wt])
            waited = {
                **ins.describe(p), "release_us": _us(ins.release[p]), "wait_start_us": _us(ins.wait_start[cur]),
                "wait_end_us": _us(ins.wait_end[cur]), "wait_us": _us(ins.wait_end[cur] - ins.wait_start[cur]),
            }
            reason, nxt = "wait", p
        elif same_sm_prev[cur]:
            waited, reason, nxt = None, "queue", cur - 1
        else:
            waited, reason, nxt = None, "start", -1
        steps.append(CriticalStep(**d, start_us=_us(ins.start[cur]), end_us=_us(ins.end[cur]), reason=reason,
                                  waited_for=waited))
        cur = nxt
    steps.reverse()
    return steps


def analyze_file(path: str | os.PathLike) -> Analysis:
    return analyze(read_trace(path))
