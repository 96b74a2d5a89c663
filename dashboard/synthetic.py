"""Synthetic traces that follow the kernel's event conventions, for tests, the benchmark and demos.

They are not a model of the GPU (``mlaprof.sim`` is): they exist so the dashboard can be exercised at any
size (10k to 1M spans) on a machine without a GPU or a simulator.  Each trace is marked ``simulated`` with
``timer_source="synthetic"`` and ``extra["synthetic"] = True``, so it can never pass for a measurement.

What it produces, per the conventions in ``mlaprof.timing``: partials split a sequence's KV range into
chunks (one LOAD and one COMPUTE span per KV tile of ``KV_TILE_TOKENS``, a multi-stage load pipeline, one
STORE), reductions merge up to ``MAX_FANIN`` chunks (one WAIT and one LOAD per input, one COMPUTE, one
STORE); every instruction has one INSTRUCTION and one SETUP span on the controller role.  Tasks are
placed longest-first on the least-loaded SM, so SMs finish at different times and reductions really wait.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
import pyarrow as pa

from mlaprof import format as fmt
from mlaprof.format import Kind, Opcode, Role
from mlaprof.trace.schema import KIND_NAMES, OPCODE_NAMES, ROLE_NAMES, SCHEMA_NO_META, TraceMeta
from mlaprof.workloads import Workload

# nominal costs in ns, jittered per span so histograms have a shape; chosen so the rates are plausible for
# an H100: 3 tiles of 36.9 KB in flight per SM, each 4.5 us from issue to arrival, is ~25 GB/s per SM, so
# ~3.2 TB/s over 132 SMs (memory-bound: the consumer computes a third of the time and waits for loads)
_SETUP_NS = 300.0
_LOAD_NS = 4500.0  # issue -> arrival of one 32-token tile
_ISSUE_GAP_NS = 60.0  # producer issue spacing
_COMPUTE_NS = 500.0  # one tile of Q.K^T, softmax, P.V
_STORE_NS = 400.0
_MERGE_NS = 600.0
_STAGES = 3  # tiles in flight per SM


class _Spans:
    """Column buffers filled one instruction at a time (numpy chunks, concatenated once at the end).

    Dictionary columns are built from codes directly: ``build_table`` takes strings, too slow at 1M rows.
    """

    def __init__(self) -> None:
        self.chunks: list[dict[str, np.ndarray]] = []

    def add(self, *, sm, role, kind, instr, task, op, start, end, seq, q_start, q_count, kv_start, kv_end,
            slot, aux, wait_task=None) -> None:
        n = len(start)
        full = lambda v: np.full(n, v, dtype=np.int64)  # noqa: E731
        self.chunks.append({
            "sm": full(sm), "role": full(role), "kind": np.broadcast_to(np.asarray(kind), (n,)).astype(np.int64),
            "instr": full(instr), "task": full(task), "opcode": full(op),
            "start_ns": np.asarray(start, np.int64), "end_ns": np.asarray(end, np.int64),
            "seq": full(seq), "q_start": full(q_start), "q_count": full(q_count), "kv_start": full(kv_start),
            "kv_end": full(kv_end), "slot": full(slot), "aux": np.broadcast_to(np.asarray(aux), (n,)).astype(np.int64),
            "wait_task": full(-1) if wait_task is None else np.asarray(wait_task, np.int64),
        })

    def table(self) -> pa.Table:
        cols = {k: np.concatenate([c[k] for c in self.chunks]) for k in self.chunks[0]}
        order = np.lexsort((cols["start_ns"], cols["sm"]))
        cols = {k: v[order] for k, v in cols.items()}
        t0 = cols["start_ns"].min()  # times are from kernel start, as the decoder writes them
        cols["start_ns"] = cols["start_ns"] - t0
        cols["end_ns"] = cols["end_ns"] - t0
        for name, names in (("role", ROLE_NAMES), ("kind", KIND_NAMES), ("opcode", OPCODE_NAMES)):
            cols[name] = pa.DictionaryArray.from_arrays(
                pa.array(cols[name].astype(np.int8)), pa.array(names, pa.string()))
        arrays = [v if isinstance(v, pa.Array) else pa.array(v, type=f.type) for f, v in
                  ((f, cols[f.name]) for f in SCHEMA_NO_META)]
        return pa.Table.from_arrays(arrays, schema=SCHEMA_NO_META)


def _lens_for(rng: np.random.Generator, batch: int, tokens: int, s_q: int) -> tuple[int, ...]:
    """Uneven KV lengths (log-normal) summing to about ``tokens``: decode batches are rarely uniform."""
    w = rng.lognormal(0.0, 1.0, batch)
    lens = np.maximum(np.round(w / w.sum() * tokens).astype(int), max(s_q, 64))
    return tuple(int(x) for x in lens)


def synthesize(
    spans: int = 20_000,
    num_sms: int = 132,
    seed: int = 0,
    scheduler: str = "static",
    batch: int = 16,
    s_q: int = 4,
    slowdown: float = 1.0,
) -> tuple[pa.Table, TraceMeta]:
    """A trace of about ``spans`` spans on ``num_sms`` SMs. ``slowdown`` scales every cost (for diffs)."""
    if spans < 100 or num_sms < 1:
        raise ValueError("synthesize needs spans >= 100 and num_sms >= 1")
    rng = np.random.default_rng(seed)
    # two spans (load, compute) per tile, plus about 12 per SM of fixed cost: ~2 partials per SM with 3 spans
    # each, and on the reduction side 3 spans per input (wait, load, and its share of merge/setup/store)
    tiles_total = max((spans - 12 * num_sms) // 2, num_sms)
    lens = _lens_for(rng, batch, tiles_total * fmt.KV_TILE_TOKENS, s_q)
    workload = Workload(f"synthetic-b{batch}-q{s_q}", lens, s_q)
    # chunk size: about two partials per SM, so most sequences split and need reductions
    chunk_tiles = max(1, math.ceil(sum(math.ceil(n / fmt.KV_TILE_TOKENS) for n in lens) / (2 * num_sms)))
    chunk_tokens = chunk_tiles * fmt.KV_TILE_TOKENS

    tasks: list[dict] = []
    for seq, n in enumerate(lens):
        ids = []
        for kv0 in range(0, n, chunk_tokens):
            ids.append(len(tasks))
            tasks.append(dict(id=len(tasks), op="partial", seq=seq, q_start=0, q_count=s_q, kv_start=kv0,
                              kv_end=min(n, kv0 + chunk_tokens), inputs=[], final=False, level=0))
        level = 1
        while len(ids) > 1:  # k-way reduction tree, MAX_FANIN inputs per node
            nxt = []
            for i in range(0, len(ids), fmt.MAX_FANIN):
                group = ids[i:i + fmt.MAX_FANIN]
                if len(group) == 1:
                    nxt.append(group[0])
                    continue
                nxt.append(len(tasks))
                tasks.append(dict(id=len(tasks), op="reduction", seq=seq, q_start=0, q_count=s_q,
                                  kv_start=tasks[group[0]]["kv_start"], kv_end=tasks[group[-1]]["kv_end"],
                                  inputs=group, final=False, level=level))
            ids, level = nxt, level + 1
        tasks[ids[0]]["final"] = True

    # place partials longest-first on the least-loaded SM, then reductions level by level
    est = lambda t: (t["kv_end"] - t["kv_start"]) if t["op"] == "partial" else 600 * len(t["inputs"])  # noqa: E731
    heap = [(0.0, sm) for sm in range(num_sms)]
    queues: list[list[int]] = [[] for _ in range(num_sms)]
    for t in sorted(tasks, key=lambda t: (t["level"], -est(t))):
        load, sm = heapq.heappop(heap)
        t["sm"] = sm
        queues[sm].append(t["id"])
        heapq.heappush(heap, (load + est(t), sm))

    out = _Spans()
    done_at: dict[int, float] = {}  # task id -> time its store (and semaphore release) finished
    clock = np.zeros(num_sms)
    jitter = lambda n=None: rng.lognormal(0.0, 0.15, n) * slowdown  # noqa: E731
    max_level = max(t["level"] for t in tasks)
    cursor = [0] * num_sms
    instr_of: dict[int, int] = {}
    for level in range(max_level + 1):  # queues are sorted by level, so this respects every dependency
        for sm in range(num_sms):
            q = queues[sm]
            while cursor[sm] < len(q) and tasks[q[cursor[sm]]]["level"] == level:
                t = tasks[q[cursor[sm]]]
                instr = cursor[sm]
                instr_of[t["id"]] = instr
                cursor[sm] += 1
                slot = -1 if t["final"] else t["id"]
                common = dict(sm=sm, instr=instr, task=t["id"], seq=t["seq"], q_start=t["q_start"],
                              q_count=t["q_count"], kv_start=t["kv_start"], kv_end=t["kv_end"], slot=slot)
                t0 = clock[sm] + 40.0 * rng.random()  # fetch gap between instructions
                setup_end = t0 + _SETUP_NS * jitter()
                if t["op"] == "partial":
                    op = Opcode.PARTIAL
                    n_tiles = math.ceil((t["kv_end"] - t["kv_start"]) / fmt.KV_TILE_TOKENS)
                    lat, cdur = _LOAD_NS * jitter(n_tiles), _COMPUTE_NS * jitter(n_tiles)
                    ls, le, cs, ce = (np.empty(n_tiles) for _ in range(4))
                    for i in range(n_tiles):  # stage i can only be reused once compute i - STAGES is done
                        ls[i] = max(setup_end + i * _ISSUE_GAP_NS, ce[i - _STAGES] if i >= _STAGES else 0.0)
                        le[i] = ls[i] + lat[i]
                        cs[i] = max(le[i], ce[i - 1] if i else 0.0)
                        ce[i] = cs[i] + cdur[i]
                    tiles = np.arange(n_tiles)
                    out.add(role=Role.PRODUCER, kind=Kind.LOAD, op=op, start=ls, end=le, aux=tiles, **common)
                    out.add(role=Role.CONSUMER, kind=Kind.COMPUTE, op=op, start=cs, end=ce, aux=tiles, **common)
                    body_end = ce[-1]
                else:
                    op = Opcode.REDUCTION
                    k = len(t["inputs"])
                    ws, we, ls, le = (np.empty(k) for _ in range(4))
                    at = setup_end
                    for i, src in enumerate(t["inputs"]):
                        ws[i] = at
                        we[i] = max(at, done_at[src])
                        ls[i] = we[i]
                        le[i] = ls[i] + 0.5 * _LOAD_NS * jitter()
                        at = we[i]
                    waited = [tasks[s]["id"] for s in t["inputs"]]
                    out.add(role=Role.CONTROLLER, kind=Kind.WAIT, op=op, start=ws, end=we, aux=np.arange(k),
                            wait_task=waited, **common)
                    out.add(role=Role.PRODUCER, kind=Kind.LOAD, op=op, start=ls, end=le, aux=np.arange(k), **common)
                    ms = le.max()
                    me = ms + _MERGE_NS * k / 2 * jitter()
                    out.add(role=Role.CONSUMER, kind=Kind.COMPUTE, op=op, start=[ms], end=[me], aux=-1, **common)
                    body_end = me
                store_end = body_end + _STORE_NS * jitter()
                out.add(role=Role.CONSUMER, kind=Kind.STORE, op=op, start=[body_end], end=[store_end], aux=-1, **common)
                out.add(role=Role.CONTROLLER, kind=Kind.SETUP, op=op, start=[t0], end=[setup_end], aux=-1, **common)
                out.add(role=Role.CONTROLLER, kind=Kind.INSTRUCTION, op=op, start=[t0], end=[store_end], aux=-1, **common)
                done_at[t["id"]] = store_end
                clock[sm] = store_end

    table = out.table()
    meta = TraceMeta(
        source="simulated",
        workload=workload.to_json(),
        scheduler=scheduler,
        sm_count=num_sms,
        scheduler_params={"chunk_tokens": chunk_tokens, "slowdown": slowdown},
        tasks=[{k: v for k, v in t.items() if k != "level"} for t in tasks],
        gpu_name="synthetic",
        timer_source="synthetic",
        run_id=f"synthetic-{seed}",
        created="2025-01-01T00:00:00Z",
        extra={"synthetic": True},
    )
    return table, meta


def write_examples(folder, spans: int = 8_000, num_sms: int = 132) -> list:
    """A static / makespan pair on one synthetic workload (B about 10% faster), as a diff can match them."""
    from pathlib import Path

    from mlaprof.trace.io import write_trace

    folder = Path(folder)
    out = []
    for name, scheduler, slowdown in (("static", "static", 1.0), ("makespan", "makespan", 0.9)):
        table, meta = synthesize(spans, num_sms=num_sms, seed=0, scheduler=scheduler, slowdown=slowdown)
        out.append(write_trace(folder / f"synthetic__{name}.arrow", table, meta))
    return out
