"""Schedulers: a Workload and an SM count in, one Schedule out; ``encode`` turns it into the instruction tensor."""

from mlaprof.schedule.tasks import Schedule, Task  # noqa: F401
