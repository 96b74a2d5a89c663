"""Traces from the project's own simulator (schedule -> encode -> simulate), written to disk once per test run.

These tie analysis, diff and export to the traces users actually get; the hand-built goldens pin exact answers.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from mlaprof.trace.io import Trace, read_trace, write_trace

_DIR = Path(tempfile.mkdtemp(prefix="mlaprof-simulated-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)


@functools.lru_cache(maxsize=None)
def simulated(workload: str, scheduler: str, num_sms: int = 132, jitter: float = 0.0, seed: int = 0) -> Trace:
    from mlaprof import workloads
    from mlaprof.schedule import make_schedule
    from mlaprof.schedule.encode import encode
    from mlaprof.sim import simulate

    t = simulate(encode(make_schedule(workloads.get(workload), num_sms, scheduler)), jitter=jitter, seed=seed)
    path = _DIR / f"{workload}-{scheduler}-{num_sms}-{jitter}-{seed}.arrow"
    return read_trace(write_trace(path, t.table, t.meta))
