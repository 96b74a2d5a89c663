"""The cost model: how long each span of a partial or a reduction takes on one SM, and its fit to traces.

Every duration is affine in one physical quantity (bytes moved or FLOPs done), so the model is a handful of
(base, slope) pairs that least squares can recover from recorded spans (``fit``), and that the schedulers and
the simulator (``mlaprof.sim``) both read.  Defaults are estimates for an H100 SXM (132 SMs); each says where
its number comes from.  ``mlaprof calibrate`` replaces them with numbers fitted to measured traces.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from mlaprof import format as fmt
from mlaprof.errors import UserError

H100_SMS = 132
KV_TOKEN_BYTES = fmt.HEAD_DIM_QK * 2  # one latent KV row, bf16 (V is its first 512 columns: loaded once)
FLOPS_PER_ROW_TOKEN = 2 * (fmt.HEAD_DIM_QK + fmt.HEAD_DIM_V)  # Q.K^T (576) plus P.V (512), multiply-add = 2
SCRATCH_ROW_BYTES = fmt.HEAD_DIM_V * 4 + 4  # fp32 partial output row plus its log-sum-exp
OUTPUT_ROW_BYTES = fmt.HEAD_DIM_V * 2  # bf16 final output row


class CostModelError(UserError):
    pass


@dataclasses.dataclass
class CostModel:
    """Per-SM span durations in ns.  Affine in bytes or FLOPs, so ``fit`` is ordinary least squares."""

    # controller: fetch and decode of one 24-word instruction, pointer and scratch set-up.  A few hundred ns:
    # a couple of dependent global loads (~600 cycles at 1.98 GHz) plus address arithmetic.
    setup_ns: float = 300.0
    # producer, per KV tile: page-table lookup and TMA issue (estimate), plus bytes at this SM's share of HBM:
    # ~3.0 TB/s measured read rate (DESIGN §2: x.sum reaches ~2.9, copies ~2.95) / 132 SMs = 22.7 B/ns.
    load_base_ns: float = 100.0
    load_byte_ns: float = H100_SMS / 3000.0
    # consumer, per KV tile: softmax rescale and barriers (estimate), plus FLOPs at wgmma rate: 989 TFLOP/s
    # dense bf16 / 132 SMs = 7.5 TFLOP/s per SM, at ~70% of peak once softmax and the pipeline are paid for.
    compute_base_ns: float = 150.0
    compute_flop_ns: float = H100_SMS / (989e3 * 0.7)
    # consumer, reduction merge: reads fan-in x rows x (512 fp32 + lse) from L2 at ~110 B/ns per SM
    # (64 B/clk L2->SM at 1.75 GHz); the base covers the log-sum-exp rescale set-up.
    reduce_base_ns: float = 300.0
    reduce_byte_ns: float = 1.0 / 110.0
    # consumer, result write (fp32 scratch + lse, or bf16 output) at the same L2 rate, plus the semaphore release.
    store_base_ns: float = 200.0
    store_byte_ns: float = 1.0 / 110.0
    # a semaphore release on one SM seen by an acquire poll on another: ~1 us (L2 round trips plus back-off).
    sem_latency_ns: float = 1000.0
    # wgmma's M is 64: query rows are padded to a multiple of this on the tensor cores (DESIGN §3).
    row_granule: int = 64

    # ---- span durations (numpy-friendly: arrays in, arrays out) --------------------------------------------
    def load_ns(self, tokens):
        return self.load_base_ns + self.load_byte_ns * (np.asarray(tokens) * KV_TOKEN_BYTES)

    def compute_ns(self, tokens, rows):
        return self.compute_base_ns + self.compute_flop_ns * compute_flops(tokens, rows, self.row_granule)

    def reduce_ns(self, fanin, rows):
        return self.reduce_base_ns + self.reduce_byte_ns * (np.asarray(fanin) * np.asarray(rows) * SCRATCH_ROW_BYTES)

    def store_ns(self, rows, final):
        return self.store_base_ns + self.store_byte_ns * store_bytes(rows, final)

    # ---- whole instructions, as the schedulers plan them (no overlap with neighbours) ----------------------
    def partial_ns(self, tokens, rows: int, final):
        """Alone on an SM: the controller's setup alongside the first tile's load, then per tile the slower
        of the next load and this compute, the last compute, and the store.  Vectorised over ``tokens`` and
        ``final``."""
        tokens = np.asarray(tokens, dtype=np.int64)
        n = np.maximum(1, -(-tokens // KV_TILE_TOKENS))
        last = tokens - KV_TILE_TOKENS * (n - 1)
        lf, cf = self.load_ns(KV_TILE_TOKENS), self.compute_ns(KV_TILE_TOKENS, rows)
        ll, cl = self.load_ns(last), self.compute_ns(last, rows)
        first = np.maximum(self.setup_ns, np.where(n == 1, ll, lf))
        body = np.where(n == 1, first + cl, first + (n - 2).clip(0) * max(lf, cf) + np.maximum(ll, cf) + cl)
        return body + self.store_ns(rows, final)

    def partial_linear(self, rows: int, final: bool) -> tuple[float, float]:
        """(fixed ns, ns per full KV tile) of a partial alone on an SM: the affine form the makespan scheduler
        packs with (exact for whole tiles)."""
        full = KV_TILE_TOKENS
        load, comp = float(self.load_ns(full)), float(self.compute_ns(full, rows))
        per_tile = max(load, comp)
        fixed = max(self.setup_ns, load) - per_tile + comp + float(self.store_ns(rows, final))
        return fixed, per_tile

    def reduction_ns(self, fanin, rows: int, final):
        return self.setup_ns + self.reduce_ns(fanin, rows) + self.store_ns(rows, final)

    # ---- persistence ---------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> "CostModel":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(obj) - names - {"fit"})
        if unknown:
            raise CostModelError(f"cost model: unknown fields {unknown}; known: {sorted(names)}")
        try:
            values = {k: (int(v) if k == "row_granule" else float(v)) for k, v in obj.items() if k in names}
        except (TypeError, ValueError) as e:
            raise CostModelError(f"cost model: every field must be a number ({e})") from None
        bad = [k for k, v in values.items() if not math.isfinite(v) or v < 0]
        if bad or values.get("row_granule", 64) < 1:
            raise CostModelError(f"cost model: fields must be finite and >= 0 (row_granule >= 1); bad: {bad or ['row_granule']}")
        return cls(**values)

    def save(self, path: str | Path, fit_report: dict | None = None) -> Path:
        path = Path(path)
        obj = self.to_json()
        if fit_report is not None:
            obj["fit"] = fit_report
        path.write_text(json.dumps(obj, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "CostModel":
        path = Path(path)
        try:
            obj = json.loads(path.read_text())
        except FileNotFoundError:
            raise CostModelError(f"{path}: no such cost model file") from None
        except json.JSONDecodeError as e:
            raise CostModelError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
        except (UnicodeDecodeError, OSError) as e:
            raise CostModelError(f"{path}: not a readable JSON text file ({type(e).__name__})") from None
        if not isinstance(obj, dict):
            raise CostModelError(f"{path}: a cost model is a JSON object of named constants")
        return cls.from_json(obj)


KV_TILE_TOKENS = fmt.KV_TILE_TOKENS


def tile_tokens(tokens: int) -> np.ndarray:
    """Tokens in each KV tile of a range of ``tokens`` tokens (the last tile may be short)."""
    n = max(1, -(-int(tokens) // KV_TILE_TOKENS))
    out = np.full(n, KV_TILE_TOKENS, dtype=np.int64)
    out[-1] = int(tokens) - KV_TILE_TOKENS * (n - 1)
    return out


def compute_flops(tokens, rows, row_granule: int):
    padded = -(-np.asarray(rows) // row_granule) * row_granule
    return padded * np.asarray(tokens) * FLOPS_PER_ROW_TOKEN


def store_bytes(rows, final):
    return np.asarray(rows) * np.where(final, OUTPUT_ROW_BYTES, SCRATCH_ROW_BYTES)


def reduce_bytes(fanin, rows):
    return np.asarray(fanin) * np.asarray(rows) * SCRATCH_ROW_BYTES


def load(path: str | Path | None) -> CostModel:
    """The model in ``path``, or the defaults when no path is given."""
    return CostModel() if path is None else CostModel.load(path)


# ---- calibration ----------------------------------------------------------------------------------------
# (constant name of the base, of the slope) fitted per span kind, against the physical quantity of each span
FITTED = {
    "load": ("load_base_ns", "load_byte_ns"),
    "compute": ("compute_base_ns", "compute_flop_ns"),
    "reduce": ("reduce_base_ns", "reduce_byte_ns"),
    "store": ("store_base_ns", "store_byte_ns"),
}


def _affine(x: np.ndarray, y: np.ndarray, slope0: float) -> tuple[float, float, bool]:
    """Least-squares y = a + b x.  When x barely varies the slope is not identifiable: keep ``slope0`` and
    fit the intercept alone (reported, so a user knows which constants the traces could not pin down)."""
    if len(x) >= 2 and np.ptp(x) > 1e-6 * max(1.0, float(np.abs(x).mean())):
        xm, ym = x.mean(), y.mean()
        b = float(((x - xm) * (y - ym)).sum() / ((x - xm) ** 2).sum())
        a = float(ym - b * xm)
        if a < 0:  # durations cannot have a negative fixed part: refit through the origin
            return 0.0, max(0.0, float((x * y).sum() / (x * x).sum())), True
        if b < 0:  # nor shrink with size: a constant fits better
            return float(ym), 0.0, True
        return a, b, True
    return max(0.0, float((y - slope0 * x).mean())), slope0, False


def span_samples(trace) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per fitted kind: (quantity, duration_ns) arrays from one trace; plus 'setup' and 'latency' samples."""
    from mlaprof.trace.schema import KIND_NAMES, OPCODE_NAMES

    kind = trace.codes("kind", KIND_NAMES)
    opcode = trace.codes("opcode", OPCODE_NAMES)
    start, end = trace.col("start_ns").astype(np.int64), trace.col("end_ns").astype(np.int64)
    dur = (end - start).astype(float)
    kv_len = (trace.col("kv_end") - trace.col("kv_start")).astype(np.int64)
    rows = trace.col("q_count").astype(np.int64) * fmt.NUM_HEADS_Q
    aux = trace.col("aux").astype(np.int64)
    task = trace.col("task").astype(np.int64)
    final = trace.col("slot") == fmt.NO_SLOT
    partial, reduction = opcode == fmt.Opcode.PARTIAL, opcode == fmt.Opcode.REDUCTION
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    tile_tok = np.clip(kv_len - aux * KV_TILE_TOKENS, 1, KV_TILE_TOKENS)
    out["load"] = _load_samples(trace, kind, partial, aux, tile_tok, start, end, dur)
    m = (kind == fmt.Kind.COMPUTE) & partial & (aux >= 0)
    out["compute"] = (tile_tok[m] * rows[m] * 1.0, dur[m])  # flops need row_granule: applied by the caller
    out["compute_rows"] = (rows[m], tile_tok[m])
    # a reduction's fan-in: its WAIT spans, one per input
    m = (kind == fmt.Kind.COMPUTE) & reduction
    waits = (kind == fmt.Kind.WAIT) & reduction
    fanin_of = dict(zip(*np.unique(task[waits], return_counts=True)))
    fanin = np.asarray([fanin_of.get(int(t), 0) for t in task[m]], dtype=float)
    keep = fanin > 0
    out["reduce"] = (reduce_bytes(fanin[keep], rows[m][keep]) * 1.0, dur[m][keep])
    m = kind == fmt.Kind.STORE
    out["store"] = (store_bytes(rows[m], final[m]) * 1.0, dur[m])
    out["setup"] = (np.zeros(int((kind == fmt.Kind.SETUP).sum())), dur[kind == fmt.Kind.SETUP])
    # semaphore latency: waits that began before their producer's store ended, i.e. really blocked
    wait_task = trace.col("wait_task").astype(np.int64)
    m = (kind == fmt.Kind.WAIT) & (wait_task >= 0)
    store_end = dict(zip(task[kind == fmt.Kind.STORE].tolist(), end[kind == fmt.Kind.STORE].tolist()))
    produced = np.asarray([store_end.get(int(t), -1) for t in wait_task[m]], dtype=np.int64)
    blocked = (produced >= 0) & (start[m] < produced)
    out["latency"] = (np.zeros(int(blocked.sum())), (end[m][blocked] - produced[blocked]).astype(float))
    return out


def _load_samples(trace, kind, partial, aux, tile_tok, start, end, dur):
    """(tile bytes, ns) per KV tile load.  Where loads run one after another on an SM (the simulator), a
    LOAD span is the tile's time at that SM's share of bandwidth: use the spans.  Where several are in
    flight at once (the GPU), a span runs from issue to arrival and includes queueing; there, where the
    consumer sat idle waiting for two tiles in a row, the gap between their compute starts is the tile
    time: use those gaps (or the spans, if the trace is compute-bound and has too few)."""
    sm = trace.col("sm").astype(np.int64)
    instr = trace.col("instr").astype(np.int64)
    ld = np.flatnonzero((kind == fmt.Kind.LOAD) & partial & (aux >= 0))
    ld_sorted = ld[np.lexsort((start[ld], sm[ld]))]
    same_sm = sm[ld_sorted][1:] == sm[ld_sorted][:-1]
    overlapping = same_sm & (start[ld_sorted][1:] < end[ld_sorted][:-1])
    if overlapping.sum() <= 0.05 * max(1, same_sm.sum()):
        return tile_tok[ld] * KV_TOKEN_BYTES * 1.0, dur[ld]
    m = np.flatnonzero((kind == fmt.Kind.COMPUTE) & partial & (aux >= 0))
    m = m[np.lexsort((aux[m], instr[m], sm[m]))]
    same = (sm[m][1:] == sm[m][:-1]) & (instr[m][1:] == instr[m][:-1]) & (aux[m][1:] == aux[m][:-1] + 1)
    stalled = np.zeros(len(m), dtype=bool)
    stalled[1:] = same & (start[m][1:] > end[m][:-1])  # idle before this tile: it had not landed
    pair = np.flatnonzero(stalled[1:] & stalled[:-1] & same) + 1  # tiles u and u-1 both waited
    if len(pair) >= 20:
        gap = (start[m][pair] - start[m][pair - 1]).astype(float)
        return tile_tok[m][pair] * KV_TOKEN_BYTES * 1.0, gap
    return tile_tok[ld] * KV_TOKEN_BYTES * 1.0, dur[ld]


def fit_with_report(traces, base: CostModel | None = None) -> tuple[CostModel, dict]:
    """Fit every constant by least squares on the traces' spans; also return per-kind residuals."""
    base = base or CostModel()
    if not traces:
        raise CostModelError("calibrate needs at least one trace")
    parts = [span_samples(t) for t in traces]

    def cat(key, i):
        return np.concatenate([p[key][i] for p in parts]) if parts else np.empty(0)

    values = base.to_json()
    report: dict = {"traces": len(traces), "kinds": {}}
    rows, toks = cat("compute_rows", 0), cat("compute_rows", 1)
    flops = compute_flops(toks, rows, base.row_granule) * 1.0
    for kind, (a_name, b_name) in FITTED.items():
        x = flops if kind == "compute" else cat(kind, 0)
        y = cat(kind, 1)
        if len(y) == 0:
            report["kinds"][kind] = {"n": 0, "note": "no spans of this kind: kept the prior constants"}
            continue
        a, b, slope_fitted = _affine(x, y, values[b_name])
        values[a_name], values[b_name] = a, b
        resid = y - (values[a_name] + values[b_name] * x)
        report["kinds"][kind] = _residual(y, resid, slope_fitted)
    for kind, name in (("setup", "setup_ns"), ("latency", "sem_latency_ns")):
        y = cat(kind, 1)
        if len(y) == 0:
            report["kinds"][kind] = {"n": 0, "note": "no samples: kept the prior constant"}
            continue
        values[name] = max(float(y.mean()), 0.0)
        report["kinds"][kind] = _residual(y, y - values[name], True)
    total = sum(r.get("rms_ns", 0.0) ** 2 * r["n"] for r in report["kinds"].values())
    count = sum(r["n"] for r in report["kinds"].values())
    mean = np.mean(np.concatenate([cat(k, 1) for k in ("load", "compute", "reduce", "store", "setup")]))
    report["rms_ns"] = float(np.sqrt(total / max(count, 1)))
    report["rel_rms"] = float(report["rms_ns"] / mean) if mean > 0 else 0.0
    return CostModel.from_json(values), report


def _residual(y, resid, slope_fitted: bool) -> dict:
    rms = float(np.sqrt(np.mean(resid**2)))
    out = {"n": int(len(y)), "mean_ns": round(float(y.mean()), 2), "rms_ns": round(rms, 2),
           "rel_rms": round(rms / float(y.mean()), 4) if y.mean() > 0 else 0.0}
    if not slope_fitted:
        out["note"] = "size barely varies in these traces: slope kept from the prior, intercept fitted"
    return out


def fit(traces, base: CostModel | None = None) -> CostModel:
    """The cost model that best explains the traces' span durations (least squares, per span kind)."""
    return fit_with_report(traces, base)[0]
