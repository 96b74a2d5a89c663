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


_REDUCTION = fmt.Opcode.REDUCTION


def _tree(tasks: list[Task], root: int) -> tuple[list[int], list[int], int]:
    """(reductions, leaves, depth) of the tree under ``root``: leaves are the partials it merges (or counted
    merges), depth the levels of listed reductions."""
    reds, leaves = [], []
    level, depth = [root], 0
    while level:  # breadth first, one level at a time
        below = []
        for tid in level:
            t = tasks[tid]
            if t.op == _REDUCTION and not t.counted:
                reds.append(tid)
                below += t.inputs
            else:
                leaves.append(tid)
        depth += bool(below)
        level = below
    leaves.sort(key=lambda i: (tasks[i].kv_start, i))
    return reds, leaves, depth


def _merge_terms(cost: CostModel, inputs: int, col_block: int) -> tuple[float, float, float]:
    """(set-up, semaphore latency, merge + store) of a counted merge, ns: on an SM free at f with its last
    input released at r it ends at max(f + set-up, r + latency) + merge + store, as the simulator runs it."""
    rows = fmt.NUM_HEADS_Q
    body = float(cost.counted_ns(inputs, rows, col_block)) + float(cost.store_ns(rows, True, True))
    return float(cost.reduce_setup_ns), float(cost.sem_latency_ns), body


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
    if min_depth >= 2 and not any(tasks[i].op == _REDUCTION for t in tasks if t.op == _REDUCTION for i in t.inputs):
        return schedule  # every tree is one level: nothing to flatten (most workloads; the check is cheap)
    # Trees by the partials they merge: the per-token trees of one sequence share them, and a partial can
    # signal one counter or its tree's semaphores, not both, so trees sharing partials go together or stay.
    groups: dict[tuple[int, ...], list[tuple[Task, list[int]]]] = {}
    readers: dict[int, set[int]] = {}
    for t in tasks:
        for i in t.inputs:
            readers.setdefault(i, set()).add(t.id)
    for root in tasks:
        if not (root.final and root.op == fmt.Opcode.REDUCTION) or root.counted:
            continue
        reds, leaves, depth = _tree(tasks, root.id)
        if depth < min_depth or any(tasks[i].op != fmt.Opcode.PARTIAL for i in leaves):
            groups[tuple(leaves)] = groups.get(tuple(leaves), []) + [(root, None)]  # a tree that stays
            continue
        if len(leaves) > fmt.MAX_COUNTED_INPUTS:
            raise WidenError(f"reduction {root.id} merges {len(leaves)} partials, more than a counted merge "
                             f"reads ({fmt.MAX_COUNTED_INPUTS})")
        groups.setdefault(tuple(leaves), []).append((root, reds))
    candidates = []
    for leaves, trees in groups.items():
        if any(reds is None for _, reds in trees):
            continue
        removed = {r for _, reds in trees for r in reds}
        if all(readers[i] <= removed for i in leaves):  # no other reduction reads these partials
            ready = max(tasks[i].est_end_us for i in leaves)
            candidates.append((leaves, [root for root, _ in trees], removed, ready))
    if not candidates:
        return schedule
    best, memo = None, {}

    def terms(n: int, block: int) -> tuple[float, float, float]:  # numpy per call: computed once per (n, block)
        if (n, block) not in memo:
            memo[(n, block)] = _merge_terms(cost, n, block)
        return memo[(n, block)]

    tried = []
    for block in [col_block] if col_block is not None else fmt.COUNTED_COL_BLOCKS:
        # only where the model says one level ends sooner than the trees (a short tree on few SMs may not)
        faster = []
        bound = 0.0  # a placement ends no sooner than any group's last input + latency + merge + store
        for c in candidates:
            setup, latency, body = terms(len(c[0]), block)
            if c[3] + (max(setup, latency) + body) / 1e3 < max(root.est_end_us for root in c[1]):
                faster.append(c)
                bound = max(bound, c[3] + (latency + body) / 1e3)
        if faster:
            tried.append((bound, block, faster))
    for bound, block, faster in sorted(tried, key=lambda x: x[0]):
        if best is not None and bound >= best[0][0]:
            break  # no block width left can end sooner than the best placed (bounds ascending)
        placement = _placement(schedule, cost, faster, block, memo)
        if best is None or placement[0] < best[0][0]:
            best = (placement, block, faster)
    # and only if the whole schedule is predicted to end sooner for it
    if best is None or best[0][0] >= schedule.predicted_makespan_us:
        return schedule
    return _flatten(schedule, best[0], best[2], best[1], min_depth)


def _placement(schedule: Schedule, cost: CostModel, groups, col_block: int, memo: dict | None = None):
    """Where the merges go: each on the SM the estimates free first, appended to its queue (after every
    partial there, so nothing deadlocks). Returns (predicted makespan, [(group, token, col, sm, start, end)],
    the remaining queues)."""
    memo = {} if memo is None else memo
    tasks = schedule.tasks
    base_key = tuple(id(g) for g in groups)
    if base_key not in memo:  # the queues without the trees: the same for every block width tried
        removed = set().union(*(g[2] for g in groups))
        queues = [[i for i in q if i not in removed] if removed.intersection(q) else q for q in schedule.queues]
        free = [(tasks[q[-1]].est_end_us if q else 0.0, sm) for sm, q in enumerate(queues)]  # last task ends last
        heapq.heapify(free)
        memo[base_key] = (queues, free, max((f for f, _ in free), default=0.0))
    queues, free, end = memo[base_key]
    free = list(free)
    placed = []
    cols = range(0, fmt.HEAD_DIM_V, col_block)
    for g in sorted(groups, key=lambda g: g[3]):
        leaves, roots = g[0], g[1]
        key = (len(leaves), col_block)
        if key not in memo:
            memo[key] = _merge_terms(cost, *key)
        setup, latency, body = memo[key]
        earliest = (g[3] * 1e3 + latency) / 1e3  # us: when the counter is seen complete
        setup, body = setup / 1e3, body / 1e3
        for token in sorted({q for root in roots for q in range(root.q_start, root.q_start + root.q_count)}):
            for col in cols:
                t_free, sm = heapq.heappop(free)
                t_end = (t_free + setup if t_free + setup > earliest else earliest) + body
                placed.append((g, token, col, sm, t_free, t_end))
                heapq.heappush(free, (t_end, sm))
        end = max(end, max(f for f, _ in free))
    return end, placed, queues


def _flatten(schedule: Schedule, placement, groups, col_block: int, min_depth: int) -> Schedule:
    """The schedule with these trees replaced by counted merges of ``col_block`` columns where ``_placement``
    put them."""
    tasks = schedule.tasks
    predicted, placed, queues = placement
    removed = set().union(*(g[2] for g in groups))
    keep = [t for t in tasks if t.id not in removed]
    renum = {t.id: k for k, t in enumerate(keep)}
    out = [t if t.id == renum[t.id] and not t.inputs else
           dataclasses.replace(t, id=renum[t.id], inputs=tuple(renum[i] for i in t.inputs)) for t in keep]
    queues = [[renum[i] for i in q] for q in queues]
    inputs_of = {}
    fields = []
    for g, token, col, sm, start, end in placed:
        leaves, root = g[0], g[1][0]
        if leaves not in inputs_of:
            inputs_of[leaves] = tuple(renum[i] for i in leaves)  # one tuple per group (the encoder relies on it)
        tid = len(out) + len(fields)
        fields.append({"id": tid, "op": _REDUCTION, "seq": root.seq, "q_start": token, "q_count": 1,
                       "kv_start": root.kv_start, "kv_end": root.kv_end, "inputs": inputs_of[leaves], "final": True,
                       "sm": sm, "est_start_us": start, "est_end_us": end, "col_start": col, "col_count": col_block,
                       "steal": -1})
        queues[sm].append(tid)
    out += _tasks(fields)
    params = {**schedule.params, "merges": "wide", "col_block": col_block, "min_depth": min_depth}
    return dataclasses.replace(schedule, tasks=out, queues=queues, params=params, predicted_makespan_us=predicted)


_TASK_FIELDS = [f.name for f in dataclasses.fields(Task)]


def _tasks(fields: list[dict]) -> list[Task]:
    """Frozen Tasks from complete field dicts, without the generated __init__ (a few us per task: most of a
    millisecond for a hundred merges; plan.tasks_from_lists does the same)."""
    assert all(list(f) == _TASK_FIELDS for f in fields[:1]), "Task's fields changed: update widen._flatten"
    out = [object.__new__(Task) for _ in fields]
    for t, f in zip(out, fields):
        object.__setattr__(t, "__dict__", f)
    return out
