"""A trace as Chrome trace-event JSON, which Perfetto UI (ui.perfetto.dev) and chrome://tracing open.

Layout: one process per GPU (a trace is one GPU, pid 0), one thread per SM and role ("SM 3 producer"), "X"
complete events in µs, and a flow ("s" on the producing task's STORE span, "f" with binding point "e" on the
waiting WAIT span) for every semaphore wait whose producer is known. The instructions on the critical path
(``mlaprof.analysis.critical_path``) carry ``"critical_step": k`` (1 = first) in their args and the category
``instruction,critical path``, so Perfetto's search and category filter find the chain that set the makespan.

The trace-event format requires the complete events of one thread to nest: two spans of one thread may not
partially overlap. A pipelined producer can have several tile loads in flight at once, and a controller that
fetches ahead opens the next instruction before the current one ends, so spans that would overlap go to extra
lanes of that SM and role ("SM 3 producer #2"); a span nests only under its own instruction's spans. A trace
whose spans nest gets one thread per SM and role. ``perfetto`` and ``chrome`` write the same JSON: Perfetto reads Chrome's format natively.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from mlaprof.analysis import Spans, critical_path, instruction_table
from mlaprof.errors import UserError
from mlaprof.format import Kind, Opcode
from mlaprof.trace.io import Trace
from mlaprof.trace.schema import KIND_NAMES, OPCODE_NAMES, ROLE_NAMES

FORMATS = ("perfetto", "chrome")


def _j(obj) -> str:
    return json.dumps(obj, separators=(",", ":"))


def _aux_name(kind: int, opcode: int) -> str:
    """What the aux column means for this span (see format.py): a KV tile, a reduction input, or a merge step."""
    if kind in (Kind.LOAD, Kind.COMPUTE) and opcode == Opcode.PARTIAL:
        return "tile"
    if kind in (Kind.LOAD, Kind.WAIT):
        return "input"
    return "step"


def assign_lanes(group: np.ndarray, start: np.ndarray, end: np.ndarray, instr: np.ndarray) -> np.ndarray:
    """Lane per span so that within one (group, lane) spans nest or are disjoint; lane 0 wherever possible.

    A span may only nest inside a span of its own instruction: a controller that fetches ahead opens
    instruction i+1 while i still runs, and i+1's SETUP and WAIT spans belong under i+1, not under i.
    Spans are visited by (group, start, longest first); each lane keeps a stack of open spans (end,
    instruction). After closing what ended by its start, a span goes under an open span of its own instruction
    that encloses it, else to the first empty lane, else to a new lane. Linear in spans times the (small)
    number of lanes.
    """
    lane = np.zeros(len(group), np.int64)
    order = np.lexsort((-end, start, group))
    stacks: list[list[tuple[int, int]]] = []
    current = None
    g, s, e, ins = group[order].tolist(), start[order].tolist(), end[order].tolist(), instr[order].tolist()
    for j, i in enumerate(order.tolist()):
        if g[j] != current:
            current, stacks = g[j], []
        chosen = free = -1
        for k, stack in enumerate(stacks):
            while stack and stack[-1][0] <= s[j]:
                stack.pop()
            if not stack:
                free = k if free < 0 else free
            elif e[j] <= stack[-1][0] and ins[j] == stack[-1][1]:
                chosen = k  # under its own instruction's open span: the best place
                break
        if chosen < 0:
            chosen = free if free >= 0 else len(stacks)
            if chosen == len(stacks):
                stacks.append([])
        stacks[chosen].append((e[j], ins[j]))
        lane[i] = chosen
    return lane


def _fmt_us(ns: int) -> str:
    """ns as a µs literal with exact ns precision (JSON number)."""
    return f"{ns // 1000}.{ns % 1000:03d}" if ns >= 0 else f"-{(-ns) // 1000}.{(-ns) % 1000:03d}"


def _mid(start: int, end: int) -> int:
    return start + (end - start) // 2


def trace_events(trace: Trace):
    """Yield (ph, JSON text) per trace event: metadata, complete events, then flow starts and finishes."""
    sp = Spans.of(trace)
    meta = trace.meta
    n_roles = len(ROLE_NAMES)
    group = sp.sm * n_roles + sp.role
    lane = assign_lanes(group, sp.start, sp.end, sp.instr) if len(sp) else np.zeros(0, np.int64)
    # one tid per (sm, role, lane), numbered in that order so the UI lists SM 0 controller first
    thread_key = group * (int(lane.max()) + 1 if len(lane) else 1) + lane
    keys, tid = np.unique(thread_key, return_inverse=True)

    workload = meta.workload.get("name", "custom") if isinstance(meta.workload, dict) else "custom"
    gpu = meta.gpu_name or ("simulated GPU" if meta.source == "simulated" else "GPU")
    yield "M", _j({"ph": "M", "pid": 0, "name": "process_name",
                   "args": {"name": f"{gpu} - {workload} - {meta.scheduler} ({meta.source})"}})
    yield "M", _j({"ph": "M", "pid": 0, "name": "process_sort_index", "args": {"sort_index": 0}})
    if len(keys):
        first = np.zeros(len(keys), np.int64)
        first[tid[::-1]] = np.arange(len(tid))[::-1]
        for t, row in enumerate(first.tolist()):
            name = f"SM {int(sp.sm[row])} {ROLE_NAMES[int(sp.role[row])]}"
            if lane[row]:
                name += f" #{int(lane[row]) + 1}"
            yield "M", _j({"ph": "M", "pid": 0, "tid": t, "name": "thread_name", "args": {"name": name}})
            yield "M", _j({"ph": "M", "pid": 0, "tid": t, "name": "thread_sort_index", "args": {"sort_index": t}})

    path = critical_path(instruction_table(sp)) if len(sp) else []
    step_of = {(s.sm, s.instr): k + 1 for k, s in enumerate(path)}
    cols = [c.tolist() for c in (tid, sp.kind, sp.opcode, sp.start, sp.end, sp.instr, sp.task, sp.seq, sp.q_start,
                                 sp.q_count, sp.kv_start, sp.kv_end, sp.aux, sp.wait_task, sp.sm)]
    # formatted by hand, not json.dumps: it halves the time on a million spans; every string here is a schema
    # name (validated on read) or digits, so nothing needs escaping (tests parse the result)
    for t, k, op, s, e, ins, task, seq, q0, qn, k0, k1, aux, wt, sm in zip(*cols):
        kind, opname = KIND_NAMES[k], OPCODE_NAMES[op]
        name = f"{opname} s{seq} kv[{k0},{k1})" if k == Kind.INSTRUCTION else kind
        extra = f',"{_aux_name(k, op)}":{aux}' if aux >= 0 else ""
        if wt >= 0:
            extra += f',"wait_task":{wt}'
        cat = kind
        if k == Kind.INSTRUCTION and (sm, ins) in step_of:
            cat = f"{kind},critical path"
            extra += f',"critical_step":{step_of[sm, ins]}'
        yield "X", (f'{{"ph":"X","pid":0,"tid":{t},"ts":{_fmt_us(s)},"dur":{_fmt_us(e - s)},"name":"{name}",'
                    f'"cat":"{cat}","args":{{"sm":{sm},"instr":{ins},"task":{task},"opcode":"{opname}",'
                    f'"seq":{seq},"q_start":{q0},"q_count":{qn},"kv_start":{k0},"kv_end":{k1}{extra}}}}}')

    yield from _flows(sp, tid)


def _flows(sp: Spans, tid: np.ndarray):
    """Semaphore dependencies: the producing task's STORE span -> each WAIT span that waited on that task."""
    waits = np.flatnonzero((sp.kind == Kind.WAIT) & (sp.wait_task >= 0))
    if not waits.size:
        return
    # where each task's result was released: its STORE span, else its INSTRUCTION span
    source: dict[int, int] = {}
    for kind in (Kind.INSTRUCTION, Kind.STORE):  # STORE second, so it wins
        rows = np.flatnonzero(sp.kind == kind)
        source.update(zip(sp.task[rows].tolist(), rows.tolist()))
    fid = 0
    for w in waits.tolist():
        src = source.get(int(sp.wait_task[w]))
        if src is None:
            continue
        fid += 1
        s_ts = _fmt_us(_mid(int(sp.start[src]), int(sp.end[src])))
        f_ts = _fmt_us(_mid(int(sp.start[w]), int(sp.end[w])))
        yield "s", (f'{{"ph":"s","id":{fid},"pid":0,"tid":{int(tid[src])},"ts":{s_ts},"name":"semaphore",'
               f'"cat":"semaphore"}}')
        yield "f", (f'{{"ph":"f","bp":"e","id":{fid},"pid":0,"tid":{int(tid[w])},"ts":{f_ts},"name":"semaphore",'
               f'"cat":"semaphore"}}')


def write_atomic(path: str | os.PathLike, chunks) -> Path:
    """Write text chunks to a temporary file beside ``path``, then rename: a failure leaves ``path`` as it was."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a directory; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the file the mode a plain open() would
        with os.fdopen(fd, "w") as f:
            for chunk in chunks:
                f.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _json_chunks(trace: Trace, counts: dict):
    m = trace.meta
    other = {"workload": m.workload, "scheduler": m.scheduler, "source": m.source, "gpu_name": m.gpu_name,
             "sm_count": m.sm_count, "run_id": m.run_id, "schema_version": m.schema_version,
             "kernel_time_us": m.kernel_time_us}
    yield '{"displayTimeUnit":"ns","otherData":' + _j(other) + ',"traceEvents":[\n'
    sep, buf = "", []
    for ph, ev in trace_events(trace):
        buf.append(sep + ev)
        sep = ",\n"
        counts[ph] += 1
        if len(buf) >= 65536:
            yield "".join(buf)
            buf.clear()
    yield "".join(buf)
    yield "\n]}\n"


def export(trace: Trace, out: str | os.PathLike, fmt: str = "perfetto") -> dict:
    """Write the trace-event JSON atomically; returns event counts by phase (M, X, s, f) for the CLI."""
    if fmt not in FORMATS:
        raise UserError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    counts = {"M": 0, "X": 0, "s": 0, "f": 0}
    write_atomic(out, _json_chunks(trace, counts))
    return counts
