"""The makespan scheduler's last choice: its own schedule, or one with a partial on every SM, whichever the
simulator ends sooner.

Equal chunks in whole KV tiles round an SM's share up, and can leave SMs without any partial to stream:
seed-representative has 6.3 tiles per SM, chunks of 7, so 120 partials on 132 SMs and 12 SMs idle until the
merges. With steal groups (``steal.py``) a sequence's partials share its tiles at run time, so the partial
counts need not divide the tiles evenly: counts proportional to each sequence's tiles
(``static.spread_parts``) put a partial on every SM, and the groups even out the uneven ranges.

The planner cannot see that gain: it plans the ranges, and the longest range is as long as a chunk. The
simulator serves steal claims as the GPU does, so the two schedules are compared there, each with its merges
placed by simulated time (``placement.py``).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mlaprof import format as fmt
from mlaprof.schedule.placement import place_merges, placed_and_simulated
from mlaprof.schedule.tasks import Schedule


def streaming_sms(schedule: Schedule) -> int:
    """SMs that run at least one partial."""
    partial = fmt.Opcode.PARTIAL
    return sum(1 for q in schedule.queues if any(schedule.tasks[i].op is partial for i in q))


def every_sm_schedule(schedule: Schedule, cost, merges: str) -> Schedule | None:
    """The static plan with ``spread_parts`` partial counts, shaped as ``schedule`` was (merges, steal
    groups); None where those counts would not put partials on more SMs than ``schedule`` does."""
    from mlaprof.schedule.static import spread_parts, static_schedule
    from mlaprof.schedule.steal import share_tiles
    from mlaprof.schedule.widen import widen_merges

    w, n = schedule.workload, schedule.num_sms
    parts = spread_parts(np.asarray(w.lens, dtype=np.int64), n)
    if parts is None or int(parts.sum()) <= streaming_sms(schedule):
        return None
    s = static_schedule(w, n, cost, parts=parts)
    if merges == "wide":
        s = widen_merges(s, cost)
    return share_tiles(s)


def best_by_simulation(schedule: Schedule, cost, merges: str, every_sm: bool) -> Schedule:
    """``schedule`` with its merges placed by simulated time, or (``every_sm``: its partials are in steal
    groups) the every-SM schedule placed the same way, whichever the simulator ends sooner; both simulated
    makespans go in ``params["every_sm"]``."""
    alt = every_sm_schedule(schedule, cost, merges) if every_sm else None
    if alt is None:
        return place_merges(schedule, cost)
    own, own_us = placed_and_simulated(schedule, cost)
    alt, alt_us = placed_and_simulated(alt, cost)
    if alt_us < own_us:
        return dataclasses.replace(alt, scheduler=schedule.scheduler, predicted_makespan_us=alt_us,
                                   compute_ms=schedule.compute_ms + alt.compute_ms,
                                   params={**alt.params, "shape": "every SM",
                                           "every_sm": f"{own_us:.2f} -> {alt_us:.2f} us simulated"})
    return dataclasses.replace(own, params={**own.params, "every_sm": f"kept: {alt_us:.2f} us simulated "
                                                                      f"against {own_us:.2f}"})
