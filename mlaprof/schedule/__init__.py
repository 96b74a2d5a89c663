"""Schedulers: a Workload and an SM count in, one Schedule out; ``encode`` turns it into the instruction tensor.

``make_schedule(workload, num_sms, "static" | "makespan", cost=None, merges="tree" | "wide")`` is the entry
point; both schedulers plan on a ``mlaprof.costmodel.CostModel`` (the defaults, or one fitted by ``mlaprof
calibrate``). ``merges="wide"`` flattens their deep reduction trees into one level of column-block merges
(``widen.py``). ``steal=True`` puts the partials that split a sequence into steal groups that share their KV
tiles on the GPU (``steal.py``). The makespan scheduler then places the merges again by simulated time
(``placement.py``).
"""

from __future__ import annotations

from mlaprof.schedule.tasks import Schedule, Task  # noqa: F401

SCHEDULERS = ("static", "makespan")
MERGES = ("tree", "wide")
PLACEMENTS = ("sim", "plan")


def make_schedule(workload, num_sms: int, scheduler: str, cost=None, sm_rates: bool = False,
                  merges: str = "wide", steal: bool = True, placement: str = "sim") -> Schedule:
    """``sm_rates`` (makespan only): also place queues by the cost model's per-SM rates (see makespan.py).
    ``merges``: "tree" keeps the scheduler's reduction trees, "wide" flattens the deep ones (widen.py).
    ``steal``: split sequences' partials share their tiles (steal.py); False keeps each partial's range.
    ``placement`` (makespan only): "sim" places the merges again by simulated time (placement.py), "plan"
    keeps the planner's placement."""
    from mlaprof.schedule.plan import ScheduleError

    if merges not in MERGES:
        raise ScheduleError(f"unknown merge layout {merges!r}; choose one of {', '.join(MERGES)}")
    if placement not in PLACEMENTS:
        raise ScheduleError(f"unknown merge placement {placement!r}; choose one of {', '.join(PLACEMENTS)}")
    if scheduler == "static":
        from mlaprof.schedule.static import static_schedule

        s = static_schedule(workload, num_sms, cost)
    elif scheduler == "makespan":
        from mlaprof.schedule.makespan import makespan_schedule

        s = makespan_schedule(workload, num_sms, cost, sm_rates=sm_rates)
    else:
        raise ScheduleError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
    if merges == "wide":
        import dataclasses

        from mlaprof.schedule.static import static_schedule
        from mlaprof.schedule.widen import widen_merges

        s = widen_merges(s, cost)
        if scheduler == "makespan":  # static is one of makespan's candidates: it stays one after flattening
            st = widen_merges(static_schedule(workload, num_sms, cost), cost)
            if st.predicted_makespan_us < s.predicted_makespan_us:
                s = dataclasses.replace(st, scheduler="makespan", compute_ms=s.compute_ms + st.compute_ms,
                                        params={**st.params, "shape": "static", "beat": "makespan's own plan, "
                                                f"{s.predicted_makespan_us:.2f} us after flattening"})
    if steal:
        from mlaprof.schedule.steal import share_tiles

        s = share_tiles(s)
    if scheduler == "makespan" and placement == "sim":  # its last pass: the merges placed again by simulated time (placement.py)
        import dataclasses
        import time

        from mlaprof.schedule.placement import place_merges

        t0 = time.perf_counter()
        placed = place_merges(s, cost)
        if placed is not s:
            s = dataclasses.replace(placed, compute_ms=s.compute_ms + (time.perf_counter() - t0) * 1e3)
    return s
