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
SCRATCH_ROW_BYTES = fmt.HEAD_DIM_V * 4 + 4  # partial row as first modelled (fp32 + LSE); the kernel now writes fp16, and the slope fitted to measured traces absorbs the factor
OUTPUT_ROW_BYTES = fmt.HEAD_DIM_V * 2  # bf16 final output row


class CostModelError(UserError):
    pass


@dataclasses.dataclass
class CostModel:
    """Per-SM span durations in ns.  Linear in a few physical quantities, so ``fit`` is least squares.

    The defaults (``CostModel()``, ``--cost default``) are first-principles estimates; the model the tools
    use unless told otherwise is the one fitted to H100 traces and shipped as package data (``default()``).
    """

    # controller: fetch and decode of one instruction (its words in one batch), pointer and scratch set-up.
    # A few hundred ns: a couple of dependent global loads (~600 cycles at 1.98 GHz) plus address arithmetic.
    # A partial's setup also stages its Q rows, so it has its own constant from a reduction's.
    setup_ns: float = 300.0
    reduce_setup_ns: float = 300.0
    # producer, per KV tile: page-table lookup and TMA issue (estimate), plus bytes at this SM's share of HBM:
    # ~3.0 TB/s measured read rate (DESIGN §2: x.sum reaches ~2.9, copies ~2.95) / 132 SMs = 22.7 B/ns.
    load_base_ns: float = 100.0
    load_byte_ns: float = H100_SMS / 3000.0
    # consumer, per KV tile: softmax rescale and barriers (estimate), plus FLOPs at wgmma rate: 989 TFLOP/s
    # dense bf16 / 132 SMs = 7.5 TFLOP/s per SM, at ~70% of peak once softmax and the pipeline are paid for.
    compute_base_ns: float = 150.0
    compute_flop_ns: float = H100_SMS / (989e3 * 0.7)
    # extra for a tile shorter than KV_TILE_TOKENS (a sequence's last): the kernel masks and zeroes the rows
    # past the end.  No first-principles estimate; 0 until calibrated.
    compute_short_ns: float = 0.0
    # consumer, reduction merge: reads fan-in x rows x (512 fp32 + lse) from L2 at ~110 B/ns per SM
    # (64 B/clk L2->SM at 1.75 GHz); the base covers the log-sum-exp rescale set-up.  ``reduce_row_ns`` is
    # the per-output-row cost of the merge loop beyond its bytes (on the GPU the loop is L2-latency bound,
    # so rows, not fan-in, dominate); 0 until calibrated.
    reduce_base_ns: float = 300.0
    reduce_row_ns: float = 0.0
    reduce_byte_ns: float = 1.0 / 110.0
    # consumer, a counted merge (one column block of one query token over n inputs, schedule/widen.py): the
    # combine across warps and the stores, an L2 round trip per round of loads (``counted_rounds``: a thread
    # holds COUNTED_BATCH inputs at a time), and a cost per 128-byte line read.  Estimates until calibrated.
    counted_base_ns: float = 500.0
    counted_round_ns: float = 1000.0
    counted_line_ns: float = 0.3
    # consumer, a partial's result write (fp32 scratch + lse, or bf16 output) at the same L2 rate, plus the
    # semaphore release.
    store_base_ns: float = 200.0
    store_byte_ns: float = 1.0 / 110.0
    # a reduction's STORE span: its writes happen inside the merge loop, so what is left is a barrier and the
    # semaphore release; ``reduce_fence_ns`` more when it writes scratch (the release fence waits for the
    # writes to reach L2).  Estimates.
    reduce_store_ns: float = 200.0
    reduce_fence_ns: float = 0.0
    # each SM's first KV load starts this long after the kernel starts (prologue: barrier and tensor-map set-up,
    # the first instruction's fetch and Q load, with every SM asking at once).  0 until calibrated.
    first_load_ns: float = 0.0
    # SMs do not stream KV at one rate: per-tile times vary, so over a partial of n tiles an SM's mean tile
    # period spreads by sm_spread / sqrt(n) (relative standard deviation).  A merge waits for its slowest
    # input, so the spread lengthens every split sequence.  The simulator gives SM i a fixed z_i
    # (``sm_factors``): its partials of n tiles load at 1 + sm_spread * z_i / sqrt(n).  0 until calibrated.
    sm_spread: float = 0.0
    # a semaphore release on one SM seen by an acquire poll on another: ~1 us (L2 round trips plus back-off).
    sem_latency_ns: float = 1000.0
    # a steal group's member claims its next tile (an atomic add in L2) as it issues a tile, then looks up the
    # claimed tile's page: two dependent round trips (~0.5 us each under load) before that tile can be issued.
    # An estimate; usually hidden behind the stage it waits for.
    steal_claim_ns: float = 1000.0
    # wgmma's M is 64: query rows are padded to a multiple of this on the tensor cores (DESIGN §3).
    row_granule: int = 64

    # ---- span durations (numpy-friendly: arrays in, arrays out) --------------------------------------------
    # A KV tile is moved and computed whole: TMA loads the full box and the tensor cores the full tile, a
    # sequence's short last tile only masked (its ``compute_short_ns``).  So both are per tile, in bytes and
    # FLOPs of a full tile: the model follows fmt.KV_TILE_TOKENS when the kernel's tile size changes.
    def load_ns(self, tokens):
        return self.load_base_ns + self.load_byte_ns * TILE_BYTES * np.ones_like(np.asarray(tokens), dtype=float)

    def compute_ns(self, tokens, rows):
        tokens = np.asarray(tokens)
        return (self.compute_base_ns + self.compute_flop_ns * compute_flops(KV_TILE_TOKENS, rows, self.row_granule)
                + self.compute_short_ns * (tokens < KV_TILE_TOKENS))

    def reduce_ns(self, fanin, rows):
        rows = np.asarray(rows)
        return self.reduce_base_ns + self.reduce_row_ns * rows + self.reduce_byte_ns * reduce_bytes(fanin, rows)

    def counted_ns(self, fanin, rows, cols):
        """A counted merge's COMPUTE span."""
        return (self.counted_base_ns + self.counted_round_ns * counted_rounds(fanin, cols)
                + self.counted_line_ns * counted_lines(fanin, rows, cols))

    def store_ns(self, rows, final, reduction=False):
        """A STORE span of a partial, or (``reduction``) of a reduction."""
        part = self.store_base_ns + self.store_byte_ns * store_bytes(rows, final)
        red = self.reduce_store_ns + self.reduce_fence_ns * np.logical_not(final)
        return np.where(reduction, red, part)

    def setup(self, reduction) -> np.ndarray:
        return np.where(reduction, self.reduce_setup_ns, self.setup_ns)

    def sm_factors(self, num_sms: int) -> np.ndarray:
        """Per-SM sm_spread * z: z the normal quantiles of num_sms points in a fixed shuffled order
        (deterministic, so a simulation is repeatable; no SM index is special).  A partial of n tiles on SM
        i loads at 1 + sm_factors[i] / sqrt(n) times the model's rate."""
        return self.sm_spread * _spread_pattern(num_sms)

    # ---- whole instructions, as the schedulers plan them (no overlap with neighbours) ----------------------
    def partial_ns(self, tokens, rows, final):
        """Alone on an SM: the controller's setup alongside the first tile's load, then per tile the slower
        of the next load and this compute, the last compute, and the store.  Vectorised over ``tokens``,
        ``rows`` and ``final``."""
        tokens = np.asarray(tokens, dtype=np.int64)
        n = np.maximum(1, -(-tokens // KV_TILE_TOKENS))
        last = tokens - KV_TILE_TOKENS * (n - 1)
        lf, cf = self.load_ns(KV_TILE_TOKENS), self.compute_ns(KV_TILE_TOKENS, rows)
        ll, cl = self.load_ns(last), self.compute_ns(last, rows)
        first = np.maximum(self.setup_ns, np.where(n == 1, ll, lf))
        body = np.where(n == 1, first + cl, first + (n - 2).clip(0) * np.maximum(lf, cf) + np.maximum(ll, cf) + cl)
        return body + self.store_ns(rows, final)

    def partial_linear(self, rows: int, final: bool) -> tuple[float, float]:
        """(fixed ns, ns per full KV tile) of a partial alone on an SM: the affine form the makespan scheduler
        packs with (exact for whole tiles)."""
        full = KV_TILE_TOKENS
        load, comp = float(self.load_ns(full)), float(self.compute_ns(full, rows))
        per_tile = max(load, comp)
        fixed = max(self.setup_ns, load) - per_tile + comp + float(self.store_ns(rows, final))
        return fixed, per_tile

    def reduction_ns(self, fanin, rows, final):
        return self.reduce_setup_ns + self.reduce_ns(fanin, rows) + self.store_ns(rows, final, True)

    # ---- persistence ---------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict) -> "CostModel":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(obj) - names - {"fit", "source"})  # provenance notes, not constants
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

    def save(self, path: str | Path, fit_report: dict | None = None, source: str | None = None) -> Path:
        path = Path(path)
        obj = self.to_json()
        if source is not None:
            obj["source"] = source
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
TILE_BYTES = KV_TILE_TOKENS * KV_TOKEN_BYTES
_PATTERNS: dict[int, np.ndarray] = {}


def _spread_pattern(n: int) -> np.ndarray:
    """Standard-normal quantiles of n points, shuffled by a fixed seed, then centred to mean 0."""
    if n not in _PATTERNS:
        from statistics import NormalDist

        z = np.asarray([NormalDist().inv_cdf((i + 0.5) / n) for i in range(n)]) if n > 1 else np.zeros(1)
        z = np.random.default_rng(12345).permutation(z)
        z = z - z.mean()
        z.setflags(write=False)
        _PATTERNS[n] = z
    return _PATTERNS[n]


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


LINE_BYTES = 128  # an L2 line
SCRATCH_ELEM_BYTES = 2  # fp16 partial outputs


def counted_rounds(fanin, cols):
    """L2 round trips of a counted merge: its warps split the inputs CONSUMER_WARPS / (cols / 16) ways, and a
    thread loads COUNTED_BATCH of its share per round."""
    ways = fmt.CONSUMER_WARPS // (np.asarray(cols) // fmt.SCRATCH_BLOCK_COLS)
    return np.ceil(np.asarray(fanin) / (ways * fmt.COUNTED_BATCH))


def counted_lines(fanin, rows, cols):
    """Lines a counted merge reads: scratch is stored in column blocks (fmt.SCRATCH_BLOCK_COLS), so an input's
    rows x cols of one query token are contiguous: whole lines."""
    return np.asarray(fanin) * np.ceil(np.asarray(rows) * np.asarray(cols) * SCRATCH_ELEM_BYTES / LINE_BYTES)


# The model fitted to measured H100 traces (``bench/calibrate.py`` regenerates it): what the schedulers,
# ``mlaprof schedule`` and ``mlaprof simulate`` use unless given another.
PACKAGED = "cost_h100.json"
DEFAULT_NAMES = ("default", "builtin")  # --cost default: the uncalibrated first-principles estimates
_packaged: CostModel | None = None


def default() -> CostModel:
    """The calibrated H100 model shipped in ``mlaprof/data`` (read once per process)."""
    global _packaged
    if _packaged is None:
        from importlib import resources

        try:
            text = resources.files("mlaprof.data").joinpath(PACKAGED).read_text()
        except (FileNotFoundError, ModuleNotFoundError):
            raise CostModelError(f"the packaged cost model mlaprof/data/{PACKAGED} is missing: reinstall "
                                 f"mlaprof, or pass --cost FILE or --cost default") from None
        _packaged = CostModel.from_json(json.loads(text))
    return dataclasses.replace(_packaged)  # a copy: callers may not change the shared one


def load(path: str | Path | None) -> CostModel:
    """The model in ``path``; the calibrated H100 model when None; the uncalibrated estimates for
    ``"default"``."""
    if path is None:
        return default()
    if str(path) in DEFAULT_NAMES:
        return CostModel()
    return CostModel.load(path)


def resolve(cost: CostModel | None) -> CostModel:
    return default() if cost is None else cost


# ---- calibration ----------------------------------------------------------------------------------------
# Per fitted kind: the constant that is its intercept, then the constants that multiply each feature.
FITTED = {
    "load": ("load_base_ns", ("load_byte_ns",)),
    "compute": ("compute_base_ns", ("compute_flop_ns", "compute_short_ns")),
    "reduce": ("reduce_base_ns", ("reduce_row_ns", "reduce_byte_ns")),
    "reduce_counted": ("counted_base_ns", ("counted_round_ns", "counted_line_ns")),
    "store": ("store_base_ns", ("store_byte_ns",)),
    "reduce_store": ("reduce_store_ns", ("reduce_fence_ns",)),
    "setup": ("setup_ns", ()),
    "reduce_setup": ("reduce_setup_ns", ()),
    "latency": ("sem_latency_ns", ()),
    "first_load": ("first_load_ns", ()),
}
RATES = ("load", "compute")  # kinds whose first feature is a per-tile rate (see _linear)
MIN_PERIOD_TILES = 6  # an SM's tile period is read off its first partial when that has this many tiles


def _linear(x: np.ndarray, y: np.ndarray, prior: np.ndarray, a_prior: float = 0.0,
            rate: bool = False) -> tuple[float, np.ndarray, list[int]]:
    """Least squares y = a + x @ b with a, b >= 0 (durations have no negative parts).  A feature the traces
    cannot pin down (it barely varies, or another feature explains it) keeps its ``prior`` coefficient; so
    does one whose fit would be negative after the others were refitted.  With ``rate``, feature 0 is a
    rate (bytes or FLOPs of a whole tile, constant for one kernel): if it cannot be told from the intercept,
    the intercept keeps ``a_prior`` and the rate takes the rest, so the model scales with the tile size.
    Returns (a, b, fitted feature indices)."""
    n, k = x.shape
    b = prior.astype(float).copy()
    scale = np.abs(x).max(axis=0) if n else np.ones(k)
    scale[scale == 0] = 1.0
    xc = (x - x.mean(axis=0)) / scale if n else x
    free: list[int] = []
    for j in range(k):  # a feature joins only if it adds a direction the earlier ones do not span
        cols = xc[:, free + [j]]
        if n > len(free) + 2 and np.linalg.matrix_rank(cols, tol=1e-6 * max(1.0, np.sqrt(n))) == len(free) + 1:
            free.append(j)
    if rate and k and 0 not in free and n:
        cols = [0] + free
        sol = np.linalg.lstsq(x[:, cols], y - a_prior, rcond=None)[0]
        b[cols] = np.maximum(sol, 0.0)
        return float(a_prior), b, cols
    while True:
        fixed = [j for j in range(k) if j not in free]
        r = y - x[:, fixed] @ b[fixed] if fixed else y.astype(float)
        a_col = np.ones((n, 1))
        sol = np.linalg.lstsq(np.hstack([a_col, x[:, free]]), r, rcond=None)[0] if n else np.zeros(1 + len(free))
        a, coef = float(sol[0]), sol[1:]
        if a < 0:  # no negative fixed part: through the origin
            sol = np.linalg.lstsq(x[:, free], r, rcond=None)[0] if free else np.zeros(0)
            a, coef = 0.0, sol
        neg = [f for f, c in zip(free, coef) if c < 0]
        if not neg:
            b[free] = coef
            return a, b, [j for j in range(k) if j in free]
        worst = min(neg, key=lambda f: coef[free.index(f)])
        free.remove(worst)
        b[worst] = 0.0  # would shrink with size: no evidence for it, so none


def trace_tile_tokens(trace) -> int:
    """KV tokens per tile of the kernel that recorded ``trace``: the power of two that splits every partial's
    range into as many tiles as it has COMPUTE spans (traces do not record it; the tile size is a kernel
    constant that changes between versions). The members of a steal group carry the group's range and
    compute its tiles between them, so spans are counted per range, not per task. The current
    ``fmt.KV_TILE_TOKENS`` when the trace cannot tell."""
    from mlaprof.trace.schema import KIND_NAMES, OPCODE_NAMES

    kind, opcode = trace.codes("kind", KIND_NAMES), trace.codes("opcode", OPCODE_NAMES)
    m = (kind == fmt.Kind.COMPUTE) & (opcode == fmt.Opcode.PARTIAL)
    if not m.any():
        return KV_TILE_TOKENS
    key = np.stack([trace.col(c)[m].astype(np.int64) for c in ("seq", "q_start", "kv_start", "kv_end")], axis=1)
    _, first, n = np.unique(key, axis=0, return_index=True, return_counts=True)
    kv = key[first, 3] - key[first, 2]
    for t in (8, 16, 32, 64, 128, 256):
        if np.array_equal(-(-kv // t), n):
            return t
    return KV_TILE_TOKENS


def span_samples(trace, row_granule: int = 64) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per fitted kind (``FITTED``): (features [n, k], duration_ns [n]) from one trace."""
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
    tile = trace_tile_tokens(trace)  # the kernel that recorded it may have had another tile size
    tile_tok = np.clip(kv_len - aux * tile, 1, tile)
    x, y = _load_samples(trace, kind, partial, aux, tile_tok, start, end, dur)
    out["load"] = (x[:, None] * (tile / KV_TILE_TOKENS), y)  # bytes of that kernel's tile
    m = (kind == fmt.Kind.COMPUTE) & partial & (aux >= 0)
    flops = compute_flops(tile, rows[m], row_granule) * 1.0
    out["compute"] = (np.stack([flops, (tile_tok[m] < tile) * 1.0], axis=1), dur[m])
    # counted merges (fan-in and column block from the task table: they wait once, whatever their fan-in)
    counted = {int(t["id"]): (len(t["inputs"]), int(t.get("col_count", fmt.HEAD_DIM_V)))
               for t in (trace.meta.tasks or [])
               if t["op"] == "reduction" and (t.get("col_count", fmt.HEAD_DIM_V) != fmt.HEAD_DIM_V
                                              or len(t["inputs"]) > fmt.MAX_FANIN)}
    m = np.flatnonzero((kind == fmt.Kind.COMPUTE) & reduction)
    mc = np.asarray([i for i in m if int(task[i]) in counted], dtype=np.int64)
    fan_cols = np.asarray([counted[int(task[i])] for i in mc], dtype=float).reshape(-1, 2)
    out["reduce_counted"] = (np.stack([counted_rounds(fan_cols[:, 0], fan_cols[:, 1]),
                                       counted_lines(fan_cols[:, 0], rows[mc], fan_cols[:, 1])], axis=1) * 1.0,
                             dur[mc])
    # a listed reduction's fan-in: its WAIT spans, one per input
    m = np.asarray([i for i in m if int(task[i]) not in counted], dtype=np.int64)
    waits = (kind == fmt.Kind.WAIT) & reduction
    fanin_of = dict(zip(*np.unique(task[waits], return_counts=True)))
    fanin = np.asarray([fanin_of.get(int(t), 0) for t in task[m]], dtype=float)
    keep = fanin > 0
    r = rows[m][keep]
    out["reduce"] = (np.stack([r * 1.0, reduce_bytes(fanin[keep], r) * 1.0], axis=1).reshape(-1, 2), dur[m][keep])
    m = (kind == fmt.Kind.STORE) & partial
    out["store"] = (store_bytes(rows[m], final[m])[:, None] * 1.0, dur[m])
    m = (kind == fmt.Kind.STORE) & reduction
    out["reduce_store"] = ((~final[m])[:, None] * 1.0, dur[m])
    for name, op in (("setup", partial), ("reduce_setup", reduction)):
        m = (kind == fmt.Kind.SETUP) & op
        out[name] = (np.zeros((int(m.sum()), 0)), dur[m])
    # semaphore latency: waits that began before their producer's store ended, i.e. really blocked
    wait_task = trace.col("wait_task").astype(np.int64)
    m = (kind == fmt.Kind.WAIT) & (wait_task >= 0)
    store_end = dict(zip(task[kind == fmt.Kind.STORE].tolist(), end[kind == fmt.Kind.STORE].tolist()))
    produced = np.asarray([store_end.get(int(t), -1) for t in wait_task[m]], dtype=np.int64)
    blocked = (produced >= 0) & (start[m] < produced)
    out["latency"] = (np.zeros((int(blocked.sum()), 0)), (end[m][blocked] - produced[blocked]).astype(float))
    # the prologue: when each SM's first KV load starts (ns from the kernel's start)
    sm = trace.col("sm").astype(np.int64)
    instr = trace.col("instr").astype(np.int64)
    # (tiles in the order computed: a steal group's member computes tile m first, then the tiles it claims)
    m = np.flatnonzero((kind == fmt.Kind.LOAD) & partial & (instr == 0) & (aux >= 0))
    m = m[np.lexsort((start[m], sm[m]))]
    m = m[np.r_[True, sm[m][1:] != sm[m][:-1]]] if len(m) else m
    out["first_load"] = (np.zeros((len(m), 0)), (start[m] - int(start.min(initial=0))).astype(float))
    # per-SM tile period of the first partial (compute start to compute start), relative to the trace's mean
    m = np.flatnonzero((kind == fmt.Kind.COMPUTE) & partial & (instr == 0) & (aux >= 0))
    m = m[np.lexsort((start[m], sm[m]))]
    first = np.r_[True, sm[m][1:] != sm[m][:-1]]
    lastp = np.r_[sm[m][1:] != sm[m][:-1], True]
    n_t = np.diff(np.r_[np.flatnonzero(first), len(m)])
    period = (start[m][lastp] - start[m][first]) / np.maximum(n_t - 1, 1)
    period = period[n_t >= MIN_PERIOD_TILES]
    # scaled by sqrt(tiles - 1): the spread of a mean over n tile periods shrinks as 1/sqrt(n)
    rel = (period / period.mean() - 1) * np.sqrt(n_t[n_t >= MIN_PERIOD_TILES] - 1) if len(period) >= 8 else np.zeros(0)
    out["sm_period"] = (np.zeros((len(rel), 0)), rel)
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
        return np.full(len(ld), float(TILE_BYTES)), dur[ld]
    m = np.flatnonzero((kind == fmt.Kind.COMPUTE) & partial & (aux >= 0))
    m = m[np.lexsort((start[m], instr[m], sm[m]))]  # computed one after another (a steal member's aux skip)
    same = (sm[m][1:] == sm[m][:-1]) & (instr[m][1:] == instr[m][:-1])
    stalled = np.zeros(len(m), dtype=bool)
    stalled[1:] = same & (start[m][1:] > end[m][:-1])  # idle before this tile: it had not landed
    pair = np.flatnonzero(stalled[1:] & stalled[:-1] & same) + 1  # tiles u and u-1 both waited
    if len(pair) >= 20:
        gap = (start[m][pair] - start[m][pair - 1]).astype(float)
        return np.full(len(pair), float(TILE_BYTES)), gap
    return np.full(len(ld), float(TILE_BYTES)), dur[ld]


def fit_with_report(traces, base: CostModel | None = None) -> tuple[CostModel, dict]:
    """Fit every constant by least squares on the traces' spans; also return per-kind residuals."""
    base = base or CostModel()
    if not traces:
        raise CostModelError("calibrate needs at least one trace")
    parts = [span_samples(t, base.row_granule) for t in traces]
    values = base.to_json()
    report: dict = {"traces": len(traces), "kinds": {}}
    total, count, ys = 0.0, 0, []
    for kind, (a_name, b_names) in FITTED.items():
        x = np.concatenate([p[kind][0] for p in parts])
        y = np.concatenate([p[kind][1] for p in parts])
        if len(y) == 0:
            report["kinds"][kind] = {"n": 0, "note": "no spans of this kind: kept the prior constants"}
            continue
        prior = np.asarray([values[b] for b in b_names], dtype=float)
        a, b, free = _linear(x, y, prior, values[a_name], rate=kind in RATES)
        values[a_name] = a
        for name, v in zip(b_names, b):
            values[name] = float(v)
        resid = y - (a + x @ b)
        r = _residual(y, resid)
        kept = [b_names[j] for j in range(len(b_names)) if j not in free]
        if kept:
            r["note"] = f"the traces cannot pin down {', '.join(kept)}: kept from the prior (or 0)"
        elif kind in RATES and np.ptp(x[:, 0]) == 0 if len(x) else False:
            r["note"] = f"one tile size: {a_name} kept from the prior, {b_names[0]} takes the rest"
        report["kinds"][kind] = r
        total += float((resid**2).sum())
        count += len(y)
        if kind not in ("latency", "first_load"):
            ys.append(y)
    rel = np.concatenate([p["sm_period"][1] for p in parts])
    if len(rel):
        values["sm_spread"] = float(np.sqrt(np.mean(rel**2)))
        report["kinds"]["sm_period"] = {"n": int(len(rel)), "spread": round(values["sm_spread"], 4)}
    else:
        report["kinds"]["sm_period"] = {"n": 0, "note": f"no SM ran a first partial of {MIN_PERIOD_TILES}+ tiles: "
                                                        "kept the prior sm_spread"}
    mean = float(np.concatenate(ys).mean()) if ys else 0.0
    report["rms_ns"] = float(np.sqrt(total / max(count, 1)))
    report["rel_rms"] = float(report["rms_ns"] / mean) if mean > 0 else 0.0
    return CostModel.from_json(values), report


def _residual(y, resid) -> dict:
    rms = float(np.sqrt(np.mean(resid**2)))
    return {"n": int(len(y)), "mean_ns": round(float(y.mean()), 2), "rms_ns": round(rms, 2),
            "rel_rms": round(rms / float(y.mean()), 4) if y.mean() > 0 else 0.0}


def fit(traces, base: CostModel | None = None) -> CostModel:
    """The cost model that best explains the traces' span durations (least squares, per span kind)."""
    return fit_with_report(traces, base)[0]
