"""Steal groups: the partials that split one sequence share their KV tiles on the GPU.

A scheduler splits a long sequence into partials of equal planned work, but SMs do not stream KV at one rate
(the traces show partials of equal work ending up to ~6 us apart), and the merges wait for the last one. In
a steal group (``Task.steal``, ``format.Word.STEAL_SEM``) each member computes one tile of its own, then
claims the group's next tile from a counter in global memory until none is left, so the members end within
about one tile of each other, wherever the bandwidth went. The merges read the same slots as before: a
partial's result is one (O, LSE) over whichever tiles it computed, and merging is order-free.

A member that has another partial after it in its SM's queue would delay that partial by every tile it
takes beyond its share, so only each SM's last partial joins; the groups are the runs of such partials
whose ranges are contiguous.
"""

from __future__ import annotations

import dataclasses

from mlaprof import format as fmt
from mlaprof.schedule.tasks import Schedule, Task


def tiles_spanned(lo: int, hi: int) -> int:
    """KV tiles the range [lo, hi) overlaps, as the kernel counts a partial's tiles (aligned blocks): a group
    needs at least one per member."""
    return -(-hi // fmt.KV_TILE_TOKENS) - lo // fmt.KV_TILE_TOKENS


def share_tiles(schedule: Schedule) -> Schedule:
    """The schedule with its split sequences' partials in steal groups (a new Schedule; the input is kept)."""
    tasks, partial = schedule.tasks, fmt.Opcode.PARTIAL
    by_range: dict[tuple[int, int, int], list[Task]] = {}
    for q in schedule.queues:
        for i in reversed(q):  # the SM's last partial
            t = tasks[i]
            if t.op is partial:
                if not t.final and t.steal < 0:
                    by_range.setdefault((t.seq, t.q_start, t.q_count), []).append(t)
                break
    group_of: dict[int, int] = {}
    next_id = 1 + max((t.steal for t in tasks), default=-1)
    for members in by_range.values():
        members.sort(key=lambda t: t.kv_start)
        run: list[Task] = []
        for t in members + [None]:  # None closes the last run
            if t is not None and run and run[-1].kv_end == t.kv_start:
                run.append(t)
                continue
            if len(run) >= 2 and tiles_spanned(run[0].kv_start, run[-1].kv_end) >= len(run):
                for m in run:
                    group_of[m.id] = next_id
                next_id += 1
            run = [t] if t is not None else []
    if not group_of:
        return dataclasses.replace(schedule, params={**schedule.params, "steal": 0})
    tasks = [_with_steal(t, group_of[t.id]) if t.id in group_of else t for t in tasks]
    return dataclasses.replace(schedule, tasks=tasks, params={**schedule.params, "steal": len(set(group_of.values()))})


def _with_steal(t: Task, group: int) -> Task:
    """``dataclasses.replace(t, steal=group)`` without the generated __init__ (a few us per task: most of a
    millisecond for a hundred members; plan.tasks_from_lists does the same)."""
    out = object.__new__(Task)
    object.__setattr__(out, "__dict__", {**t.__dict__, "steal": group})
    return out
