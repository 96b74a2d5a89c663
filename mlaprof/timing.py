"""Raw per-SM event buffers (from the kernel or the simulator) -> a trace table.

Both emitters write the layout of ``format``: ``events[sm, i] = [header, aux, start_ns, end_ns]`` with
absolute timestamps, and ``counts[sm]`` = events recorded (it keeps counting past the buffer's capacity, so
``counts - capacity`` is the overflow).  Operands come from the instruction tensor, so the timing buffer
stays small and the decoder is the one place that joins the two.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mlaprof import format as fmt
from mlaprof.trace.schema import SCHEMA_NO_META
from mlaprof.trace.schema import KIND_NAMES, OPCODE_NAMES, ROLE_NAMES

W = fmt.Word


def overflow_count(counts: np.ndarray, capacity: int) -> int:
    return int(np.clip(np.asarray(counts, np.int64) - capacity, 0, None).sum())


def _dict_column(codes: np.ndarray, names: list[str]) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int8)), pa.array(names, pa.string()))


def decode_events(events: np.ndarray, counts: np.ndarray, instructions: np.ndarray) -> tuple[pa.Table, int]:
    """Decode to a table in the trace schema; times rebased to the earliest event. Returns (table, t0_ns)."""
    events = np.asarray(events, dtype=np.int64)
    instructions = np.asarray(instructions, dtype=np.int64)
    num_sms, capacity, _ = events.shape
    n = np.minimum(np.asarray(counts, np.int64), capacity)
    sm = np.repeat(np.arange(num_sms, dtype=np.int32), n)
    valid = np.arange(capacity)[None, :] < n[:, None]
    ev = events[valid]  # [total, EVENT_WORDS], SM-major then record order
    header, aux, start, end = ev[:, 0], ev[:, 1], ev[:, 2], ev[:, 3]
    kind = header & ((1 << fmt.HEADER_KIND_BITS) - 1)
    role = (header >> fmt.HEADER_ROLE_SHIFT) & 0xFF
    instr = header >> fmt.HEADER_INSTR_SHIFT
    if instr.size and (instr.max() >= instructions.shape[1] or instr.min() < 0):
        raise ValueError("timing buffer names an instruction index beyond the instruction tensor: buffer corrupt")
    words = instructions[sm, instr]  # [total, WORDS]
    # which task released each semaphore, so a wait names the task it waited for
    sem_owner = {}
    flat = instructions.reshape(-1, fmt.WORDS_PER_INSTRUCTION)
    for row in flat[(flat[:, W.OPCODE] != fmt.Opcode.END) & (flat[:, W.SIGNAL_SEM] >= 0)]:
        sem_owner[int(row[W.SIGNAL_SEM])] = int(row[W.TASK])
    # a counter semaphore has many writers: its wait waited for the one that finished last in this run
    adding = (words[:, W.OPCODE] != fmt.Opcode.END) & (words[:, W.SIGNAL_COUNT] == fmt.SIGNAL_ADD) & \
        (words[:, W.SIGNAL_SEM] >= 0) & (kind == fmt.Kind.INSTRUCTION)
    last_end: dict[int, int] = {}
    for sem, task, e in zip(words[adding, W.SIGNAL_SEM].tolist(), words[adding, W.TASK].tolist(), end[adding].tolist()):
        if e >= last_end.get(sem, -1):
            last_end[sem] = e
            sem_owner[sem] = task
    wait_task = np.full(len(ev), -1, np.int32)
    is_wait = (kind == fmt.Kind.WAIT) & (aux >= 0) & (aux < fmt.MAX_FANIN)
    if is_wait.any():
        sems = words[is_wait, W.INPUT_SEMS + aux[is_wait]]
        wait_task[is_wait] = [sem_owner.get(int(s), -1) for s in sems]
    t0 = int(start.min()) if len(ev) else 0
    table = pa.Table.from_arrays(
        [
            pa.array(sm),
            _dict_column(role, ROLE_NAMES),
            _dict_column(kind, KIND_NAMES),
            pa.array(instr.astype(np.int32)),
            pa.array(words[:, W.TASK].astype(np.int32)),
            _dict_column(words[:, W.OPCODE], OPCODE_NAMES),
            pa.array(start - t0),
            pa.array(end - t0),
            *(pa.array(words[:, w].astype(np.int32)) for w in (W.SEQ, W.Q_START, W.Q_COUNT, W.KV_START, W.KV_END, W.OUT_SLOT)),
            pa.array(aux.astype(np.int32)),
            pa.array(wait_task),
        ],
        schema=SCHEMA_NO_META,
    )
    return table, t0


def encode_header(kind: int, role: int, instr: int) -> int:
    return (instr << fmt.HEADER_INSTR_SHIFT) | (role << fmt.HEADER_ROLE_SHIFT) | kind
