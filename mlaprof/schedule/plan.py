"""What both schedulers share: task-table construction, planned durations and a task-level timeline.

The timeline (``evaluate``) runs a schedule on the cost model at task granularity, with the simulator's
overlaps but none of its per-tile work: each instruction's setup follows the previous one, a reduction's
merge waits for its inputs' stores plus the semaphore latency, and a partial's loads start as soon as the
producer is free and the previous partial has begun its last tile, so back-to-back partials hide each
other's fill and store.  It is what the schedulers predict with and what the makespan scheduler's rollouts
are compared on; ``mlaprof.sim`` gives the per-tile picture (and the two agree closely).
"""

from __future__ import annotations

import dataclasses

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
             stages: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(start_ns, end_ns) per task (instruction fetch to store end).  ``rows``: query rows per task (or one
    count for all).  Raises ScheduleError naming the stuck SMs when the queues deadlock."""
    n = len(op)
    is_partial = np.asarray(op) == fmt.Opcode.PARTIAL
    rows = np.broadcast_to(np.asarray(rows), (n,))
    kv_len = np.maximum(np.asarray(kv_len, dtype=np.int64), 1)
    tiles = -(-kv_len // fmt.KV_TILE_TOKENS)
    last = kv_len - fmt.KV_TILE_TOKENS * (tiles - 1)
    lf, cf = cost.load_ns(fmt.KV_TILE_TOKENS), cost.compute_ns(fmt.KV_TILE_TOKENS, rows)
    ll, cl = cost.load_ns(last), cost.compute_ns(last, rows)
    first_load = np.where(tiles == 1, ll, lf)
    loads = (tiles - 1) * lf + ll
    comps = ((tiles - 1) * cf + cl).tolist()
    last_comp = cl.tolist()
    final = np.asarray(final, dtype=bool)
    merge = cost.reduce_ns(np.asarray(fanin), rows).tolist()
    store = cost.store_ns(rows, final, ~is_partial).tolist()
    setups = cost.setup(~is_partial).tolist()
    partial = is_partial.tolist()
    lat = cost.sem_latency_ns
    ahead = ((stages - 1) * cf).tolist()
    # SMs stream at different rates (CostModel.sm_spread): a partial of n tiles on SM s loads at
    # 1 + spread_s / sqrt(n); the per-SM loop below scales by it
    spread = cost.sm_factors(len(queues)).tolist()
    inv_sqrt = (1.0 / np.sqrt(tiles)).tolist()
    first_load, loads = first_load.tolist(), loads.tolist()

    start = [0.0] * n
    end = [-1.0] * n
    done = [False] * n
    num_sms = len(queues)
    ptr = [0] * num_sms
    prod, cons, qfree = [float(cost.first_load_ns)] * num_sms, [0.0] * num_sms, [0.0] * num_sms
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
    stuck = [sm for sm in range(num_sms) if ptr[sm] < len(queues[sm])]
    if stuck:
        desc = ", ".join(
            f"SM {sm} (task {queues[sm][ptr[sm]]} waits on task "
            f"{next(i for i in inputs[queues[sm][ptr[sm]]] if not done[i])})"
            for sm in stuck[:6]
        )
        raise ScheduleError(f"schedule deadlocks: {len(stuck)} SMs stuck: {desc}")
    return np.asarray(start), np.asarray(end)


_TASK_FIELDS = [f.name for f in dataclasses.fields(Task)]


def build_tasks(op, seq, kv_start, kv_end, inputs, final, sm, start_ns, end_ns, q_start, q_count) -> list[Task]:
    """Task objects from per-task columns; ids are positions.

    Fills the frozen dataclass's __dict__ directly: the generated __init__ costs ~4 us per task, which is
    most of a 1 ms scheduling budget at a few hundred tasks.
    """
    out = []
    new = object.__new__
    for i in range(len(op)):
        t = new(Task)
        t.__dict__.update(zip(_TASK_FIELDS, (
            i, fmt.Opcode(op[i]), int(seq[i]), int(q_start[i]), int(q_count[i]), int(kv_start[i]), int(kv_end[i]),
            tuple(inputs[i]),
            bool(final[i]), int(sm[i]), float(start_ns[i]) / 1e3, float(end_ns[i]) / 1e3,
        )))
        out.append(t)
    return out
