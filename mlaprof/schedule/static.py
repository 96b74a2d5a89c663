"""The static scheduler: equal KV chunks, a k-way reduction tree per sequence, min-heap assignment.

The baseline the makespan scheduler must beat.  One chunk size for every sequence (total KV / SMs, in whole
KV tiles) balances the partial work; tasks are then handed, partials longest first and reductions level by
level, to whichever SM finishes first.  Reductions are either whole (all s_q query tokens, one tree per
sequence) or per query token (DESIGN §5: one tree per (sequence, token), 16 rows each, the s_q trees
sharing the partials), whichever level of merges the cost model says ends sooner (``prefer_per_token``).  Handing tasks out in a topological order and appending each to its
SM's queue makes every queue order deadlock-free: each wait points at a task handed out earlier.
"""

from __future__ import annotations

import heapq
import time

import numpy as np

from mlaprof import format as fmt
from mlaprof.costmodel import CostModel, resolve
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


def static_schedule(workload: Workload, num_sms: int, cost: CostModel | None = None, fanin: int = fmt.MAX_FANIN,
                    per_token: bool | None = None) -> Schedule:
    """``per_token``: None lets the cost model choose between whole and per-token reductions."""
    t0 = time.perf_counter()
    cost = resolve(cost)
    p = best_static_plan(workload, num_sms, cost, fanin, per_token)
    return Schedule(
        workload=workload, num_sms=num_sms, queues=p["queues"], scheduler="static",
        tasks=build_tasks(*(p[k] for k in ("op", "seq", "kv0", "kv1", "inputs", "final", "sm", "start", "end",
                                           "q0", "qn"))),
        params={"fanin": fanin, "chunk_tokens": p["chunk"], "reductions": "per-token" if p["per_token"] else "whole"},
        predicted_makespan_us=float(p["end"].max()) / 1e3, compute_ms=(time.perf_counter() - t0) * 1e3,
    )


def prefer_per_token(workload: Workload, cost: CostModel, fanin: int = fmt.MAX_FANIN) -> bool:
    """Per-token reductions when a tree level of them (a 16-row merge and its store, on s_q SMs at once)
    ends sooner than one of whole ones: the tree's depth, not its SM time, is what the tail waits for."""
    if workload.s_q == 1:
        return False
    rows = workload.s_q * fmt.NUM_HEADS_Q
    return bool(cost.reduction_ns(fanin, fmt.NUM_HEADS_Q, False) < cost.reduction_ns(fanin, rows, False))


def merge_levels(frontier: list, fanin: int, merge) -> None:
    """Reduce ``frontier`` to one node, level by level: each level groups consecutive nodes (``group_sizes``);
    a group of one passes up as it is, a larger group becomes ``merge(group, is_root, level)``, which returns
    the node that stands for it on the next level."""
    level = 0
    while len(frontier) > 1:
        sizes = group_sizes(len(frontier), fanin)
        nxt, pos = [], 0
        for size in sizes:
            group = frontier[pos : pos + size]
            pos += size
            nxt.append(group[0] if size == 1 else merge(group, len(sizes) == 1, level))
        frontier = nxt
        level += 1


def best_static_plan(workload: Workload, num_sms: int, cost: CostModel, fanin: int = fmt.MAX_FANIN,
                     per_token: bool | None = None) -> dict:
    if per_token is None:
        per_token = prefer_per_token(workload, cost, fanin)
    return static_plan(workload, num_sms, cost, fanin, per_token)


def add_tree(cols: dict, seq: int, leaves: list[int], fanin: int, s_q: int, per_token: bool,
             level_of: list[int] | None = None) -> list[int]:
    """Reductions over ``leaves`` (task ids of one sequence's partials, covering all s_q tokens): one balanced
    k-ary tree, or (``per_token``) s_q trees of one query token each sharing the leaves.  Appends to the
    column lists in ``cols`` and returns the new ids.  ``level_of`` receives each reduction's tree level.

    The tree is grouped once; a per-token copy is the first tree with its reduction ids shifted (leaf ids
    kept), appended token after token."""
    base = len(cols["op"])
    kv0, kv1 = cols["kv0"], cols["kv1"]
    t_inputs, t_kv0, t_kv1, t_final, t_level = [], [], [], [], []

    def merge(group: list[int], root: bool, level: int) -> int:
        t_inputs.append(tuple(group))
        t_kv0.append(kv0[group[0]] if group[0] < base else t_kv0[group[0] - base])
        t_kv1.append(kv1[group[-1]] if group[-1] < base else t_kv1[group[-1] - base])
        t_final.append(root)
        t_level.append(level)
        return base + len(t_inputs) - 1

    merge_levels(list(leaves), fanin, merge)
    r = len(t_inputs)
    copies = [(q, 1) for q in range(s_q)] if per_token else [(0, s_q)]
    for c, (q0, qn) in enumerate(copies):
        shift = c * r
        cols["op"] += [REDUCTION] * r
        cols["seq"] += [seq] * r
        cols["q0"] += [q0] * r
        cols["qn"] += [qn] * r
        cols["kv0"] += t_kv0
        cols["kv1"] += t_kv1
        cols["inputs"] += t_inputs if shift == 0 else [
            tuple(x + shift if x >= base else x for x in ins) for ins in t_inputs]
        cols["final"] += t_final
        if level_of is not None:
            level_of += t_level
    return list(range(base, base + r * len(copies)))


def static_plan(workload: Workload, num_sms: int, cost: CostModel, fanin: int = fmt.MAX_FANIN,
                per_token: bool = False) -> dict:
    """The static schedule as task columns, queues and timeline (no Task objects: cheap to compare)."""
    if num_sms < 1:
        raise ScheduleError(f"need at least 1 SM, got {num_sms}")
    if not 2 <= fanin <= fmt.MAX_FANIN:
        raise ScheduleError(f"reduction fan-in must be 2..{fmt.MAX_FANIN}, got {fanin}")
    s_q = workload.s_q
    per_sm = -(-workload.total_kv // num_sms)
    chunk = -(-per_sm // TILE) * TILE  # ceil(total / SMs), rounded up to whole KV tiles

    cols: dict[str, list] = {k: [] for k in ("op", "seq", "q0", "qn", "kv0", "kv1", "inputs", "final")}
    leaves: dict[int, list[int]] = {}
    for seq, length in enumerate(workload.lens):
        ranges = split_even(length, -(-length // chunk)) if length > chunk else [(0, length)]
        first, m = len(cols["op"]), len(ranges)
        cols["op"] += [PARTIAL] * m
        cols["seq"] += [seq] * m
        cols["q0"] += [0] * m
        cols["qn"] += [s_q] * m
        cols["kv0"] += [a for a, _ in ranges]
        cols["kv1"] += [b for _, b in ranges]
        cols["inputs"] += [()] * m
        cols["final"] += [m == 1] * m
        leaves[seq] = list(range(first, first + m))
    num_partials = len(cols["op"])
    level: list[int] = []
    for seq, ids in leaves.items():
        if len(ids) > 1:
            add_tree(cols, seq, ids, fanin, s_q, per_token, level)
    op, inputs, final = cols["op"], cols["inputs"], cols["final"]
    kv_len = [b - a for a, b in zip(cols["kv0"], cols["kv1"])]
    fan = [len(i) for i in inputs]
    rows = np.asarray(cols["qn"]) * fmt.NUM_HEADS_Q
    dur_a = durations(op, kv_len, fan, final, rows, cost)
    dur = dur_a.tolist()
    lag = cost.sem_latency_ns - cost.reduce_setup_ns
    end = [0.0] * len(op)
    sm_of = [0] * len(op)
    queues: list[list[int]] = [[] for _ in range(num_sms)]
    heap = [(0.0, sm) for sm in range(num_sms)]
    # partials longest first, then reductions level by level across all sequences (a topological order);
    # stable sorts, so ties keep task order
    order = np.argsort(-dur_a[:num_partials], kind="stable").tolist()
    order += (num_partials + np.argsort(np.asarray(level, dtype=np.int64), kind="stable")).tolist()
    pop, push = heapq.heappop, heapq.heappush
    for tid in order[:num_partials]:  # partials wait for nothing
        free, sm = pop(heap)
        end[tid] = free + dur[tid]
        sm_of[tid] = sm
        queues[sm].append(tid)
        push(heap, (end[tid], sm))
    for tid in order[num_partials:]:
        free, sm = pop(heap)
        ready = max([end[i] for i in inputs[tid]]) + lag
        end[tid] = (free if free > ready else ready) + dur[tid]
        sm_of[tid] = sm
        queues[sm].append(tid)
        push(heap, (end[tid], sm))

    start, end_ns = evaluate(op, kv_len, fan, final, inputs, queues, rows, cost)
    return {**cols, "sm": sm_of, "queues": queues, "start": start, "end": end_ns, "chunk": chunk,
            "per_token": per_token}
