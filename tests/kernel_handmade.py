"""Explicit, hand-built instruction tensors for testing the kernel apart from the schedulers.

Each sequence is cut into ``splits[i]`` equal KV chunks; partials go round-robin over the SMs, and each
split sequence gets one reduction queued after every partial (so no SM can wait on later work).
"""

from __future__ import annotations

import numpy as np

from mlaprof import format as fmt
from mlaprof.workloads import Workload

W = fmt.Word


def _row(**words) -> np.ndarray:
    row = np.zeros(fmt.WORDS_PER_INSTRUCTION, np.int32)
    for name, value in words.items():
        row[W[name.upper()]] = value
    return row


def handmade(w: Workload, num_sms: int, splits: list[int], per_token: bool = False) -> tuple[np.ndarray, int, int]:
    """With ``per_token`` each split sequence gets one reduction per query token (16 rows each), all reading
    the same partials: one semaphore with s_q readers."""
    queues: list[list[np.ndarray]] = [[] for _ in range(num_sms)]
    reductions: list[tuple[int, np.ndarray]] = []
    sm = slot = sem = task = 0
    for seq, (length, k) in enumerate(zip(w.lens, splits)):
        k = max(1, min(k, fmt.MAX_FANIN, length))
        bounds = np.linspace(0, length, k + 1).astype(int)
        inputs = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            final = k == 1
            queues[sm % num_sms].append(_row(
                opcode=fmt.Opcode.PARTIAL, task=task, seq=seq, q_start=0, q_count=w.s_q, kv_start=lo, kv_end=hi,
                out_slot=fmt.NO_SLOT if final else slot, signal_sem=fmt.NO_SEM if final else sem,
                signal_count=0 if final else (w.s_q if per_token else 1),
            ))
            if not final:
                inputs.append((slot, sem))
                slot += 1
                sem += 1
            sm += 1
            task += 1
        for q_start, q_count in ([(q, 1) for q in range(w.s_q)] if per_token else [(0, w.s_q)]) if inputs else []:
            row = _row(opcode=fmt.Opcode.REDUCTION, task=task, seq=seq, q_start=q_start, q_count=q_count, kv_start=0,
                       kv_end=length, out_slot=fmt.NO_SLOT, signal_sem=fmt.NO_SEM, num_inputs=len(inputs))
            for i, (s_, m_) in enumerate(inputs):
                row[W.INPUT_SLOTS + i] = s_
                row[W.INPUT_SEMS + i] = m_
            reductions.append((sm % num_sms, row))
            sm += 1
            task += 1
    for target, row in reductions:
        queues[target].append(row)
    depth = max(len(q) for q in queues) + 1
    out = np.zeros((num_sms, depth, fmt.WORDS_PER_INSTRUCTION), np.int32)
    for i, q in enumerate(queues):
        if q:
            out[i, : len(q)] = np.stack(q)
    return out, slot, sem


def deadlock(w: Workload) -> tuple[np.ndarray, int, int]:
    """Two SMs, each waiting first on what the other produces only afterwards."""
    half = w.lens[0] // 2
    p = dict(opcode=fmt.Opcode.PARTIAL, seq=0, q_start=0, q_count=w.s_q)
    r = dict(opcode=fmt.Opcode.REDUCTION, seq=0, q_start=0, q_count=w.s_q, kv_start=0, kv_end=w.lens[0],
             out_slot=fmt.NO_SLOT, signal_sem=fmt.NO_SEM, num_inputs=1)
    out = np.zeros((2, 3, fmt.WORDS_PER_INSTRUCTION), np.int32)
    out[0, 0] = _row(task=0, **r)
    out[0, 0, W.INPUT_SLOTS], out[0, 0, W.INPUT_SEMS] = 1, 1
    out[0, 1] = _row(task=1, kv_start=0, kv_end=half, out_slot=0, signal_sem=0, **p)
    out[1, 0] = _row(task=2, **r)
    out[1, 0, W.INPUT_SLOTS], out[1, 0, W.INPUT_SEMS] = 0, 0
    out[1, 1] = _row(task=3, kv_start=half, kv_end=w.lens[0], out_slot=1, signal_sem=1, **p)
    return out, 2, 2
