"""The static scheduler: equal KV chunks, a k-way reduction tree per sequence, min-heap assignment.

The baseline the makespan scheduler must beat.  One chunk size for every sequence (total KV / SMs, in whole
KV tiles) balances the partial work; tasks are then handed, partials longest first and reductions level by
level, to whichever SM finishes first.  Handing tasks out in a topological order and appending each to its
SM's queue makes every queue order deadlock-free: each wait points at a task handed out earlier.
"""

from __future__ import annotations

import heapq
import time

from mlaprof import format as fmt
from mlaprof.costmodel import CostModel
from mlaprof.schedule.plan import ScheduleError, build_tasks, durations, evaluate
from mlaprof.schedule.tasks import Schedule
from mlaprof.workloads import Workload

TILE = fmt.KV_TILE_TOKENS
PARTIAL, REDUCTION = int(fmt.Opcode.PARTIAL), int(fmt.Opcode.REDUCTION)


def split_even(length: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous KV ranges covering [0, length): whole tiles, sizes differing by at most one tile."""
    tiles = -(-length // TILE)
    parts = max(1, min(parts, tiles))
    base, extra = divmod(tiles, parts)
    out, pos = [], 0
    for p in range(parts):
        n = base + (1 if p < extra else 0)
        out.append((pos, min(length, pos + n * TILE)))
        pos += n * TILE
    return out


def group_sizes(count: int, fanin: int) -> list[int]:
    """One tree level over ``count`` consecutive inputs: ceil(count / fanin) groups, sizes within one of each
    other (so never a group of one when count > 1)."""
    groups = -(-count // fanin)
    base, extra = divmod(count, groups)
    return [base + (1 if g < extra else 0) for g in range(groups)]


def static_schedule(workload: Workload, num_sms: int, cost: CostModel | None = None, fanin: int = fmt.MAX_FANIN) -> Schedule:
    t0 = time.perf_counter()
    p = static_plan(workload, num_sms, cost or CostModel(), fanin)
    return Schedule(
        workload=workload, num_sms=num_sms, queues=p["queues"], scheduler="static",
        tasks=build_tasks(*(p[k] for k in ("op", "seq", "kv0", "kv1", "inputs", "final", "sm", "start", "end")),
                          workload.s_q),
        params={"fanin": fanin, "chunk_tokens": p["chunk"]},
        predicted_makespan_us=float(p["end"].max()) / 1e3, compute_ms=(time.perf_counter() - t0) * 1e3,
    )


def static_plan(workload: Workload, num_sms: int, cost: CostModel, fanin: int = fmt.MAX_FANIN) -> dict:
    """The static schedule as task columns, queues and timeline (no Task objects: cheap to compare)."""
    if num_sms < 1:
        raise ScheduleError(f"need at least 1 SM, got {num_sms}")
    if not 2 <= fanin <= fmt.MAX_FANIN:
        raise ScheduleError(f"reduction fan-in must be 2..{fmt.MAX_FANIN}, got {fanin}")
    rows = workload.s_q * fmt.NUM_HEADS_Q
    per_sm = -(-workload.total_kv // num_sms)
    chunk = -(-per_sm // TILE) * TILE  # ceil(total / SMs), rounded up to whole KV tiles

    op, seq_of, kv0, kv1, inputs, final = [], [], [], [], [], []

    def add(o, s, a, b, ins, f) -> int:
        for col, v in zip((op, seq_of, kv0, kv1, inputs, final), (o, s, a, b, ins, f)):
            col.append(v)
        return len(op) - 1

    frontier: dict[int, list[int]] = {}
    for seq, length in enumerate(workload.lens):
        ranges = split_even(length, -(-length // chunk)) if length > chunk else [(0, length)]
        frontier[seq] = [add(PARTIAL, seq, a, b, (), len(ranges) == 1) for a, b in ranges]
    num_partials = len(op)
    # reductions are created one tree level at a time across all sequences, so ids are a topological order
    while any(len(ids) > 1 for ids in frontier.values()):
        for seq, ids in frontier.items():
            if len(ids) < 2:
                continue
            sizes = group_sizes(len(ids), fanin)
            nxt, pos = [], 0
            for size in sizes:
                group = ids[pos : pos + size]
                pos += size
                if size == 1:
                    nxt.append(group[0])
                else:
                    nxt.append(add(REDUCTION, seq, kv0[group[0]], kv1[group[-1]], tuple(group), len(sizes) == 1))
            frontier[seq] = nxt

    dur = durations(op, [b - a for a, b in zip(kv0, kv1)], [len(i) for i in inputs], final, rows, cost)
    lag = cost.sem_latency_ns - cost.setup_ns
    end = [0.0] * len(op)
    sm_of = [0] * len(op)
    queues: list[list[int]] = [[] for _ in range(num_sms)]
    heap = [(0.0, sm) for sm in range(num_sms)]
    order = sorted(range(num_partials), key=lambda i: -dur[i]) + list(range(num_partials, len(op)))
    for tid in order:
        free, sm = heapq.heappop(heap)
        ready = max((end[i] + lag for i in inputs[tid]), default=0.0)
        end[tid] = max(free, ready) + dur[tid]
        sm_of[tid] = sm
        queues[sm].append(tid)
        heapq.heappush(heap, (end[tid], sm))

    kv_len = [b - a for a, b in zip(kv0, kv1)]
    start, end_ns = evaluate(op, kv_len, [len(i) for i in inputs], final, inputs, queues, rows, cost)
    return {"op": op, "seq": seq_of, "kv0": kv0, "kv1": kv1, "inputs": inputs, "final": final, "sm": sm_of,
            "queues": queues, "start": start, "end": end_ns, "chunk": chunk}
