"""The float32 reference (mlaprof.reference) against a naive float64 loop over every sequence, query token and
head, written from the definition: the ground truth for every kernel check must itself be right."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from mlaprof.reference import LENGTH_BUCKET, mla_decode_reference, relative_error  # noqa: E402
from mlaprof.workloads import Workload, build_tensors  # noqa: E402


def naive(t, dv=512):
    b, s_q, h_q, _ = t.q.shape
    page = t.kv_cache.shape[1]
    out = torch.zeros(b, s_q, h_q, dv, dtype=torch.float64)
    lse = torch.zeros(b, s_q, h_q, dtype=torch.float64)
    for seq in range(b):
        n = int(t.cache_seqlens[seq])
        rows = [t.kv_cache[int(t.block_table[seq, p // page]), p % page].double() for p in range(n)]
        for tok in range(s_q):
            visible = n - s_q + tok + 1  # the i-th newest token sees positions 0 .. n - s_q + i
            for h in range(h_q):
                q = t.q[seq, tok, h].double()
                scores = [float(q @ rows[p]) * t.softmax_scale for p in range(visible)]
                m = max(scores)
                weights = [math.exp(s - m) for s in scores]
                total = sum(weights)
                lse[seq, tok, h] = m + math.log(total)
                out[seq, tok, h] = sum(w * rows[p][:dv] for p, w in enumerate(weights)) / total
    return out, lse


@pytest.mark.parametrize("lens,s_q,shuffle", [
    ((1,), 1, False),
    ((5, 64, 65), 2, True),
    ((LENGTH_BUCKET - 1, LENGTH_BUCKET + 1), 4, True),  # either side of the reference's padding bucket
    ((130,), 3, False),
])
def test_reference_matches_a_naive_loop(lens, s_q, shuffle):
    w = Workload("t", lens, s_q)
    t = build_tensors(w, "cpu", seed=sum(lens) + s_q, shuffle_pages=shuffle)
    ref_o, ref_lse = mla_decode_reference(t)
    o, lse = naive(t)
    assert relative_error(ref_o, o.float()) < 1e-5
    assert relative_error(ref_lse, lse.float()) < 1e-6


def test_relative_error_is_inf_for_nan():
    a = torch.ones(3)
    assert relative_error(torch.tensor([1.0, float("nan"), 1.0]), a) == float("inf")
    assert relative_error(a, a) == 0.0
