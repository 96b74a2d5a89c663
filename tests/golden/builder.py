"""A tiny span-by-span trace builder: operands come from a task table, times are given exactly (ns)."""

from __future__ import annotations

import numpy as np

from mlaprof.trace.io import build_table
from mlaprof.trace.schema import COLUMN_NAMES, TraceMeta


def task(id, op, seq, kv_start, kv_end, inputs=(), q_start=0, q_count=1, sm=-1, final=False) -> dict:
    """One row of the metadata task table, as Schedule.to_json() writes it."""
    return {"id": id, "op": op, "seq": seq, "q_start": q_start, "q_count": q_count, "kv_start": kv_start,
            "kv_end": kv_end, "inputs": list(inputs), "final": final, "sm": sm, "est_start_us": 0.0, "est_end_us": 0.0}


class TraceBuilder:
    def __init__(self, workload: dict, sm_count: int, tasks: list[dict], scheduler: str = "golden",
                 source: str = "simulated", **meta):
        self.tasks = {t["id"]: t for t in tasks}
        self.rows: list[dict] = []
        self.meta = TraceMeta(source=source, workload=workload, scheduler=scheduler, sm_count=sm_count,
                              tasks=tasks, timer_source="hand-built", **meta)

    def span(self, sm, role, kind, instr, task_id, start, end, aux=-1, wait_task=-1) -> "TraceBuilder":
        t = self.tasks[task_id]
        self.rows.append({
            "sm": sm, "role": role, "kind": kind, "instr": instr, "task": task_id, "opcode": t["op"],
            "start_ns": start, "end_ns": end, "seq": t["seq"], "q_start": t["q_start"], "q_count": t["q_count"],
            "kv_start": t["kv_start"], "kv_end": t["kv_end"], "slot": -1 if t["final"] else task_id, "aux": aux,
            "wait_task": wait_task,
        })
        return self

    def columns(self) -> dict:
        cols = {}
        for name in COLUMN_NAMES:
            values = [r[name] for r in self.rows]
            cols[name] = values if name in ("role", "kind", "opcode") else np.asarray(values, dtype=np.int64)
        return cols

    def table(self):
        return build_table(self.columns())
