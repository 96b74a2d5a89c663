"""Schedulers: a Workload and an SM count in, one Schedule out; ``encode`` turns it into the instruction tensor.

``make_schedule(workload, num_sms, "static" | "makespan", cost=None)`` is the entry point; both schedulers plan
on a ``mlaprof.costmodel.CostModel`` (the defaults, or one fitted by ``mlaprof calibrate``).
"""

from __future__ import annotations

from mlaprof.schedule.tasks import Schedule, Task  # noqa: F401

SCHEDULERS = ("static", "makespan")


def make_schedule(workload, num_sms: int, scheduler: str, cost=None, sm_rates: bool = False) -> Schedule:
    """``sm_rates`` (makespan only): also place queues by the cost model's per-SM rates (see makespan.py)."""
    from mlaprof.schedule.plan import ScheduleError

    if scheduler == "static":
        from mlaprof.schedule.static import static_schedule

        return static_schedule(workload, num_sms, cost)
    if scheduler == "makespan":
        from mlaprof.schedule.makespan import makespan_schedule

        return makespan_schedule(workload, num_sms, cost, sm_rates=sm_rates)
    raise ScheduleError(f"unknown scheduler {scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
