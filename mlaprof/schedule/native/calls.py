"""Calling the native core: a workload and a cost model in, the kept schedule's task columns out as Python
lists (times in us), or None where the core cannot plan (the caller then plans in Python)."""

from __future__ import annotations

import ctypes
import itertools

import numpy as np

from mlaprof import costmodel as cm
from mlaprof import format as fmt
from mlaprof.costmodel import CostModel
from mlaprof.schedule.native import MODEL_FLOATS, Model, library, usable
from mlaprof.workloads import Workload

SHAPES = ("fill-all", "fill-longest", "chunks")  # rollouts.c's SHAPE_* codes
# the columns plan.tasks_from_lists takes, in its order
COLUMNS = ("op", "seq", "kv0", "kv1", "inputs", "final", "sm", "start_us", "end_us", "q0", "qn")


def model(cost: CostModel) -> Model:
    return Model(*(float(getattr(cost, n)) for n in MODEL_FLOATS), int(cost.row_granule), fmt.KV_TILE_TOKENS,
                 cm.TILE_BYTES, cm.FLOPS_PER_ROW_TOKEN, cm.SCRATCH_ROW_BYTES, cm.OUTPUT_ROW_BYTES, fmt.NUM_HEADS_Q,
                 fmt.KV_STAGES, fmt.MAX_FANIN)


def static_plan(workload: Workload, num_sms: int, cost: CostModel, fanin: int, per_token: bool | None) -> dict | None:
    """``static.best_static_plan``'s columns and queues, its chunk and reduction kind."""
    if not usable(cost):
        return None
    found = _call("mlp_static", workload, num_sms, cost, fanin, -1 if per_token is None else int(per_token))
    if found is None:
        return None
    cols, info, _ = found
    cols.update(chunk=info[7], per_token=bool(info[8]))
    return cols


def makespan(workload: Workload, num_sms: int, cost: CostModel, per_token: bool | None, timed: int) -> tuple | None:
    """``makespan.makespan_schedule``'s search on equal SMs: (columns, params) of the kept schedule."""
    if not usable(cost):
        return None
    found = _call("mlp_makespan", workload, num_sms, cost, -1 if per_token is None else int(per_token), timed)
    if found is None:
        return None
    cols, info, planned_T = found
    num_cands, winner, shape, fillers, k, copies, chunk, static_chunk, static_per_token = info
    if winner < 0:
        params = {"rollouts": num_cands + 1, "shape": "static", "chunk_tokens": static_chunk,
                  "reductions": "per-token" if static_per_token else "whole"}
    else:
        params = {"rollouts": num_cands + 1, "shape": SHAPES[shape], "fillers": fillers, "fanin": k,
                  "reductions": "per-token" if copies > 1 else "whole", "planned_us": round(planned_T / 1e3, 3)}
        if SHAPES[shape] != "fill-all":
            params["chunk_tokens"] = chunk * fmt.KV_TILE_TOKENS
    return cols, params


def _call(name: str, workload: Workload, num_sms: int, cost: CostModel, *args: int):
    """Runs api.c's ``name`` and copies its result out: (columns, info ints, planned T)."""
    lib = library()
    mdl = model(cost)  # every buffer is kept alive until the call returns
    lens = np.asarray(workload.lens, dtype=np.int64)
    spread = np.ascontiguousarray(cost.sm_factors(num_sms), dtype=np.float64)
    sizes = np.zeros(4, dtype=np.int64)
    res = getattr(lib, name)(ctypes.addressof(mdl), lens.ctypes.data, len(lens), workload.s_q, num_sms, *args,
                             spread.ctypes.data, sizes.ctypes.data)
    if not res:
        return None
    try:
        _, n, num_inputs, num_red = sizes.tolist()
        ints = np.empty(9 + 8 * n + 2 * num_red + num_inputs + num_sms + n, dtype=np.int64)
        times = np.empty(2 * n + 1)
        lib.mlp_copy(res, ints.ctypes.data, times.ctypes.data)
    finally:
        lib.mlp_free(res)
    # mlp_copy's layout
    at = 9 + 8 * n
    op, seq, q0, qn, kv0, kv1, final, sm = ints[9:at].reshape(8, n).tolist()
    red_task, red_fan = ints[at : at + 2 * num_red].reshape(2, num_red).tolist()
    at += 2 * num_red
    flat = ints[at : at + num_inputs].tolist()
    at += num_inputs
    inputs = [()] * n  # partials read nothing
    pos = 0
    for t, f in zip(red_task, red_fan):
        inputs[t] = tuple(flat[pos : pos + f])
        pos += f
    q_len = ints[at : at + num_sms].tolist()
    q_flat = ints[at + num_sms :].tolist()
    queues = [q_flat[e - m : e] for e, m in zip(itertools.accumulate(q_len), q_len)]
    start_us, end_us = times[: 2 * n].reshape(2, n).tolist()
    cols = {"op": op, "seq": seq, "q0": q0, "qn": qn, "kv0": kv0, "kv1": kv1, "inputs": inputs,
            "final": list(map(bool, final)), "sm": sm, "queues": queues, "start_us": start_us, "end_us": end_us}
    return cols, ints[:9].tolist(), float(times[2 * n])
