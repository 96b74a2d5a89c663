"""Run a schedule on the GPU and turn the timing buffer into a measured trace, with fidelity checks.

Workload -> Schedule -> instruction tensor -> kernel -> events -> Arrow trace (source="measured").
"""

from __future__ import annotations

import dataclasses
import datetime
import uuid

import numpy as np

from mlaprof import __version__
from mlaprof import format as fmt
from mlaprof.provenance import git_revision
from mlaprof.timing import decode_events, overflow_count
from mlaprof.trace.io import Trace, dictionary_codes
from mlaprof.trace.schema import KIND_NAMES, ROLE_NAMES, TraceMeta
from mlaprof.workloads import Workload


def gpu_facts() -> dict:
    """Name, SM count, clocks, driver and CUDA versions of the current GPU (best effort, never raises)."""
    import torch

    props = torch.cuda.get_device_properties(torch.cuda.current_device())
    facts = {"gpu_name": props.name, "sm_count": props.multi_processor_count, "cuda_version": torch.version.cuda or "",
             "driver_version": "", "clocks": {}}
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        facts["driver_version"] = str(pynvml.nvmlSystemGetDriverVersion())
        facts["clocks"] = {
            "sm_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
            "mem_mhz": pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM),
            "sm_max_mhz": pynvml.nvmlDeviceGetMaxClockInfo(h, pynvml.NVML_CLOCK_SM),
        }
    except Exception:  # noqa: BLE001 - NVML is optional; the trace just lacks these facts
        pass
    return facts


def timer_resolution_ns(table) -> float | None:
    """Smallest step between distinct timestamps: %globaltimer's update period (32 ns on H100)."""
    ts = np.unique(np.concatenate([table.column("start_ns").to_numpy(), table.column("end_ns").to_numpy()]))
    steps = np.diff(ts)
    return float(steps.min()) if steps.size else None


def fidelity(table, kernel_time_us: float) -> dict:
    """Checks a measured trace against itself and the CUDA-event time of its launch.

    * overlaps: spans of one (SM, role) that overlap, counted separately for INSTRUCTION spans (which
      enclose the others) and for all other kinds; must be 0.
    * trace_span_us vs kernel_time_us: the events must fit inside the launch; gap_us is what the launch
      costs outside the first and last recorded event (launch latency, block start, drain).
    """
    sm = table.column("sm").to_numpy()
    start = table.column("start_ns").to_numpy()
    end = table.column("end_ns").to_numpy()
    kind_codes = dictionary_codes(table.column("kind"), KIND_NAMES)
    role_codes = dictionary_codes(table.column("role"), ROLE_NAMES)
    is_instr = kind_codes == fmt.Kind.INSTRUCTION
    group = (sm.astype(np.int64) * 8 + role_codes) * 2 + is_instr
    order = np.lexsort((start, group))
    g, s, e = group[order], start[order], end[order]
    same = g[1:] == g[:-1]
    overlaps = int(np.count_nonzero(same & (s[1:] < e[:-1])))
    span_us = float(end.max() - start.min()) / 1e3 if table.num_rows else 0.0
    return {
        "overlaps": overlaps,
        "trace_span_us": round(span_us, 3),
        "kernel_time_us": round(kernel_time_us, 3),
        "gap_us": round(kernel_time_us - span_us, 3),
        "inside_kernel": bool(span_us <= kernel_time_us),
    }


@dataclasses.dataclass
class MeasuredRun:
    trace: Trace
    kernel_times_us: list[float]
    rel_err: float
    out: "torch.Tensor"


def measure(w: Workload, scheduler: str, *, num_sms: int | None = None, repeat: int = 10, seed: int = 0,
            shuffle_pages: bool = True, cost=None, event_capacity: int = fmt.DEFAULT_EVENT_CAPACITY,
            timing: bool = True, merges: str = "wide", steal: bool = True, placement: str = "sim",
            build=None) -> MeasuredRun:
    """Run the instrumented megakernel on ``w`` (``repeat`` timed launches after a checked warm-up) and keep the
    median launch as the trace. ``merges``, ``steal`` and ``placement`` shape the schedule (``make_schedule``);
    ``build`` is a ``kernel.Build`` other than the project's csrc/ (A/B probes)."""
    from mlaprof.kernel import DEFAULT_BUILD, Megakernel, require_gpu

    require_gpu()  # before anything heavy: without a GPU the user hears so first
    import torch

    from mlaprof.reference import mla_decode_reference, relative_error
    from mlaprof.schedule import make_schedule
    from mlaprof.schedule.encode import encode
    from mlaprof.workloads import build_tensors

    facts = gpu_facts()
    num_sms = num_sms or facts["sm_count"]
    tensors = build_tensors(w, device="cuda", seed=seed, shuffle_pages=shuffle_pages)
    schedule = make_schedule(w, num_sms, scheduler, cost=cost, merges=merges, steal=steal, placement=placement)
    enc = encode(schedule)
    mk = Megakernel(torch.from_numpy(np.ascontiguousarray(enc.instructions)), tensors, enc.num_slots, enc.num_sems,
                    timing=timing, event_capacity=event_capacity, build=build or DEFAULT_BUILD)
    mk.out.fill_(float("nan"))
    mk.run()  # warm-up (and the correctness check below)
    ref, _ = mla_decode_reference(tensors)
    rel_err = relative_error(mk.out.float(), ref)
    mk.run()
    runs = []
    for _ in range(max(1, repeat)):
        us = mk.run()
        runs.append((us, *mk.timing_buffers()) if timing else (us, None, None))
    times = [r[0] for r in runs]
    pick = int(np.argsort(times)[len(times) // 2])  # the median launch is the one we keep
    kernel_us, events, counts = runs[pick]
    if not timing:
        return MeasuredRun(trace=None, kernel_times_us=times, rel_err=rel_err, out=mk.out)
    table, _ = decode_events(events, counts, enc.instructions)
    first_start = [int(table.column("start_ns").to_numpy()[table.column("sm").to_numpy() == s].min())
                   for s in np.unique(table.column("sm").to_numpy())]
    meta = TraceMeta(
        source="measured", workload=w.to_json(), scheduler=scheduler, sm_count=num_sms,
        scheduler_params=dict(schedule.params), tasks=schedule.to_json(), mlaprof_version=__version__,
        git_rev=git_revision(), gpu_name=facts["gpu_name"], clocks=facts["clocks"],
        cuda_version=facts["cuda_version"], driver_version=facts["driver_version"], timer_source="globaltimer",
        timer_resolution_ns=timer_resolution_ns(table), start_skew_ns=float(max(first_start) - min(first_start)),
        kernel_time_us=round(kernel_us, 3), run_id=uuid.uuid4().hex[:12], repetition=pick,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        event_capacity=event_capacity, overflow_events=overflow_count(counts, event_capacity),
        extra={
            "rel_err": rel_err, "kernel_times_us": [round(t, 3) for t in times], "seed": seed,
            "shuffled_block_table": shuffle_pages, "fidelity": fidelity(table, kernel_us),
            "predicted_makespan_us": round(schedule.predicted_makespan_us, 3),
        },
    )
    return MeasuredRun(trace=Trace(table=table, meta=meta), kernel_times_us=times, rel_err=rel_err, out=mk.out)
