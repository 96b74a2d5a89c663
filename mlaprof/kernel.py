"""JIT build and launch of the megakernel in csrc/ (sm_90a), with its status check.

The extension is built on first use by torch.utils.cpp_extension and cached (in TORCH_EXTENSIONS_DIR, by
default ~/.cache/torch_extensions); editing any csrc/ file triggers a rebuild.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from pathlib import Path

import numpy as np

from mlaprof import format as fmt
from mlaprof.errors import UserError
from mlaprof.workloads import WorkloadTensors

CSRC = Path(__file__).resolve().parent.parent / "csrc"
SOURCES = ("bindings.cpp", "megakernel.cu")
NVCC_FLAGS = (
    "-gencode=arch=compute_90a,code=sm_90a",  # wgmma/setmaxnreg need the 'a' target; plain sm_90 rejects them
    "-O3",
    "--use_fast_math",
    "-std=c++17",
    "-lineinfo",
)


HOST_ENQUEUE_COVER_CYCLES = 1_000_000  # ~0.5 ms at 2 GHz: longer than a Python-side launch takes to enqueue


class NoGpuError(UserError):
    pass


class KernelError(UserError):
    """The kernel reported an error through its status tensor (it never hangs: waits are bounded)."""


class KernelHang(UserError):
    """The GPU did not finish within HANG_TIMEOUT_S. Not a KernelError: nothing later in this process can use
    the GPU, so callers must not catch it and carry on."""


# The kernel bounds its own waits at WAIT_TIMEOUT_NS (0.2 s) and then ends with an error; a launch still
# running after this long is stuck where no bound reaches (a kernel bug), and waiting on it would hang the host.
HANG_TIMEOUT_S = 20.0
HANG_POLL_S = 1e-4


def wait_for_gpu(event, what: str, timeout_s: float = HANG_TIMEOUT_S) -> None:
    """Wait until ``event`` (a recorded torch.cuda.Event) has completed, or raise KernelHang after ``timeout_s``."""
    import time

    if event.query():
        return
    deadline = time.monotonic() + timeout_s
    while not event.query():
        if time.monotonic() > deadline:
            raise KernelHang(
                f"{what} did not finish within {timeout_s:g} s: the megakernel is stuck past its own bounded "
                "waits, which is a kernel bug (please report it with the workload and scheduler). This process "
                "cannot use the GPU again; it exits, and the driver ends the stuck launch with it."
            )
        time.sleep(HANG_POLL_S)


def require_gpu():
    import torch

    if not torch.cuda.is_available():
        raise NoGpuError(
            "no CUDA GPU found: the megakernel needs an sm_90 GPU (H100/H200). Without one, "
            "`mlaprof simulate --workload W --scheduler S --out F.arrow` runs the same schedule on the cost model"
        )
    major, minor = torch.cuda.get_device_capability()
    if major != 9:
        name = torch.cuda.get_device_name()
        raise NoGpuError(f"{name} is sm_{major}{minor}; the megakernel is built for sm_90a (Hopper: H100/H200)")


@dataclasses.dataclass(frozen=True)
class Build:
    """Which megakernel build to load: the project's csrc/ by default. Another source tree (an A/B probe of two
    versions in one process: `bench/build_ab.py`) or extra preprocessor defines (the GPU test that poisons
    shared memory: `MLAPROF_POISON_SMEM`) give an extension of its own name, so several load side by side."""

    csrc: Path = CSRC
    defines: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        if self.csrc == CSRC and not self.defines:
            return "mlaprof_megakernel"
        import hashlib

        key = f"{Path(self.csrc).resolve()}|{'|'.join(self.defines)}".encode()
        return f"mlaprof_megakernel_{hashlib.sha1(key).hexdigest()[:10]}"


DEFAULT_BUILD = Build()


@functools.cache
def load_extension(build: Build = DEFAULT_BUILD, verbose: bool = False):
    require_gpu()
    from torch.utils.cpp_extension import load

    csrc = Path(build.csrc)
    if not (csrc / "megakernel.cu").is_file():
        raise UserError(f"{csrc} holds no megakernel.cu: point the build at a csrc/ directory")
    return load(
        name=build.name,
        sources=[str(csrc / s) for s in SOURCES],
        extra_include_paths=[str(csrc)],
        extra_cflags=["-O2", "-std=c++17"],
        extra_cuda_cflags=list(NVCC_FLAGS) + [f"-D{d}" for d in build.defines],
        verbose=verbose or bool(os.environ.get("MLAPROF_BUILD_VERBOSE")),
    )


def _status_message(code: int, sm: int, instr: int, sem: int) -> str:
    if code == fmt.Status.WAIT_TIMEOUT:
        return (
            f"SM {sm}, instruction {instr} waited more than {fmt.WAIT_TIMEOUT_NS / 1e9:.1f} s on semaphore {sem}: "
            "the schedule deadlocks or an input is never produced; check it with `mlaprof simulate`"
        )
    if code == fmt.Status.BAD_OPCODE:
        return f"SM {sm}, instruction {instr}: unknown opcode; the instruction tensor is not from this mlaprof"
    if code == fmt.Status.PIPELINE_TIMEOUT:
        return (f"SM {sm}: a shared-memory pipeline stage never arrived within {fmt.WAIT_TIMEOUT_NS / 1e9:.1f} s; "
                "this is a kernel bug, please report it with the instruction tensor (`mlaprof schedule --out`)")
    if code == fmt.Status.BAD_OPERAND:
        return f"SM {sm}, instruction {instr}: operand out of range (sequence, query tokens, KV range, slot or semaphore)"
    return f"kernel status {code} at SM {sm}, instruction {instr}"


@dataclasses.dataclass
class Megakernel:
    """Device buffers for one instruction tensor on one workload's tensors; launch() is CUDA-graph capturable."""

    instructions: "torch.Tensor"
    tensors: WorkloadTensors
    num_slots: int
    num_sems: int
    timing: bool = True
    event_capacity: int = fmt.DEFAULT_EVENT_CAPACITY
    build: Build = DEFAULT_BUILD

    def __post_init__(self):
        import torch

        require_gpu()
        dev = self.tensors.q.device
        num_sms = self.instructions.shape[0]
        props = torch.cuda.get_device_properties(dev)
        if num_sms > props.multi_processor_count:
            raise UserError(
                f"the schedule uses {num_sms} SMs but {props.name} has {props.multi_processor_count}: "
                "a persistent megakernel needs every block resident; schedule for at most that many"
            )
        b, s_q, h, _ = self.tensors.q.shape
        self.ext = load_extension(self.build)
        self.instructions = torch.as_tensor(self.instructions, dtype=torch.int32).to(dev).contiguous()
        self.out = torch.empty(b, s_q, h, fmt.HEAD_DIM_V, dtype=torch.bfloat16, device=dev)
        self.out_lse = torch.empty(b, s_q, h, dtype=torch.float32, device=dev)
        # partial outputs in fp16: half the bytes of fp32 on the reduction tree's path, 10-bit mantissa (O is a convex
        # combination of V rows, so its range is V's); LSE stays fp32
        self.scratch_o = torch.empty(max(self.num_slots, 1), fmt.MAX_ROWS, fmt.HEAD_DIM_V, dtype=torch.float16, device=dev)
        self.scratch_lse = torch.empty(max(self.num_slots, 1), fmt.MAX_ROWS, dtype=torch.float32, device=dev)
        self.sems = torch.zeros(max(self.num_sems, 1), dtype=torch.int32, device=dev)
        self.status = torch.zeros(8, dtype=torch.int32, device=dev)
        cap = self.event_capacity if self.timing else 1
        self.events = torch.zeros(num_sms, cap, fmt.EVENT_WORDS, dtype=torch.int64, device=dev)
        self.event_counts = torch.zeros(num_sms, dtype=torch.int32, device=dev)

    def launch(self) -> None:
        """Asynchronous launch on the current stream (no host sync: usable inside a CUDA graph).

        One kernel and nothing else: a successful launch leaves the status and the semaphores zeroed, so only
        ``check`` resets them, after it reports an error. Until then every launch sees the abort flag and ends
        at once (a graph replayed after a failure does not wait out the kernel's wait bound on each replay)."""
        t = self.tensors
        self.ext.launch(
            self.instructions, t.q, t.kv_cache, t.block_table, t.cache_seqlens, self.out, self.out_lse,
            self.scratch_o, self.scratch_lse, self.sems, self.status, self.events, self.event_counts,
            float(t.softmax_scale), bool(self.timing),
        )

    def check(self) -> None:
        """Raise KernelError if the last launch reported one; leaves the buffers ready for the next launch."""
        code, sm, instr, sem = (int(x) for x in self.status[:4].tolist())
        if code != fmt.Status.OK:
            self.sems.zero_()  # an aborted launch leaves semaphores set; the next launch must start clean
            self.status.zero_()
            raise KernelError(_status_message(code, sm, instr, sem))

    def run(self) -> float:
        """Launch once, wait, check status; returns the CUDA-event time of the launch in microseconds."""
        import torch

        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        # Keep the GPU busy while the host enqueues event + launch, so the start event fires right before the
        # kernel starts instead of waiting out host-side launch overhead (tens of µs from Python).
        torch.cuda._sleep(HOST_ENQUEUE_COVER_CYCLES)
        start.record()
        self.launch()
        end.record()
        wait_for_gpu(end, "a megakernel launch")
        self.check()
        return start.elapsed_time(end) * 1e3

    def timing_buffers(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.timing:
            raise UserError("this kernel was built with timing compiled out; launch with timing=True for a trace")
        return self.events.cpu().numpy(), self.event_counts.cpu().numpy()
