"""The schedulers' native core: the static and makespan planners and the task-level timeline in C, loaded
with ctypes, built on first use (``build.py``).

Why: a scheduler call plans a few hundred tasks through many small steps (trees, heaps, a backward list
scheduler, fills, the timeline, a second scheduler to compare against), and in Python, where each step is
a numpy call on a tiny array or a few interpreted operations, that took 1.5-13 ms per call.  The C files
mirror the Python functions one for one, operation for operation (see ``core.h``), so schedules and
predicted times are bit-identical: the Python code stays the reference and the fallback where no compiler
is available, and ``tests/test_schedule_native.py`` compares the two.

``MLAPROF_NATIVE=0`` turns the core off for a process; ``python_only()`` does so inside a ``with`` block.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os

from mlaprof import format as fmt
from mlaprof.costmodel import CostModel

ABI = 2  # api.c's MLP_ABI
_state = {"lib": None, "tried": False, "off": os.environ.get("MLAPROF_NATIVE", "1") == "0"}

# CostModel's constants that the C model reads (core.h's Model, in order); sm_spread reaches it as the
# per-SM factors instead
MODEL_FLOATS = ("setup_ns", "reduce_setup_ns", "load_base_ns", "load_byte_ns", "compute_base_ns", "compute_flop_ns",
                "compute_short_ns", "reduce_base_ns", "reduce_row_ns", "reduce_byte_ns", "store_base_ns",
                "store_byte_ns", "reduce_store_ns", "reduce_fence_ns", "first_load_ns", "sem_latency_ns")
MODEL_INTS = ("row_granule", "tile_tokens", "tile_bytes", "flops_per_row_token", "scratch_row_bytes",
              "output_row_bytes", "heads_q", "stages", "max_fanin")
# fields the schedulers never read: sm_spread (the simulator's), the counted-merge terms (widen.py, the simulator)
KNOWN_FIELDS = set(MODEL_FLOATS) | {"row_granule", "sm_spread", "counted_base_ns", "counted_round_ns",
                                                   "counted_line_ns", "steal_claim_ns"}  # steal: simulator only


class Model(ctypes.Structure):
    _fields_ = [(n, ctypes.c_double) for n in MODEL_FLOATS] + [(n, ctypes.c_int64) for n in MODEL_INTS]


def library() -> ctypes.CDLL | None:
    """The loaded core, or None (turned off, or it could not be built: one warning says why)."""
    if _state["off"]:
        return None
    if not _state["tried"]:
        _state["tried"] = True
        try:
            _state["lib"] = _load()
        except Exception as e:  # any failure to build or load leaves the Python planner, which always works
            # one line, once per process (logging prints a bare message where no handler is configured)
            logging.getLogger(__name__).warning(
                "mlaprof: native scheduler core unavailable, planning in Python (slower): %s", e)
    return _state["lib"]


def usable(cost: CostModel) -> bool:
    """Whether the core can plan on ``cost``: a plain CostModel whose fields the C model knows (a subclass
    may compute spans otherwise; a new field would be one the C formulas ignore)."""
    return type(cost) is CostModel and library() is not None


@contextlib.contextmanager
def python_only():
    """Plan in Python inside the block (tests compare the two)."""
    old = _state["off"]
    _state["off"] = True
    try:
        yield
    finally:
        _state["off"] = old


def _load() -> ctypes.CDLL:
    from mlaprof.schedule.native.build import build

    fields = {f.name for f in dataclasses.fields(CostModel)}
    if fields != KNOWN_FIELDS:
        raise RuntimeError(f"the C cost model does not know CostModel's fields {sorted(fields ^ KNOWN_FIELDS)}")
    if (int(fmt.Opcode.PARTIAL), int(fmt.Opcode.REDUCTION)) != (1, 2):
        raise RuntimeError("format.Opcode changed: update core.h's OP_PARTIAL / OP_REDUCTION")
    lib = ctypes.CDLL(str(build()))
    i64, ptr = ctypes.c_int64, ctypes.c_void_p
    lib.mlp_abi.restype = lib.mlp_model_size.restype = i64
    if lib.mlp_abi() != ABI or lib.mlp_model_size() != ctypes.sizeof(Model):
        raise RuntimeError("the compiled library does not match this package (stale build?)")
    lib.mlp_static.argtypes = lib.mlp_makespan.argtypes = [ptr, ptr, i64, i64, i64, i64, i64, ptr, ptr]
    lib.mlp_static.restype = lib.mlp_makespan.restype = ptr
    lib.mlp_copy.argtypes, lib.mlp_copy.restype = [ptr, ptr, ptr], None
    lib.mlp_free.argtypes, lib.mlp_free.restype = [ptr], None
    return lib
