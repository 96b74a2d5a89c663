"""Large synthetic traces with the shape of real ones, for speed benchmarks and whole-trace invariants.

Every sequence is cut into chunks of at most ``chunk_tokens`` KV tokens (one partial each, KV_TILE_TOKENS per
tile) and, when it has more than one chunk, merged by one reduction (at most MAX_FANIN inputs, so a sequence
has at most MAX_FANIN chunks). Partials are spread over the SMs at random (the ``seed`` decides where),
reductions go to the least-loaded SMs; each SM runs its partials first, then its reductions, which wait on their
inputs' stores. Span times follow a small cost model
with jitter, with the event conventions of the kernel and simulator: controller INSTRUCTION/SETUP/WAIT,
producer LOAD per tile (pipelined: a load may start before the previous tile's compute ends), consumer
COMPUTE per tile and one STORE. Not a model of the GPU: a realistic *layout* of spans.
"""

from __future__ import annotations

import numpy as np

from mlaprof.format import KV_TILE_TOKENS, MAX_FANIN, Kind, Role
from mlaprof.trace.io import build_table
from mlaprof.trace.schema import KIND_NAMES, OPCODE_NAMES, ROLE_NAMES, TraceMeta

PARTIAL, REDUCTION = OPCODE_NAMES.index("partial"), OPCODE_NAMES.index("reduction")


def workload_lens(num_seqs: int, chunk_tokens: int, seed: int = 0) -> list[int]:
    rng = np.random.default_rng(seed)
    return rng.integers(chunk_tokens // 2, chunk_tokens * MAX_FANIN + 1, num_seqs).tolist()


def spans_per_seq(lens: list[int], chunk_tokens: int) -> float:
    """Mean spans one sequence produces (to size a workload for a span count)."""
    total = 0
    for n in lens:
        chunks = -(-n // chunk_tokens)
        tiles = -(-n // KV_TILE_TOKENS)
        total += 3 * chunks + 2 * tiles + (4 + 2 * chunks if chunks > 1 else 0)
    return total / len(lens)


def build(num_sms: int = 132, num_seqs: int = 4000, chunk_tokens: int = 1024, s_q: int = 2, seed: int = 0,
          lens_seed: int = 0, scheduler: str = "synthetic"):
    """-> (pyarrow table, TraceMeta). Same ``lens_seed`` = same workload; ``seed`` changes placement and timing."""
    rng = np.random.default_rng(seed)
    lens = workload_lens(num_seqs, chunk_tokens, lens_seed)
    tasks: list[dict] = []
    partial_sm: list[int] = []
    reductions: list[int] = []
    for seq, n in enumerate(lens):
        bounds = list(range(0, n, chunk_tokens)) + [n]
        ids = []
        for a, b in zip(bounds[:-1], bounds[1:]):
            ids.append(len(tasks))
            tasks.append({"id": len(tasks), "op": "partial", "seq": seq, "q_start": 0, "q_count": s_q,
                          "kv_start": a, "kv_end": b, "inputs": [], "final": len(bounds) == 2, "sm": -1,
                          "est_start_us": 0.0, "est_end_us": 0.0})
            partial_sm.append(int(rng.integers(num_sms)))
        if len(ids) > 1:
            reductions.append(len(tasks))
            tasks.append({"id": len(tasks), "op": "reduction", "seq": seq, "q_start": 0, "q_count": s_q,
                          "kv_start": 0, "kv_end": n, "inputs": ids, "final": True, "sm": -1,
                          "est_start_us": 0.0, "est_end_us": 0.0})
    queues: list[list[int]] = [[] for _ in range(num_sms)]
    p = 0
    for t in tasks:
        if t["op"] == "partial":
            t["sm"] = partial_sm[p]
            p += 1
            queues[t["sm"]].append(t["id"])
    # reductions go to the least-loaded SMs (by KV tokens), as a balancing scheduler would: there they wait
    # on partials of busier SMs, so critical paths cross SMs through semaphores
    load = np.zeros(num_sms)
    for t in tasks:
        if t["op"] == "partial":
            load[t["sm"]] += t["kv_end"] - t["kv_start"]
    for r in reductions:
        sm = int(np.argmin(load + rng.random(num_sms)))
        tasks[r]["sm"] = sm
        load[sm] += 100 * len(tasks[r]["inputs"])
    for r in sorted(reductions, key=lambda r: tasks[r]["seq"]):
        queues[tasks[r]["sm"]].append(r)

    rows = _Rows()
    release = np.zeros(len(tasks), np.int64)
    clock = rng.integers(0, 400, num_sms)  # launch skew, ns
    # partials first on every SM (they wait on nothing), then reductions, in queue order
    for sm, q in enumerate(queues):
        for instr, tid in enumerate(q):
            t = tasks[tid]
            if t["op"] == "partial":
                clock[sm] = _partial(rows, rng, sm, instr, t, int(clock[sm]), release)
    for sm, q in enumerate(queues):
        for instr, tid in enumerate(q):
            t = tasks[tid]
            if t["op"] == "reduction":
                clock[sm] = _reduction(rows, rng, sm, instr, t, int(clock[sm]), release)
    cols = rows.columns()
    meta = TraceMeta(source="simulated", workload={"name": f"synthetic-{num_seqs}", "lens": lens, "s_q": s_q},
                     scheduler=scheduler, sm_count=num_sms, tasks=tasks, timer_source="synthetic",
                     scheduler_params={"seed": seed})
    return build_table(cols), meta


class _Rows:
    """Column chunks appended per instruction; joined once at the end."""

    def __init__(self):
        self.parts: dict[str, list[np.ndarray]] = {}

    def add(self, **cols) -> None:
        n = max(np.size(v) for v in cols.values())
        for k, v in cols.items():
            self.parts.setdefault(k, []).append(np.broadcast_to(np.asarray(v, np.int64), (n,)))

    def columns(self) -> dict:
        cols = {k: np.concatenate(v) for k, v in self.parts.items()}
        out = {}
        for k, v in cols.items():
            if k in ("kind", "role", "opcode"):
                names = {"kind": KIND_NAMES, "role": ROLE_NAMES, "opcode": OPCODE_NAMES}[k]
                out[k] = np.asarray(names, dtype=object)[v]
            else:
                out[k] = v
        return out


def _common(t: dict, sm: int, instr: int) -> dict:
    return dict(sm=sm, instr=instr, task=t["id"], seq=t["seq"], q_start=t["q_start"], q_count=t["q_count"],
                kv_start=t["kv_start"], kv_end=t["kv_end"], slot=-1 if t["final"] else t["id"])


def _partial(rows: _Rows, rng, sm: int, instr: int, t: dict, t0: int, release: np.ndarray) -> int:
    c = _common(t, sm, instr)
    tiles = -(-(t["kv_end"] - t["kv_start"]) // KV_TILE_TOKENS)
    setup_end = t0 + 150 + int(rng.integers(0, 60))
    load_dur = rng.integers(250, 450, tiles)
    comp_dur = rng.integers(180, 320, tiles)
    # 4-stage pipeline: tile i's load starts when tile i-4's compute has freed its buffer
    load_start = np.zeros(tiles, np.int64)
    load_end = np.zeros(tiles, np.int64)
    comp_start = np.zeros(tiles, np.int64)
    comp_end = np.zeros(tiles, np.int64)
    prev_comp = setup_end
    for i in range(tiles):
        load_start[i] = setup_end if i < 4 else max(comp_end[i - 4], load_start[i - 1])
        load_end[i] = max(load_start[i] + load_dur[i], load_end[i - 1] if i else 0)
        comp_start[i] = max(load_end[i], prev_comp)
        comp_end[i] = prev_comp = comp_start[i] + comp_dur[i]
    store_end = int(comp_end[-1]) + 120 + int(rng.integers(0, 40))
    end = store_end + 30
    idx = np.arange(tiles)
    rows.add(**c, role=Role.CONTROLLER, kind=[Kind.INSTRUCTION, Kind.SETUP], opcode=PARTIAL,
             start_ns=[t0, t0], end_ns=[end, setup_end], aux=-1, wait_task=-1)
    rows.add(**c, role=Role.PRODUCER, kind=Kind.LOAD, opcode=PARTIAL, start_ns=load_start, end_ns=load_end, aux=idx,
             wait_task=-1)
    rows.add(**c, role=Role.CONSUMER, kind=Kind.COMPUTE, opcode=PARTIAL, start_ns=comp_start, end_ns=comp_end,
             aux=idx, wait_task=-1)
    rows.add(**c, role=Role.CONSUMER, kind=Kind.STORE, opcode=PARTIAL, start_ns=int(comp_end[-1]), end_ns=store_end,
             aux=-1, wait_task=-1)
    release[t["id"]] = store_end
    return end + int(rng.integers(20, 60))


def _reduction(rows: _Rows, rng, sm: int, instr: int, t: dict, t0: int, release: np.ndarray) -> int:
    c = _common(t, sm, instr)
    k = len(t["inputs"])
    setup_end = t0 + 120
    wait_start = np.zeros(k, np.int64)
    wait_end = np.zeros(k, np.int64)
    load_start = np.zeros(k, np.int64)
    load_end = np.zeros(k, np.int64)
    clock = setup_end
    for i, src in enumerate(t["inputs"]):
        wait_start[i] = clock
        wait_end[i] = clock = max(clock, int(release[src]) + 40)  # 40 ns for the release to be seen
        load_start[i] = clock
        load_end[i] = clock + int(rng.integers(200, 300))
    comp_end = int(load_end.max()) + 150 * k
    store_end = comp_end + 100
    end = store_end + 30
    rows.add(**c, role=Role.CONTROLLER, kind=[Kind.INSTRUCTION, Kind.SETUP], opcode=REDUCTION,
             start_ns=[t0, t0], end_ns=[end, setup_end], aux=-1, wait_task=-1)
    rows.add(**c, role=Role.CONTROLLER, kind=Kind.WAIT, opcode=REDUCTION, start_ns=wait_start, end_ns=wait_end,
             aux=np.arange(k), wait_task=np.asarray(t["inputs"]))
    rows.add(**c, role=Role.PRODUCER, kind=Kind.LOAD, opcode=REDUCTION, start_ns=load_start, end_ns=load_end,
             aux=np.arange(k), wait_task=-1)
    rows.add(**c, role=Role.CONSUMER, kind=[Kind.COMPUTE, Kind.STORE], opcode=REDUCTION,
             start_ns=[int(load_end.max()), comp_end], end_ns=[comp_end, store_end], aux=[0, -1], wait_task=-1)
    release[t["id"]] = store_end
    return end + int(rng.integers(20, 60))
