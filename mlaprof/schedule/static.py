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
from mlaprof.schedule.native import calls as native
from mlaprof.schedule.plan import ScheduleError, build_tasks, durations, task_costs, tasks_from_lists, timeline
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
    check_args(num_sms, fanin)
    p = native.static_plan(workload, num_sms, cost, fanin, per_token)  # the same plan, in C, where built
    if p is not None:
        tasks, predicted_us = tasks_from_lists(*(p[k] for k in native.COLUMNS)), max(p["end_us"])
    else:
        p = best_static_plan(workload, num_sms, cost, fanin, per_token)
        tasks = build_tasks(*(p[k] for k in ("op", "seq", "kv0", "kv1", "inputs", "final", "sm", "start", "end",
                                             "q0", "qn")))
        predicted_us = float(p["end"].max()) / 1e3
    return Schedule(
        workload=workload, num_sms=num_sms, queues=p["queues"], scheduler="static", tasks=tasks,
        params={"fanin": fanin, "chunk_tokens": p["chunk"], "reductions": "per-token" if p["per_token"] else "whole"},
        predicted_makespan_us=predicted_us, compute_ms=(time.perf_counter() - t0) * 1e3,
    )


def check_args(num_sms: int, fanin: int) -> None:
    if num_sms < 1:
        raise ScheduleError(f"need at least 1 SM, got {num_sms}")
    if not 2 <= fanin <= fmt.MAX_FANIN:
        raise ScheduleError(f"reduction fan-in must be 2..{fmt.MAX_FANIN}, got {fanin}")


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


def tree_template(m: int, fanin: int) -> list[tuple[tuple[int, ...], int, int, bool, int]]:
    """The balanced k-ary tree over m leaves (``merge_levels``), in local ids (leaves 0..m-1, the r-th merge
    m + r): per merge (inputs, first leaf, last leaf, is_root, level).  One per leaf count and call: many
    sequences share a count, and a copy is an offset away."""
    out: list = []
    lo_hi: dict[int, tuple[int, int]] = {j: (j, j) for j in range(m)}

    def merge(group: list[int], root: bool, level: int) -> int:
        rid = m + len(out)
        lo_hi[rid] = (lo_hi[group[0]][0], lo_hi[group[-1]][1])
        out.append((tuple(group), lo_hi[rid][0], lo_hi[rid][1], root, level))
        return rid

    merge_levels(list(range(m)), fanin, merge)
    return out


def split_all(lens: np.ndarray, chunk: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``split_even`` for every sequence at once: (seq, kv0, kv1) per chunk in sequence order, and each
    sequence's chunk count (a sequence no longer than ``chunk`` stays whole)."""
    tiles = -(-lens // TILE)
    parts = np.where(lens > chunk, np.minimum(-(-lens // chunk), tiles), 1)
    base, extra = np.divmod(tiles, parts)
    seq = np.repeat(np.arange(len(lens)), parts)
    first = np.cumsum(parts) - parts
    p = np.arange(len(seq)) - first[seq]  # chunk index within its sequence
    size = base[seq] + (p < extra[seq])
    pos = p * base[seq] + np.minimum(p, extra[seq])
    return seq, pos * TILE, np.minimum(lens[seq], (pos + size) * TILE), parts


def static_plan(workload: Workload, num_sms: int, cost: CostModel, fanin: int = fmt.MAX_FANIN,
                per_token: bool = False) -> dict:
    """The static schedule as task columns, queues and timeline (no Task objects: cheap to compare), and
    the timeline's per-task costs (``costs``: to time the same tasks on other queues).

    Task ids: the partials in sequence order, then per split sequence its tree (per token: the tree once
    per query token, reduction ids shifted, the leaves shared)."""
    check_args(num_sms, fanin)
    s_q = workload.s_q
    lens = np.asarray(workload.lens, dtype=np.int64)
    per_sm = -(-workload.total_kv // num_sms)
    chunk = -(-per_sm // TILE) * TILE  # ceil(total / SMs), rounded up to whole KV tiles
    seq_a, kv0_a, kv1_a, parts = split_all(lens, chunk)
    num_partials = len(seq_a)
    parts_l = parts.tolist()
    first_l = (np.cumsum(parts) - parts).tolist()
    # reductions: a tree per split sequence, as columns appended sequence after sequence
    copies = [(q, 1) for q in range(s_q)] if per_token else [(0, s_q)]
    r_seq, r_lo, r_hi, r_q0, r_qn, r_inputs, r_final, r_level = [], [], [], [], [], [], [], []
    templates: dict[int, list] = {}
    nxt = num_partials
    for seq, m in enumerate(parts_l):
        if m == 1:
            continue
        tpl = templates.get(m)
        if tpl is None:
            tpl = templates[m] = tree_template(m, fanin)
        r, first = len(tpl), first_l[seq]
        lo_l = [first + lo for _, lo, _, _, _ in tpl]
        hi_l = [first + hi for _, _, hi, _, _ in tpl]
        root_l = [root for _, _, _, root, _ in tpl]
        level_l = [lvl for _, _, _, _, lvl in tpl]
        shift0 = nxt - m  # local id m + i -> global nxt + i; leaf j -> first + j
        ins0 = [tuple(x + first if x < m else x + shift0 for x in ins) for ins, _, _, _, _ in tpl]
        leaves_only = [max(ins) < m for ins, _, _, _, _ in tpl]
        for c, (q0, qn) in enumerate(copies):
            if c == 0:
                r_inputs += ins0
            else:  # the next query token's tree: the same leaves (ids < num_partials), merges r * c further on
                d = r * c
                r_inputs += [t0 if only else tuple(y if y < num_partials else y + d for y in t0)
                             for t0, only in zip(ins0, leaves_only)]
            r_lo += lo_l
            r_hi += hi_l
            r_final += root_l
            r_level += level_l
            r_seq += [seq] * r
            r_q0 += [q0] * r
            r_qn += [qn] * r
            nxt += r
    num_red = len(r_seq)
    kv0 = np.concatenate([kv0_a, kv0_a[np.asarray(r_lo, dtype=np.int64)]])
    kv1 = np.concatenate([kv1_a, kv1_a[np.asarray(r_hi, dtype=np.int64)]])
    op = [PARTIAL] * num_partials + [REDUCTION] * num_red
    inputs = [()] * num_partials + r_inputs
    final = (parts[seq_a] == 1).tolist() + r_final
    qn = np.concatenate([np.full(num_partials, s_q, dtype=np.int64), np.asarray(r_qn, dtype=np.int64)])
    fan = [0] * num_partials + [len(i) for i in r_inputs]
    kv_len = kv1 - kv0
    rows = qn * fmt.NUM_HEADS_Q
    dur_a = durations(op, kv_len, fan, final, rows, cost)
    dur = dur_a.tolist()
    lag = cost.sem_latency_ns - cost.reduce_setup_ns
    end = [0.0] * len(op)
    sm_of = [0] * len(op)
    queues: list[list[int]] = [[] for _ in range(num_sms)]
    # partials longest first, then reductions level by level across all sequences (a topological order);
    # stable sorts, so ties keep task order
    order = np.argsort(-dur_a[:num_partials], kind="stable").tolist()
    if num_partials <= num_sms:
        # every SM is free at 0 and the heap pops the lowest index first: the i-th longest goes to SM i
        for sm, tid in enumerate(order):
            end[tid] = dur[tid]
            sm_of[tid] = sm
            queues[sm].append(tid)
        heap = [(dur[tid], sm) for sm, tid in enumerate(order)] + [(0.0, sm) for sm in range(num_partials, num_sms)]
        heapq.heapify(heap)
    else:
        heap = [(0.0, sm) for sm in range(num_sms)]
        pop, push = heapq.heappop, heapq.heappush
        for tid in order:  # partials wait for nothing
            free, sm = pop(heap)
            end[tid] = free + dur[tid]
            sm_of[tid] = sm
            queues[sm].append(tid)
            push(heap, (end[tid], sm))
    red_order = (num_partials + np.argsort(np.asarray(r_level, dtype=np.int64), kind="stable")).tolist()
    pop, push = heapq.heappop, heapq.heappush
    end_of = end.__getitem__
    for tid in red_order:
        free, sm = pop(heap)
        ready = max(map(end_of, inputs[tid])) + lag
        e = (free if free > ready else ready) + dur[tid]
        end[tid] = e
        sm_of[tid] = sm
        queues[sm].append(tid)
        push(heap, (e, sm))

    costs = task_costs(op, kv_len, fan, final, rows, cost)
    start, end_ns = timeline(costs, inputs, queues)
    return {"costs": costs, "op": op, "seq": seq_a.tolist() + r_seq, "q0": [0] * num_partials + r_q0, "qn": qn, "kv0": kv0,
            "kv1": kv1, "inputs": inputs, "final": final, "sm": sm_of, "queues": queues, "start": start,
            "end": end_ns, "chunk": chunk, "per_token": per_token}
