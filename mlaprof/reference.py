"""Float32 reference for MLA decode: the ground truth every kernel result is checked against."""

from __future__ import annotations

import torch

from mlaprof.workloads import WorkloadTensors

# Each sequence's KV is zero-padded to a multiple of this many rows (the padding is masked like any future
# position): a handful of matmul shapes instead of one per sequence length. On a fresh GPU machine the first
# call of each new shape cost seconds, and a workload of 64 distinct lengths stalled minutes (bench/NOTES.md).
LENGTH_BUCKET = 1024


def gather_kv(t: WorkloadTensors, seq: int) -> torch.Tensor:
    """The sequence's KV rows [len, d] in logical order, through its block table."""
    length = int(t.cache_seqlens[seq])
    page = t.kv_cache.shape[1]
    pages = t.block_table[seq, : (length + page - 1) // page].long()
    return t.kv_cache[pages].reshape(-1, t.kv_cache.shape[-1])[:length]


def mla_decode_reference(t: WorkloadTensors, dv: int = 512, dtype=torch.float32):
    """Output [b, s_q, h_q, dv] and natural-log LSE [b, s_q, h_q], both in ``dtype``.

    Query token i of s_q (the i-th newest) sees KV positions 0 .. len - s_q + i: causal among the new
    tokens, full attention to the cache before them.
    """
    b, s_q, h_q, _ = t.q.shape
    out = torch.empty(b, s_q, h_q, dv, dtype=dtype, device=t.q.device)
    lse = torch.empty(b, s_q, h_q, dtype=dtype, device=t.q.device)
    for seq in range(b):
        kv = gather_kv(t, seq).to(dtype)
        length = kv.shape[0]
        kv = torch.nn.functional.pad(kv, (0, 0, 0, -length % LENGTH_BUCKET))
        q = t.q[seq].to(dtype)  # [s_q, h_q, d]
        scores = torch.einsum("thd,nd->thn", q, kv) * t.softmax_scale
        pos = torch.arange(kv.shape[0], device=kv.device)
        limit = length - s_q + torch.arange(s_q, device=kv.device)  # last visible position per token
        scores = scores.masked_fill(pos[None, None, :] > limit[:, None, None], float("-inf"))
        lse[seq] = torch.logsumexp(scores, dim=-1)
        out[seq] = torch.einsum("thn,nv->thv", torch.softmax(scores, dim=-1), kv[:, :dv])
    return out, lse


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """||out - ref|| / ||ref|| in float64; NaN anywhere gives inf."""
    o, r = out.double(), ref.double()
    if not torch.isfinite(o).all():
        return float("inf")
    return float((o - r).norm() / r.norm().clamp_min(1e-30))
