"""The benchmark's interleaved timing (mlaprof.bench): one median per variant, in the variants' order."""

import pytest

torch = pytest.importorskip("torch")

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_interleaved_medians_follow_the_work():
    from mlaprof.bench import _interleaved_graph_us

    a = torch.randn(2048, 2048, device="cuda")
    out = torch.empty_like(a)

    def small():
        torch.matmul(a[:256], a, out=out[:256])

    def large():
        torch.matmul(a, a, out=out)

    times = _interleaved_graph_us([large, small, large], replays=40)
    assert len(times) == 3
    for k in (0, 1):  # uncovered and covered (GPU only) medians
        us = [t[k] for t in times]
        assert all(x > 0 for x in us)
        assert us[0] > us[1] and us[2] > us[1]  # 8x the rows costs more, whatever position it is timed in
        assert us[0] == pytest.approx(us[2], rel=0.25)  # the same work measures alike in either slot
    # covering the host's launch call can only take time away
    assert all(t[1] <= t[0] * 1.05 for t in times)
