"""Placing a plan on SMs that stream KV at different rates (``CostModel.sm_factors``).

The cost model gives SM s a fixed rate: a partial of n tiles on it loads at 1 + f_s / sqrt(n) times the mean
(f_s = sm_spread * z_s, z_s a fixed pattern; ``costmodel.sm_factors``).  A plan made for identical SMs can
then be improved in two ways without changing its tasks' work:

- ``relabel``: a permutation of the queues over the SMs.  A queue's extra time on SM s is about
  f_s * sum over its partials of sqrt(n) * (load per tile), so the queues with the largest
  sum(sqrt(n)) go to the fastest SMs, and queues of reductions only to the slowest.
- ``offload``: where the SMs that end last each run one whole sequence (no partial work to move between
  queues: b132-4096-q4), the slowest of them hand their sequence's last ``d`` tiles to a fast SM that runs
  them first, and merge the two halves themselves.

Both only help where the SMs' rates differ in the model (``sm_spread`` > 0) and only as far as the GPU's
SMs keep those rates for the same SM index; the makespan scheduler keeps a result only when the task-level
timeline (``plan.evaluate``) says it ends sooner.
"""

from __future__ import annotations

import itertools

import numpy as np

from mlaprof import format as fmt
from mlaprof.costmodel import CostModel

PARTIAL, REDUCTION = int(fmt.Opcode.PARTIAL), int(fmt.Opcode.REDUCTION)


def relabel(op, kv_len, queues: list[list[int]], cost: CostModel) -> list[list[int]] | None:
    """The queues permuted over the SMs, heaviest streaming on the fastest; None when every SM streams
    at one rate or every queue streams alike (nothing to gain).  Stable sorts: equal queues keep their
    order."""
    f = cost.sm_factors(len(queues))
    if not np.any(f):
        return None
    tiles = -(-np.maximum(np.asarray(kv_len, dtype=np.int64), 1) // fmt.KV_TILE_TOKENS)
    w = np.where(np.asarray(op) == PARTIAL, np.sqrt(tiles), 0.0)
    qlen = np.fromiter(map(len, queues), dtype=np.int64, count=len(queues))
    owner = np.repeat(np.arange(len(queues)), qlen)
    tasks = np.fromiter(itertools.chain.from_iterable(queues), dtype=np.int64, count=int(qlen.sum()))
    weight = np.bincount(owner, weights=w[tasks], minlength=len(queues))
    if not np.ptp(weight):
        return None  # every queue streams alike: any permutation times the same
    out: list[list[int]] = [[] for _ in queues]
    for q, sm in zip(np.argsort(-weight, kind="stable").tolist(), np.argsort(f, kind="stable").tolist()):
        out[sm] = queues[q]
    return out


def offload(cols: dict, end: np.ndarray, s_q: int, cost: CostModel, max_pairs: int = 32,
            tries: int = 4) -> list[dict]:
    """Splits of the whole sequences of the SMs that end last, each with one fast SM (see the module doc).

    ``cols``: task columns (op, seq, kv0, kv1, inputs, final, q0, qn, sm) and ``queues``; ``end``: the
    timeline's end per task.  Only SMs whose queue is a single whole partial are relieved, and only SMs
    whose queue holds partials alone (no waits) take work.  Returns up to ``tries`` candidate column sets
    (for targets from mild to the most the estimate allows), or [] when no SM qualifies.

    A target T sets each split: the slow SM keeps the tiles it can stream by T less the merge's tail (its
    scratch store instead of the output, the semaphore latency, a two-input merge of all rows), at the rate
    the model gives it; the fast SM takes the rest ahead of its own work, which must still end by T (its
    estimate counts the tiles at its rate and one more instruction set-up: back-to-back partials hide each
    other's fill and store).  The estimate is rough, so the caller times every candidate and keeps one
    only if it ends sooner."""
    queues = cols["queues"]
    op, final, kv0, kv1 = cols["op"], cols["final"], cols["kv0"], cols["kv1"]
    num_sms = len(queues)
    f = cost.sm_factors(num_sms)
    if num_sms < 2 or not np.any(f):
        return []
    sm_end = np.asarray([end[q[-1]] if q else 0.0 for q in queues])
    whole = [len(q) == 1 and op[q[0]] == PARTIAL and final[q[0]] and kv1[q[0]] - kv0[q[0]] > fmt.KV_TILE_TOKENS
             for q in queues]
    if not whole[int(np.argmax(sm_end))]:
        return []  # the last SM does something else: nothing here to shorten
    rows = s_q * fmt.NUM_HEADS_Q
    tile_ns = float(np.maximum(cost.load_ns(fmt.KV_TILE_TOKENS), cost.compute_ns(fmt.KV_TILE_TOKENS, rows)))
    tail = (float(cost.store_ns(rows, False)) - float(cost.store_ns(rows, True)) + cost.sem_latency_ns
            + float(cost.reduction_ns(2, rows, True)))
    order = np.argsort(-sm_end, kind="stable").tolist()
    slow = [s for s in order if whole[s]][:max_pairs]
    taken = set(slow)
    fast = [s for s in order[::-1] if s not in taken and all(op[t] == PARTIAL for t in queues[s])]
    makespan = float(sm_end.max())
    found = []
    for step in range(1, 400):  # T lowered a quarter tile at a time while every slow SM above it finds room
        target = makespan - 0.25 * tile_ns * step
        need = [s for s in slow if sm_end[s] > target]
        if len(need) > len(fast):
            break
        pairs = []
        for s, g in zip(need, fast):
            n = -(-(kv1[queues[s][0]] - kv0[queues[s][0]]) // fmt.KV_TILE_TOKENS)
            d = int(np.ceil((sm_end[s] + tail - target) / (tile_ns * (1.0 + f[s] / np.sqrt(n)))))
            if d < 1 or d >= n or sm_end[g] + cost.setup_ns + d * tile_ns * (1.0 + f[g] / np.sqrt(d)) > target:
                break
            pairs.append((s, g, d))
        if len(pairs) < len(need):
            break
        found.append(pairs)
    if not found:
        return []
    picks = sorted({round(i * (len(found) - 1) / max(1, tries - 1)) for i in range(tries)})
    return [_split(cols, found[i], s_q) for i in picks]


def _split(cols: dict, pairs: list[tuple[int, int, int]], s_q: int) -> dict:
    """New columns: for each (slow SM, fast SM, d), the slow SM's whole partial keeps its first tiles and
    writes scratch, a partial of the last d tiles goes first on the fast SM, and a reduction of all s_q tokens
    merges the two on the slow SM."""
    out = {k: list(cols[k]) for k in ("op", "seq", "kv0", "kv1", "inputs", "final", "q0", "qn", "sm")}
    queues = [list(q) for q in cols["queues"]]
    for s, g, d in pairs:
        t = queues[s][0]
        cut = ((out["kv1"][t] - 1) // fmt.KV_TILE_TOKENS - d + 1) * fmt.KV_TILE_TOKENS  # a tile boundary
        hi = out["kv1"][t]
        out["kv1"][t] = cut
        out["final"][t] = False
        tail_id = _add(out, PARTIAL, out["seq"][t], cut, hi, (), False, g, s_q)
        red_id = _add(out, REDUCTION, out["seq"][t], out["kv0"][t], hi, (t, tail_id), True, s, s_q)
        queues[g].insert(0, tail_id)
        queues[s].append(red_id)
    out["queues"] = queues
    return out


def _add(out: dict, op: int, seq: int, a: int, b: int, inputs: tuple, final: bool, sm: int, s_q: int) -> int:
    for k, v in (("op", op), ("seq", seq), ("kv0", a), ("kv1", b), ("inputs", inputs), ("final", final),
                 ("q0", 0), ("qn", s_q), ("sm", sm)):
        out[k].append(v)
    return len(out["op"]) - 1
