"""What both schedulers share: task-table construction, planned durations and a task-level timeline.

The timeline (``evaluate``) runs a schedule on the cost model at task granularity, with the simulator's
overlaps but none of its per-tile work: each instruction's setup follows the previous one, a reduction's
merge waits for its inputs' stores plus the semaphore latency, and a partial's loads start as soon as the
producer is free and the previous partial has begun its last tile, so back-to-back partials hide each
other's fill and store; the loads past the first ``format.KV_STAGES`` tiles wait for a stage buffer, so not
before the partial's first tile is computed.  It is what the schedulers predict with and what the makespan
scheduler's rollouts are compared on; ``mlaprof.sim`` gives the per-tile picture (and the two agree
closely).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from typing import Callable

import numpy as np

from mlaprof import format as fmt
from mlaprof.costmodel import CostModel
from mlaprof.errors import UserError
from mlaprof.schedule.tasks import Task


class ScheduleError(UserError):
    """A schedule that cannot run as given (deadlock, missing input, bad operand)."""


def durations(ops, kv_len, fanin, final, rows, cost: CostModel) -> np.ndarray:
    """Planned ns of each task: partials by their KV length, reductions by their fan-in and rows."""
    ops, final = np.asarray(ops), np.asarray(final, dtype=bool)
    return np.where(
        ops == fmt.Opcode.PARTIAL,
        cost.partial_ns(np.maximum(np.asarray(kv_len), 1), rows, final),
        cost.reduction_ns(np.asarray(fanin), rows, final),
    ).astype(float)


def evaluate(op, kv_len, fanin, final, inputs, queues, rows, cost: CostModel,
             stages: int = fmt.KV_STAGES, method: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """(start_ns, end_ns) per task (instruction fetch to store end).  ``rows``: query rows per task (or one
    count for all).  Raises ScheduleError naming the stuck SMs when the queues deadlock.  The same as
    ``timeline(task_costs(...), inputs, queues)``; callers that time one task set on several queue layouts
    compute ``task_costs`` once."""
    return timeline(task_costs(op, kv_len, fanin, final, rows, cost, stages), inputs, queues, method)


def task_costs(op, kv_len, fanin, final, rows, cost: CostModel, stages: int = fmt.KV_STAGES) -> "TaskCosts":
    """Per-task phase durations of the timeline: they depend on the tasks, not on which SM runs them."""
    n = len(op)
    is_partial = np.asarray(op) == fmt.Opcode.PARTIAL
    rows = np.broadcast_to(np.asarray(rows), (n,))
    kv_len = np.maximum(np.asarray(kv_len, dtype=np.int64), 1)
    tiles = -(-kv_len // fmt.KV_TILE_TOKENS)
    last = kv_len - fmt.KV_TILE_TOKENS * (tiles - 1)
    lf, cf = cost.load_ns(fmt.KV_TILE_TOKENS), cost.compute_ns(fmt.KV_TILE_TOKENS, rows)
    ll, cl = cost.load_ns(last), cost.compute_ns(last, rows)
    # loads of the tiles past the first ``stages``: each waits for a stage buffer, so they cannot start before
    # the consumers finish the partial's first tile (a consumer held up by the previous instruction's store
    # holds the producer up too)
    late = np.where(tiles > stages, (tiles - 1 - stages) * lf + ll, 0.0)
    return TaskCosts(
        first_load=np.where(tiles == 1, ll, lf), loads=(tiles - 1) * lf + ll, comps=(tiles - 1) * cf + cl,
        late_loads=np.asarray(late, dtype=float), first_comp=np.asarray(np.where(tiles == 1, cl, cf), dtype=float),
        last_comp=np.asarray(cl, dtype=float), merge=np.asarray(cost.reduce_ns(np.asarray(fanin), rows), dtype=float),
        store=np.asarray(cost.store_ns(rows, np.asarray(final, dtype=bool), ~is_partial), dtype=float),
        setups=np.asarray(cost.setup(~is_partial), dtype=float), partial=is_partial,
        ahead=np.asarray((stages - 1) * cf, dtype=float), inv_sqrt=1.0 / np.sqrt(tiles),
        lat=float(cost.sem_latency_ns), first_load_ns=float(cost.first_load_ns), sm_factors=cost.sm_factors,
    )


def timeline(c: "TaskCosts", inputs, queues, method: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """(start_ns, end_ns) per task of ``c``'s tasks run in ``queues`` (``evaluate``).

    Each task's times depend only on its SM's previous task and its inputs' ends, so any order that runs a
    task after those gives the same numbers.  ``method="rounds"`` advances every SM whose next task is ready
    at once, in numpy; ``"loop"`` walks one SM at a time in Python (cheaper below a thousand-odd tasks);
    ``"auto"`` picks by task count and queue shape.  Both do the same float operations in the same order
    per task, so they agree bit for bit."""
    n = len(c.partial)
    # SMs stream at different rates (CostModel.sm_spread): a partial of n tiles on SM s loads at
    # 1 + spread_s / sqrt(n)
    spread = np.asarray(c.sm_factors(len(queues)), dtype=float)
    longest = max(map(len, queues), default=0)
    # measured (2 CPUs): the per-SM walk is faster up to a couple of thousand tasks, the rounds beyond
    if method == "rounds" or (method == "auto" and n >= 16 * longest and n >= 1024):
        start, end, ptr, done = _evaluate_rounds(c, spread, inputs, queues)
    else:
        start, end, ptr, done = _evaluate_loop(c, spread, inputs, queues)
    if sum(ptr) != sum(map(len, queues)):  # some SM stopped short of its queue's end
        stuck = [sm for sm in range(len(queues)) if ptr[sm] < len(queues[sm])]
        desc = ", ".join(
            f"SM {sm} (task {queues[sm][ptr[sm]]} waits on task "
            f"{next(i for i in inputs[queues[sm][ptr[sm]]] if not done[i])})"
            for sm in stuck[:6]
        )
        raise ScheduleError(f"schedule deadlocks: {len(stuck)} SMs stuck: {desc}")
    return np.asarray(start, dtype=float), np.asarray(end, dtype=float)


@dataclasses.dataclass
class TaskCosts:
    """Per-task planned phase durations (ns) that ``timeline`` composes; arrays indexed by task id."""

    first_load: np.ndarray
    loads: np.ndarray
    comps: np.ndarray
    late_loads: np.ndarray  # loads of the tiles after the first ``stages`` (0 for a short partial)
    first_comp: np.ndarray  # compute of the first tile
    last_comp: np.ndarray
    merge: np.ndarray
    store: np.ndarray
    setups: np.ndarray
    partial: np.ndarray
    ahead: np.ndarray
    inv_sqrt: np.ndarray
    lat: float
    first_load_ns: float
    sm_factors: Callable[[int], np.ndarray]  # the cost model's per-SM rate factors, by SM count


def _evaluate_loop(c: TaskCosts, spread_sm: np.ndarray, inputs, queues):
    """One SM at a time until it blocks on an unfinished input; the blocker's completion wakes it."""
    n = len(c.partial)
    first_load, loads, comps, last_comp = c.first_load.tolist(), c.loads.tolist(), c.comps.tolist(), c.last_comp.tolist()
    late_loads, first_comp = c.late_loads.tolist(), c.first_comp.tolist()
    merge, store, setups, partial = c.merge.tolist(), c.store.tolist(), c.setups.tolist(), c.partial.tolist()
    ahead, spread, inv_sqrt, lat = c.ahead.tolist(), spread_sm.tolist(), c.inv_sqrt.tolist(), c.lat
    start = [0.0] * n
    end = [-1.0] * n
    done = [False] * n
    num_sms = len(queues)
    ptr = [0] * num_sms
    prod, cons, qfree = [c.first_load_ns] * num_sms, [0.0] * num_sms, [0.0] * num_sms
    waiters: dict[int, list[int]] = {}
    ready = list(range(num_sms))
    while ready:
        sm = ready.pop()
        q = queues[sm]
        while ptr[sm] < len(q):
            t = q[ptr[sm]]
            s0 = cons[sm]
            issue = s0 + setups[t]
            if partial[t]:
                f = 1.0 + spread[sm] * inv_sqrt[t]
                ls = prod[sm] if prod[sm] > qfree[sm] else qfree[sm]
                le = ls + loads[t] * f
                c0 = ls + first_load[t] * f
                if issue > c0:
                    c0 = issue
                if late_loads[t] > 0.0:  # the loads past the stage buffers follow the first tile's compute
                    le_late = c0 + first_comp[t] + late_loads[t] * f
                    if le_late > le:
                        le = le_late
                ce = c0 + comps[t]
                if le + last_comp[t] > ce:
                    ce = le + last_comp[t]
                prod[sm] = le if le > ce - ahead[t] else ce - ahead[t]  # stage buffers bound how far loads run ahead
                qfree[sm] = ce - last_comp[t]
            else:
                blocker = -1
                for i in inputs[t]:
                    if not done[i]:
                        blocker = i
                        break
                    if end[i] + lat > issue:
                        issue = end[i] + lat
                if blocker >= 0:
                    waiters.setdefault(blocker, []).append(sm)
                    break
                ce = issue + merge[t]
            e = ce + store[t]
            start[t], end[t] = s0, e
            cons[sm] = e
            done[t] = True
            ptr[sm] += 1
            ready.extend(waiters.pop(t, ()))
    return start, end, ptr, done


def _evaluate_rounds(c: TaskCosts, spread_sm: np.ndarray, inputs, queues):
    """Every SM whose next task is ready runs it, all at once in numpy, until none is ready.  The float
    operations per task are the loop's, in its order (max() where the loop compares), so results match it."""
    n = len(c.partial)
    num_sms = len(queues)
    qlen = np.fromiter((len(q) for q in queues), dtype=np.int64, count=num_sms)
    width = int(qlen.max()) if num_sms else 0
    qarr = np.full((num_sms, max(width, 1)), n, dtype=np.int64)
    for sm, q in enumerate(queues):
        qarr[sm, : len(q)] = q
    # inputs padded with a sentinel task n that is always done and ends at -inf
    inp = np.full((n + 1, fmt.MAX_FANIN), n, dtype=np.int64)
    for t, ins in enumerate(inputs):
        if ins:
            inp[t, : len(ins)] = ins
    done = np.zeros(n + 1, dtype=bool)
    done[n] = True
    end = np.full(n + 1, -1.0)
    end[n] = -np.inf
    start = np.zeros(n + 1)
    ptr = np.zeros(num_sms, dtype=np.int64)
    prod, cons, qfree = np.full(num_sms, c.first_load_ns), np.zeros(num_sms), np.zeros(num_sms)
    sms = np.arange(num_sms)
    while True:
        act = sms[ptr < qlen]
        if len(act) == 0:
            break
        t = qarr[act, ptr[act]]
        go = done[inp[t]].all(axis=1)
        if not go.any():
            break
        sm, t = act[go], t[go]
        s0 = cons[sm]
        issue = s0 + c.setups[t]
        e = np.empty(len(t))
        part = c.partial[t]
        if part.any():
            ps, pt, pi = sm[part], t[part], issue[part]
            f = 1.0 + spread_sm[ps] * c.inv_sqrt[pt]
            ls = np.maximum(prod[ps], qfree[ps])
            le = ls + c.loads[pt] * f
            c0 = np.maximum(ls + c.first_load[pt] * f, pi)
            late = c.late_loads[pt]
            le_late = c0 + c.first_comp[pt] + late * f
            le = np.where((late > 0.0) & (le_late > le), le_late, le)
            ce = np.maximum(c0 + c.comps[pt], le + c.last_comp[pt])
            prod[ps] = np.maximum(le, ce - c.ahead[pt])
            qfree[ps] = ce - c.last_comp[pt]
            e[part] = ce + c.store[pt]
        red = ~part
        if red.any():
            rt = t[red]
            ready_at = (end[inp[rt]] + c.lat).max(axis=1)
            e[red] = np.maximum(issue[red], ready_at) + c.merge[rt] + c.store[rt]
        start[t], end[t] = s0, e
        cons[sm] = e
        done[t] = True
        ptr[sm] += 1
    return start[:n], end[:n], ptr.tolist(), done[:n].tolist()


_TASK_FIELDS = [f.name for f in dataclasses.fields(Task)]


def build_tasks(op, seq, kv_start, kv_end, inputs, final, sm, start_ns, end_ns, q_start, q_count) -> list[Task]:
    """Task objects from per-task columns (numpy arrays or sequences, times in ns); ids are positions.
    Called once, on the winning plan.  Columns go through ``tolist`` (one C call each) rather than
    int()/float() per element."""
    def ints(col):
        return np.asarray(col, dtype=np.int64).tolist()

    def us(col):
        return (np.asarray(col, dtype=float) / 1e3).tolist()

    return tasks_from_lists(ints(op), ints(seq), ints(kv_start), ints(kv_end), [tuple(i) for i in inputs],
                            np.asarray(final, dtype=bool).tolist(), ints(sm), us(start_ns), us(end_ns), ints(q_start),
                            ints(q_count))


def tasks_from_lists(op, seq, kv_start, kv_end, inputs, final, sm, start_us, end_us, q_start, q_count) -> list[Task]:
    """``build_tasks`` for columns that are already lists of Python ints, bools, tuples and floats (times in
    us), as the native core returns them.

    Fills each frozen dataclass's __dict__ directly from a dict display (the generated __init__ costs ~4 us
    per task, which is most of a 1 ms scheduling budget at a few hundred tasks; a display with constant
    keys is cheaper than dict(zip(names, row))): the displays in one comprehension, then the objects made
    and given their dicts by map() (loops in C), and opcodes through a dict rather than the Enum
    constructor.
    """
    assert _TASK_FIELDS == ["id", "op", "seq", "q_start", "q_count", "kv_start", "kv_end", "inputs", "final", "sm",
                            "est_start_us", "est_end_us", "col_start", "col_count", "steal"], \
        "Task's fields changed: update tasks_from_lists"
    n = len(op)
    ops = {int(o): o for o in fmt.Opcode}
    dicts = [{"id": i, "op": o, "seq": s, "q_start": qa, "q_count": qn, "kv_start": ka, "kv_end": kb, "inputs": ins,
              "final": f, "sm": m, "est_start_us": es, "est_end_us": ee, "col_start": 0, "col_count": fmt.HEAD_DIM_V,
              "steal": -1}
             for i, o, s, qa, qn, ka, kb, ins, f, m, es, ee in zip(
                 range(n), map(ops.__getitem__, op), seq, q_start, q_count, kv_start, kv_end, inputs, final, sm,
                 start_us, end_us)]
    tasks = list(map(object.__new__, itertools.repeat(Task, n)))
    collections.deque(map(object.__setattr__, tasks, itertools.repeat("__dict__"), dicts), maxlen=0)
    return tasks
