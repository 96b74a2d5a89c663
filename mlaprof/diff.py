"""Two traces side by side: what got faster or slower, where, and how the critical path moved.

All deltas are B minus A. Two modes:

* ``matched``: both traces ran the same workload (equal ``lens`` and ``s_q`` in the metadata) and share at
  least one instruction. Instructions are matched by what they compute, never by SM, index or task id (a new
  scheduler renumbers and moves everything): opcode, sequence, query range, KV range and, for a reduction, the
  list of its inputs' (query range, KV range), sorted. Two instructions of one trace with the same signature
  (none in a valid schedule) are told apart by start order.
* ``aggregate``: different workloads, or no instruction in common. Only totals are compared (makespan, time by
  kind, per-opcode mean duration, busy/wait/idle, achieved rates), and ``note`` says so.

``html_report`` renders a self-contained HTML page (plotly.js embedded) with both Gantts on one time axis and
the delta tables; it imports plotly only when called.
"""

from __future__ import annotations

import dataclasses
import html

import numpy as np

from mlaprof.analysis import CRITICAL_PARTS, Analysis, CriticalStep, Instructions, analyze
from mlaprof.trace.io import Trace
from mlaprof.trace.schema import KIND_NAMES, OPCODE_NAMES

NS_PER_US = 1000.0


def _r(x) -> float:
    return round(float(x), 4)


def _abd(a, b) -> dict:
    """{a, b, delta}; a missing side counts as 0 so the delta stays a number; counts stay integers."""
    a = 0 if a is None else a
    b = 0 if b is None else b
    if isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer)):
        return {"a": int(a), "b": int(b), "delta": int(b) - int(a)}
    return {"a": _r(a), "b": _r(b), "delta": _r(float(b) - float(a))}


class InputSets:
    """Interns the sorted input list of a reduction, [(q_start, q_count, kv_start, kv_end), ...], as a small int,
    shared by both traces so that equal lists get equal ids."""

    def __init__(self):
        self.ids: dict[tuple, int] = {}
        self.values: list[tuple] = []

    def id(self, inputs: tuple) -> int:
        i = self.ids.get(inputs)
        if i is None:
            i = self.ids[inputs] = len(self.values)
            self.values.append(inputs)
        return i


SIG_COLUMNS = ("opcode", "seq", "q_start", "q_count", "kv_start", "kv_end", "inputs", "occurrence")


def signature_keys(ins: Instructions, tasks: list[dict], inputs: InputSets) -> np.ndarray:
    """[n, 8] int64: what each instruction computes (see the module docstring) plus its occurrence number.

    Columns are SIG_COLUMNS; ``inputs`` is an id from ``InputSets`` (-1 for a partial, or a reduction whose task
    is not in the metadata); ``occurrence`` tells apart equal signatures in start order (0 in a valid schedule).
    """
    n = len(ins)
    inp = np.full(n, -1, np.int64)
    reductions = np.flatnonzero(ins.opcode == OPCODE_NAMES.index("reduction"))
    if reductions.size and tasks:
        by_id = {int(t["id"]): t for t in tasks if "id" in t}
        for row, tid in zip(reductions.tolist(), ins.task[reductions].tolist()):
            t = by_id.get(tid)
            if t is None:
                continue
            ops = [by_id.get(i) for i in t.get("inputs", ())]
            inp[row] = inputs.id(tuple(sorted(
                (o["q_start"], o["q_count"], o["kv_start"], o["kv_end"]) if o is not None else (-1, -1, -1, i)
                for o, i in zip(ops, t.get("inputs", ()))
            )))
    key = np.column_stack([ins.opcode, ins.seq, ins.q_start, ins.q_count, ins.kv_start, ins.kv_end, inp,
                           np.zeros(n, np.int64)]).astype(np.int64)
    if n:
        order = np.lexsort((ins.start, *key[:, 6::-1].T))  # by signature, then start
        k = key[order, :7]
        new = np.r_[True, np.any(k[1:] != k[:-1], axis=1)]
        group_start = np.maximum.accumulate(np.where(new, np.arange(n), 0))
        key[order, 7] = np.arange(n) - group_start
    return key


@dataclasses.dataclass
class OpChange:
    signature: dict  # opcode, seq, q_start, q_count, kv_start, kv_end, inputs
    a: dict  # sm, instr, task, start_us, dur_us
    b: dict
    dur_delta_us: float
    start_shift_us: float


class OpChanges:
    """The matched instructions as columns, largest |duration delta| first (then largest |start shift|).

    Behaves as a read-only list of OpChange (len, index, slice, iterate) that builds only the items asked for:
    a diff of 20,000 instructions usually shows 10.
    """

    def __init__(self, sig: np.ndarray | None = None, inputs: InputSets | None = None, cols: dict | None = None):
        self.sig = sig if sig is not None else np.zeros((0, len(SIG_COLUMNS)), np.int64)
        self.inputs = inputs or InputSets()
        self.cols = cols or {}

    def __len__(self) -> int:
        return len(self.sig)

    def _item(self, j: int) -> OpChange:
        op, seq, q0, qn, k0, k1, inp, _ = self.sig[j].tolist()
        c = {k: v[j] for k, v in self.cols.items()}
        return OpChange(
            signature={"opcode": OPCODE_NAMES[op] if 0 <= op < len(OPCODE_NAMES) else "unknown", "seq": seq,
                       "q_start": q0, "q_count": qn, "kv_start": k0, "kv_end": k1,
                       "inputs": [list(x) for x in self.inputs.values[inp]] if inp >= 0 else []},
            a={"sm": int(c["sm_a"]), "instr": int(c["instr_a"]), "task": int(c["task_a"]),
               "start_us": _r(c["start_a"]), "dur_us": _r(c["dur_a"])},
            b={"sm": int(c["sm_b"]), "instr": int(c["instr_b"]), "task": int(c["task_b"]),
               "start_us": _r(c["start_b"]), "dur_us": _r(c["dur_b"])},
            dur_delta_us=_r(c["dur_delta"]), start_shift_us=_r(c["start_shift"]),
        )

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self._item(j) for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        return self._item(i)

    def __iter__(self):
        return (self._item(j) for j in range(len(self)))

    def __eq__(self, other) -> bool:
        return list(self) == list(other)


@dataclasses.dataclass
class Diff:
    mode: str  # "matched" | "aggregate"
    note: str
    a: dict  # path, workload, scheduler, source, sm_count
    b: dict
    makespan_a_us: float
    makespan_b_us: float
    makespan_delta_us: float
    totals: dict  # busy_us / wait_us / idle_us -> {a, b, delta}, summed over SMs
    by_kind_us: dict  # kind -> {a, b, delta}
    opcode_mean_us: dict  # opcode -> {a, b, delta} of mean INSTRUCTION duration
    opcode_count: dict
    rates: dict  # tflops / gbps / load_imbalance / the KV stream's (STREAM_FIELDS) -> {a, b, delta}
    sms: list[dict]  # the SMs that changed most, most first
    ops: dict | None  # matched mode: counts and delta statistics
    op_changes: OpChanges  # matched mode: every matched op, largest |duration delta| first (empty otherwise)
    critical_path: dict
    critical_time_us: dict = dataclasses.field(default_factory=dict)  # part -> {a, b, delta} (CRITICAL_PARTS)

    def to_json(self, max_ops: int | None = 100) -> dict:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "op_changes"}
        shown = self.op_changes[: len(self.op_changes) if max_ops is None else max_ops]
        out["op_changes"] = [dataclasses.asdict(c) for c in shown]
        out["op_changes_total"] = len(self.op_changes)
        return out


def _sm_changes(aa: Analysis, ab: Analysis, top: int) -> list[dict]:
    n = max(len(aa.sm_busy_us), len(ab.sm_busy_us))

    def pad(x):
        x = np.asarray(x)
        return np.r_[x, np.zeros(n - len(x), x.dtype)]

    fields = {"busy_us": "sm_busy_us", "wait_us": "sm_wait_us", "idle_us": "sm_idle_us", "finish_us": "sm_finish_us",
              "instructions": "sm_instructions"}
    va = {k: pad(getattr(aa, f)) for k, f in fields.items()}
    vb = {k: pad(getattr(ab, f)) for k, f in fields.items()}
    # idle is makespan - busy - wait, so it is left out of the score to avoid counting one change twice
    score = sum(np.abs(vb[k] - va[k]) for k in ("busy_us", "wait_us", "finish_us"))
    order = np.argsort(-score, kind="stable")[:top]
    return [
        {"sm": int(i), "score_us": _r(score[i]), **{k: _abd(va[k][i], vb[k][i]) for k in fields}}
        for i in order if score[i] > 0
    ]


def _side(t: Trace, an: Analysis) -> dict:
    return {"path": str(t.path) if t.path else None, "workload": t.meta.workload, "scheduler": t.meta.scheduler,
            "source": t.meta.source, "sm_count": t.meta.sm_count, "makespan_us": an.makespan_us}


def _same_workload(a: dict, b: dict) -> bool:
    try:
        return [int(x) for x in a["lens"]] == [int(x) for x in b["lens"]] and int(a["s_q"]) == int(b["s_q"])
    except (KeyError, TypeError, ValueError):
        return False


def _stats(x: np.ndarray) -> dict:
    if not x.size:
        return {"mean": 0.0, "p50": 0.0, "p90_abs": 0.0, "max_abs": 0.0, "sum": 0.0}
    ax = np.abs(x)
    return {"mean": _r(x.mean()), "p50": _r(np.percentile(x, 50)), "p90_abs": _r(np.percentile(ax, 90)),
            "max_abs": _r(ax.max()), "sum": _r(x.sum())}


def _match(sig_a: np.ndarray, sig_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Rows of A and B with equal signature keys. Returns (ia, ib, id_a, id_b): matched rows, and a signature id
    per row of each trace (equal ids = same computation)."""
    both = np.concatenate([sig_a, sig_b])
    if not len(both):
        e = np.zeros(0, np.int64)
        return e, e, e, e
    _, ids = np.unique(both, axis=0, return_inverse=True)
    ids = ids.reshape(-1)
    id_a, id_b = ids[: len(sig_a)], ids[len(sig_a):]
    pos_a = np.full(ids.max() + 1, -1, np.int64)
    pos_b = pos_a.copy()
    pos_a[id_a] = np.arange(len(id_a))
    pos_b[id_b] = np.arange(len(id_b))
    common = np.flatnonzero((pos_a >= 0) & (pos_b >= 0))
    return pos_a[common], pos_b[common], id_a, id_b


def _op_changes(ins_a: Instructions, ins_b: Instructions, ia, ib, sig: np.ndarray, inputs: InputSets):
    da = (ins_a.end[ia] - ins_a.start[ia]) / NS_PER_US
    db = (ins_b.end[ib] - ins_b.start[ib]) / NS_PER_US
    sa, sb = ins_a.start[ia] / NS_PER_US, ins_b.start[ib] / NS_PER_US
    dd, ds = db - da, sb - sa
    order = np.lexsort((-np.abs(ds), -np.abs(dd)))
    cols = {"sm_a": ins_a.sm[ia], "instr_a": ins_a.instr[ia], "task_a": ins_a.task[ia], "start_a": sa, "dur_a": da,
            "sm_b": ins_b.sm[ib], "instr_b": ins_b.instr[ib], "task_b": ins_b.task[ib], "start_b": sb, "dur_b": db,
            "dur_delta": dd, "start_shift": ds}
    changes = OpChanges(sig[order], inputs, {k: v[order] for k, v in cols.items()})
    moved_sm = int(np.count_nonzero(ins_a.sm[ia] != ins_b.sm[ib]))
    stats = {"matched": len(ia), "moved_sm": moved_sm, "only_in_a": len(ins_a) - len(ia),
             "only_in_b": len(ins_b) - len(ib), "dur_delta_us": _stats(dd), "start_shift_us": _stats(ds)}
    return stats, changes


def _steps_by_signature(an: Analysis, ids: np.ndarray) -> dict[int, CriticalStep]:
    """critical step -> the signature id of its instruction (rows are sorted by (sm, instr), so search)."""
    ins = an.instructions
    if ins is None or not len(ins) or not an.critical_path:
        return {}
    width = int(ins.instr.max()) + 1
    rows = np.searchsorted(ins.sm * width + ins.instr, [s.sm * width + s.instr for s in an.critical_path])
    return {int(ids[r]): s for r, s in zip(rows, an.critical_path)}


def _critical_moves(aa: Analysis, ab: Analysis, id_a: np.ndarray, id_b: np.ndarray) -> dict:
    """Which critical-path steps are only in A, only in B, or in both but reached another way."""
    sa, sb = _steps_by_signature(aa, id_a), _steps_by_signature(ab, id_b)
    return {
        "steps_a": len(aa.critical_path), "steps_b": len(ab.critical_path), "common": len(sa.keys() & sb.keys()),
        "only_in_a": [dataclasses.asdict(s) for k, s in sa.items() if k not in sb],
        "only_in_b": [dataclasses.asdict(s) for k, s in sb.items() if k not in sa],
        "reason_changed": [{"a": dataclasses.asdict(sa[k]), "b": dataclasses.asdict(sb[k])}
                           for k in sa if k in sb and sa[k].reason != sb[k].reason],
        "end_delta_us": _path_end_delta(aa, ab),
    }


def _path_end_delta(aa: Analysis, ab: Analysis) -> float:
    end = lambda an: an.critical_path[-1].end_us if an.critical_path else 0.0  # noqa: E731
    return _r(end(ab) - end(aa))


STREAM_FIELDS = {"kv_sms": "sms", "kv_stream_end_us": "end_us", "kv_tile_interval_us": "tile_interval_us",
                 "kv_steady_tbps": "steady_tbps"}  # diff's rate name -> Analysis.kv_stream's field


def _stream_rates(aa: Analysis, ab: Analysis) -> dict:
    """The KV streams side by side (Analysis.kv_stream): more SMs at a longer interval and the same rate is
    HBM-bound (bench/NOTES.md v23); a field either trace lacks counts as 0."""
    ka, kb = aa.kv_stream or {}, ab.kv_stream or {}
    return {name: _abd(ka.get(f), kb.get(f)) for name, f in STREAM_FIELDS.items()}


def diff(a: Trace, b: Trace, analysis_a: Analysis | None = None, analysis_b: Analysis | None = None,
         top_sms: int = 10) -> Diff:
    aa = analysis_a or analyze(a)
    ab = analysis_b or analyze(b)
    same = _same_workload(a.meta.workload, b.meta.workload)
    ia = np.zeros(0, np.int64)
    if same and aa.instructions is not None and ab.instructions is not None:
        inputs = InputSets()
        sig_a = signature_keys(aa.instructions, a.meta.tasks, inputs)
        sig_b = signature_keys(ab.instructions, b.meta.tasks, inputs)
        ia, ib, id_a, id_b = _match(sig_a, sig_b)
    if len(ia):
        mode = "matched"
        note = f"same workload; {len(ia)} instructions matched by what they compute"
        ops, changes = _op_changes(aa.instructions, ab.instructions, ia, ib, sig_a[ia], inputs)
        crit = _critical_moves(aa, ab, id_a, id_b)
    else:
        mode = "aggregate"
        why = "the workloads differ" if not same else "no instruction computes the same thing in both"
        note = f"{why}: instructions cannot be matched, so only aggregates (totals, per-kind, per-opcode) are compared"
        ops, changes = None, OpChanges()
        crit = {"steps_a": len(aa.critical_path), "steps_b": len(ab.critical_path),
                "end_delta_us": _path_end_delta(aa, ab)}
    opcodes = sorted(set(aa.op_stats) | set(ab.op_stats), key=OPCODE_NAMES.index)
    return Diff(
        mode=mode, note=note, a=_side(a, aa), b=_side(b, ab),
        makespan_a_us=aa.makespan_us, makespan_b_us=ab.makespan_us,
        makespan_delta_us=_r(ab.makespan_us - aa.makespan_us),
        totals={k: _abd(getattr(aa, k), getattr(ab, k)) for k in ("busy_us", "wait_us", "idle_us")},
        by_kind_us={k: _abd(aa.by_kind_us.get(k), ab.by_kind_us.get(k)) for k in KIND_NAMES},
        opcode_mean_us={o: _abd(getattr(aa.op_stats.get(o), "mean_us", None), getattr(ab.op_stats.get(o), "mean_us", None))
                        for o in opcodes},
        opcode_count={o: _abd(getattr(aa.op_stats.get(o), "count", None), getattr(ab.op_stats.get(o), "count", None))
                      for o in opcodes},
        rates={"tflops": _abd(aa.tflops, ab.tflops), "gbps": _abd(aa.gbps, ab.gbps),
               "load_imbalance": _abd(aa.load_imbalance, ab.load_imbalance), **_stream_rates(aa, ab)},
        critical_time_us={k: _abd(aa.critical_time_us.get(k), ab.critical_time_us.get(k)) for k in CRITICAL_PARTS},
        sms=_sm_changes(aa, ab, top_sms), ops=ops, op_changes=changes, critical_path=crit,
    )


# ---- HTML report --------------------------------------------------------------------------------------------

_OP_COLOURS = {"partial": "#4c78a8", "reduction": "#f58518"}


def _gantt_traces(an: Analysis, label: str, width: float = 6.0):
    """Instructions as horizontal line segments (scattergl: fast for tens of thousands), critical path on top."""
    import plotly.graph_objects as go

    ins = an.instructions
    out = []
    if ins is None or not len(ins):
        return out
    for code, name in enumerate(OPCODE_NAMES):
        m = np.flatnonzero(ins.opcode == code)
        if not m.size:
            continue
        x = np.full(3 * m.size, np.nan)
        y = np.full(3 * m.size, np.nan)
        x[0::3], x[1::3] = ins.start[m] / NS_PER_US, ins.end[m] / NS_PER_US
        y[0::3] = y[1::3] = ins.sm[m]
        text = np.repeat([f"{label} SM {s} #{i} task {t}: {name} seq {q} kv [{a},{b})"
                          for s, i, t, q, a, b in zip(ins.sm[m], ins.instr[m], ins.task[m], ins.seq[m],
                                                      ins.kv_start[m], ins.kv_end[m])], 3)
        out.append(go.Scattergl(x=x, y=y, mode="lines", line={"width": width, "color": _OP_COLOURS.get(name, "#888")},
                                name=f"{label}: {name}", text=text, hoverinfo="text+x", connectgaps=False))
    if an.critical_path:
        x, y = [], []
        for s in an.critical_path:
            x += [s.start_us, s.end_us, None]
            y += [s.sm, s.sm, None]
        out.append(go.Scattergl(x=x, y=y, mode="lines", line={"width": max(1.0, width / 3), "color": "#d62728"},
                                name=f"{label}: critical path", hoverinfo="skip"))
    return out


def _table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _abd_rows(d: dict) -> list[list]:
    return [[k, v["a"], v["b"], v["delta"]] for k, v in d.items()]


def html_report(d: Diff, aa: Analysis, ab: Analysis, max_ops: int = 50) -> str:
    """A self-contained page: both Gantts on one shared time axis (µs), then the delta tables."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=(f"A: {d.a['scheduler']} ({d.a['path']})", f"B: {d.b['scheduler']} ({d.b['path']})"))
    rows = max(aa.sm_count, ab.sm_count, 1)
    height = min(1800, 260 + 2 * max(120, 6 * rows))
    # bars about 70% of a row's height, so neighbouring SMs stay apart
    width = float(np.clip(0.7 * (height - 150) / 2 / rows, 1.0, 8.0))
    for row, (an, label) in enumerate(((aa, "A"), (ab, "B")), start=1):
        for tr in _gantt_traces(an, label, width):
            fig.add_trace(tr, row=row, col=1)
        fig.update_yaxes(title_text="SM", autorange="reversed", row=row, col=1)
    fig.update_xaxes(title_text="time since kernel start (µs)", row=2, col=1)
    fig.update_layout(height=height, margin={"l": 60, "r": 20, "t": 50, "b": 40})
    plot = fig.to_html(include_plotlyjs=True, full_html=False)

    parts = [
        f"<h1>mlaprof diff</h1><p><b>mode:</b> {html.escape(d.mode)} &mdash; {html.escape(d.note)}</p>",
        _table(["", "A", "B", "B - A"], [["makespan (µs)", d.makespan_a_us, d.makespan_b_us, d.makespan_delta_us]]
               + _abd_rows({f"total {k}": v for k, v in d.totals.items()}) + _abd_rows(d.rates)),
        plot,
        "<h2>Time by kind (µs, summed over SMs)</h2>", _table(["kind", "A", "B", "B - A"], _abd_rows(d.by_kind_us)),
        "<h2>Mean instruction duration by opcode (µs)</h2>",
        _table(["opcode", "A", "B", "B - A"], _abd_rows(d.opcode_mean_us)),
        "<h2>SMs that changed most</h2>",
        _table(["SM", "busy A", "busy B", "wait A", "wait B", "finish A", "finish B", "score"],
               [[s["sm"], s["busy_us"]["a"], s["busy_us"]["b"], s["wait_us"]["a"], s["wait_us"]["b"],
                 s["finish_us"]["a"], s["finish_us"]["b"], s["score_us"]] for s in d.sms]),
    ]
    if d.ops is not None:
        parts += [
            f"<h2>Matched instructions</h2><p>{d.ops['matched']} matched, {d.ops['only_in_a']} only in A, "
            f"{d.ops['only_in_b']} only in B, {d.ops['moved_sm']} moved to another SM.</p>",
            _table(["opcode", "seq", "kv", "SM A", "SM B", "dur A", "dur B", "Δdur", "Δstart"],
                   [[c.signature["opcode"], c.signature["seq"], f"[{c.signature['kv_start']},{c.signature['kv_end']})",
                     c.a["sm"], c.b["sm"], c.a["dur_us"], c.b["dur_us"], c.dur_delta_us, c.start_shift_us]
                    for c in d.op_changes[:max_ops]]),
            "<h2>Critical path</h2>",
            f"<p>{d.critical_path['steps_a']} steps in A, {d.critical_path['steps_b']} in B, "
            f"{d.critical_path['common']} in both.</p>",
        ]
        for side in ("only_in_a", "only_in_b"):
            parts.append(f"<h3>steps {side.replace('_', ' ')}</h3>")
            parts.append(_table(["SM", "instr", "opcode", "seq", "kv", "start", "end", "reason"],
                                [[s["sm"], s["instr"], s["opcode"], s["seq"], f"[{s['kv_start']},{s['kv_end']})",
                                  s["start_us"], s["end_us"], s["reason"]] for s in d.critical_path[side]]))
    style = ("body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin:.5em 0}"
             "td,th{border:1px solid #ccc;padding:2px 8px;text-align:right}th{background:#f4f4f4}")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>mlaprof diff</title><style>{style}</style>"
            f"</head><body>{''.join(parts)}</body></html>")
