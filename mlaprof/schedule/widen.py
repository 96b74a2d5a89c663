"""Schedule -> Schedule: reduction trees flattened into one level of column-block merges.

A tree of fan-in-6 merges costs one semaphore hand-off and one L2 round trip per level (~3-4 us each on the
H100, bench/NOTES.md), so a sequence split over a hundred SMs waits three levels after its last partial. Here
every tree at least ``min_depth`` deep is replaced by counted reductions (``Task.counted``): one per query
token and block of ``col_block`` V columns, each reading a slice of every leaf partial. They are final, so
nothing waits on them, and they go to the SMs that the schedule's own estimates free first (a column block of
~100 inputs is ~50 KB of L2 reads: one round trip).

Trees shallower than ``min_depth`` stay as they are: one listed merge already reads its inputs in one pass;
so does a tree whose flattened merges the cost model does not expect to end sooner than its root.
"""

from __future__ import annotations

import dataclasses
import heapq

from mlaprof import format as fmt
from mlaprof.costmodel import CostModel, resolve
from mlaprof.errors import UserError
from mlaprof.schedule.tasks import Schedule, Task

DEFAULT_MIN_DEPTH = 2


class WidenError(UserError):
    pass


def _tree(tasks: list[Task], root: int) -> tuple[list[int], list[int], int]:
    """(reductions, leaves, depth) of the tree under ``root``: leaves are the partials it merges."""
    reds, leaves = [], []
    depth = 0
    stack = [(root, 1)]
    while stack:
        tid, d = stack.pop()
        t = tasks[tid]
        if t.op == fmt.Opcode.REDUCTION and not t.counted:
            reds.append(tid)
            depth = max(depth, d)
            stack.extend((i, d + 1) for i in t.inputs)
        else:
            leaves.append(tid)
    return reds, sorted(leaves, key=lambda i: (tasks[i].kv_start, i)), depth


def merge_estimate_us(cost: CostModel, inputs: int, col_block: int) -> float:
    """A counted merge from its last input's release to its end on an idle SM (the simulator's terms)."""
    return merge_end_us(cost, inputs, col_block, free_us=0.0, ready_us=0.0)


def merge_end_us(cost: CostModel, inputs: int, col_block: int, free_us: float, ready_us: float) -> float:
    """When a counted merge ends, queued on an SM free at ``free_us`` with its last input released at
    ``ready_us``, as the simulator runs it: set-up, the wait (release plus latency), merge, store."""
    rows = fmt.NUM_HEADS_Q
    waited = max(free_us * 1e3 + cost.reduce_setup_ns, ready_us * 1e3 + cost.sem_latency_ns)
    return (waited + float(cost.counted_ns(inputs, rows, col_block)) + float(cost.store_ns(rows, True, True))) / 1e3


def widen_merges(schedule: Schedule, cost: CostModel | None = None, col_block: int | None = None,
                 min_depth: int = DEFAULT_MIN_DEPTH) -> Schedule:
    """``col_block`` None: each block width is tried and the one the model predicts ends soonest kept (narrow
    blocks: more merges, each reading less; wide: fewer SMs needed). ``cost`` (None: the packaged model) times
    the merges, for placement and the schedule's predicted makespan."""
    cost = resolve(cost)
    if col_block is not None and col_block not in fmt.COUNTED_COL_BLOCKS:
        raise WidenError(f"column block {col_block}: must be one of {', '.join(map(str, fmt.COUNTED_COL_BLOCKS))}")
    if min_depth < 1:
        raise WidenError(f"min_depth must be at least 1, got {min_depth}")
    tasks = schedule.tasks
    new_groups: list[tuple[Task, list[int]]] = []  # (the tree's root, its leaves)
    for root in tasks:
        if not (root.final and root.op == fmt.Opcode.REDUCTION) or root.counted:
            continue
        reds, leaves, depth = _tree(tasks, root.id)
        if depth < min_depth:
            continue
        if any(tasks[i].op != fmt.Opcode.PARTIAL for i in leaves):
            continue  # a tree over other counted merges: leave it alone
        if len(leaves) > fmt.MAX_COUNTED_INPUTS:
            raise WidenError(f"reduction {root.id} merges {len(leaves)} partials, more than a counted merge "
                             f"reads ({fmt.MAX_COUNTED_INPUTS})")
        new_groups.append((root, leaves))
    if not new_groups:
        return schedule
    blocks = [col_block] if col_block is not None else list(fmt.COUNTED_COL_BLOCKS)
    best = None
    for block in blocks:
        # only where the model says one level ends sooner than the tree (a short tree on few SMs may not)
        faster = [(root, leaves) for root, leaves in new_groups
                  if max(tasks[i].est_end_us for i in leaves) + merge_estimate_us(cost, len(leaves), block)
                  < root.est_end_us]
        if faster:
            s = _flatten(schedule, cost, faster, block, min_depth)
            if best is None or s.predicted_makespan_us < best.predicted_makespan_us:
                best = s
    # and only if the whole schedule is predicted to end sooner for it
    return best if best is not None and best.predicted_makespan_us < schedule.predicted_makespan_us else schedule


def _flatten(schedule: Schedule, cost: CostModel, groups: list[tuple[Task, list[int]]], col_block: int,
             min_depth: int) -> Schedule:
    """The schedule with these trees replaced by counted merges of ``col_block`` columns, each placed on the
    SM the estimates free first (appended to its queue: after every partial there, so nothing deadlocks)."""
    tasks = schedule.tasks
    removed = {r for root, _ in groups for r in _tree(tasks, root.id)[0]}
    new_groups = groups

    # Trees of one sequence's per-token merges read the same partials: those become one group of readers.
    keep = [t for t in tasks if t.id not in removed]
    renum = {t.id: k for k, t in enumerate(keep)}
    out = [dataclasses.replace(t, id=renum[t.id], inputs=tuple(renum[i] for i in t.inputs)) for t in keep]
    queues = [[renum[i] for i in q if i not in removed] for q in schedule.queues]
    free = [(max((out[i].est_end_us for i in q), default=0.0), sm) for sm, q in enumerate(queues)]
    heapq.heapify(free)
    for root, leaves in sorted(new_groups, key=lambda g: max(tasks[i].est_end_us for i in g[1])):
        inputs = tuple(renum[i] for i in leaves)
        ready = max(out[i].est_end_us for i in inputs)
        for token in range(root.q_start, root.q_start + root.q_count):
            for col in range(0, fmt.HEAD_DIM_V, col_block):
                t_free, sm = heapq.heappop(free)
                task = Task(id=len(out), op=fmt.Opcode.REDUCTION, seq=root.seq, q_start=token, q_count=1,
                            kv_start=root.kv_start, kv_end=root.kv_end, inputs=inputs, final=True, sm=sm,
                            est_start_us=t_free, est_end_us=merge_end_us(cost, len(inputs), col_block, t_free, ready),
                            col_start=col, col_count=col_block)
                out.append(task)
                queues[sm].append(task.id)
                heapq.heappush(free, (task.est_end_us, sm))
    out = [dataclasses.replace(t, sm=sm) for sm, q in enumerate(queues) for t in (out[i] for i in q)]
    out.sort(key=lambda t: t.id)
    params = {**schedule.params, "merges": "wide", "col_block": col_block, "min_depth": min_depth}
    predicted = max(t.est_end_us for t in out)
    return dataclasses.replace(schedule, tasks=out, queues=queues, params=params, predicted_makespan_us=predicted)
