"""The Schedule type every scheduler returns and every consumer (encoder, simulator, analysis) reads."""

from __future__ import annotations

import dataclasses

from mlaprof.format import HEAD_DIM_V, MAX_FANIN, Opcode
from mlaprof.workloads import Workload


@dataclasses.dataclass(frozen=True)
class Task:
    """One instruction: a partial over a KV range, or a reduction of earlier tasks' results.

    ``id`` indexes ``Schedule.tasks``.  A task with ``final=True`` writes the output tensor for its
    (seq, query tokens); otherwise it writes a scratch slot that a later reduction reads.
    """

    id: int
    op: Opcode
    seq: int
    q_start: int  # first query token covered (0 .. s_q-1)
    q_count: int  # query tokens covered; rows = q_count * h_q
    kv_start: int  # KV range [kv_start, kv_end): a partial's own range, a reduction's union of inputs
    kv_end: int
    inputs: tuple[int, ...] = ()  # task ids a reduction merges, in order
    final: bool = False
    sm: int = -1  # SM it runs on
    est_start_us: float = 0.0  # the scheduler's prediction, on its cost model
    est_end_us: float = 0.0
    col_start: int = 0  # a reduction may merge one block of the V columns (HEAD_DIM_V: all of them)
    col_count: int = HEAD_DIM_V
    # A partial in a steal group (the group's id; -1: none) shares its KV tiles with the group's other partials:
    # together they cover the union of their ranges, each computing the tiles it claims first (format.Word.
    # STEAL_SEM). Its own range is the planned share; which tiles it computes is decided on the GPU.
    steal: int = -1

    @property
    def counted(self) -> bool:
        """A reduction over a column block or more than MAX_FANIN inputs: encoded with counted inputs
        (contiguous slots, one semaphore that every input adds to; ``format.InputLayout``)."""
        return self.op == Opcode.REDUCTION and (self.col_count != HEAD_DIM_V or len(self.inputs) > MAX_FANIN)


@dataclasses.dataclass
class Schedule:
    workload: Workload
    num_sms: int
    tasks: list[Task]
    queues: list[list[int]]  # queues[sm] = task ids in the order that SM runs them
    scheduler: str  # "static" | "makespan"
    params: dict = dataclasses.field(default_factory=dict)
    predicted_makespan_us: float = 0.0
    compute_ms: float = 0.0  # wall time the scheduler took

    def tasks_on(self, sm: int) -> list[Task]:
        return [self.tasks[i] for i in self.queues[sm]]

    def to_json(self) -> list[dict]:
        """Task table, as stored in trace metadata (small: hundreds of tasks)."""
        return [
            {
                "id": t.id, "op": t.op.name.lower(), "seq": t.seq, "q_start": t.q_start, "q_count": t.q_count,
                "kv_start": t.kv_start, "kv_end": t.kv_end, "inputs": list(t.inputs), "final": t.final,
                "sm": t.sm, "est_start_us": round(t.est_start_us, 4), "est_end_us": round(t.est_end_us, 4),
                # only where a task merges a column block: traces of whole-row schedules stay as they were
                **({"col_start": t.col_start, "col_count": t.col_count} if t.col_count != HEAD_DIM_V else {}),
                **({"steal": t.steal} if t.steal >= 0 else {}),
            }
            for t in self.tasks
        ]
