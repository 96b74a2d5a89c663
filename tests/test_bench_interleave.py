"""The bench's interleaved timer stops at the first failed launch (CPU: graphs and timers replaced by fakes)."""

from __future__ import annotations

import pytest

from mlaprof import bench
from mlaprof.kernel import KernelError


@pytest.fixture
def fake_gpu(monkeypatch):
    replays = []
    monkeypatch.setattr(bench, "_capture", lambda fn: fn)
    monkeypatch.setattr(bench, "_replay_us", lambda graph, cover=False: replays.append(graph) or (2.0 if cover else 1.0))
    return replays


def test_rounds_rotate_and_time_every_variant(fake_gpu):
    fns = [lambda: None, lambda: None, lambda: None]
    us = bench._interleaved_graph_us(fns, replays=40, checks=[lambda: None] * 3)
    assert us == [(1.0, 2.0)] * 3  # (uncovered, covered) medians
    per_round = 40 // bench.INTERLEAVE_ROUNDS
    assert len(fake_gpu) == 3 * 2 * 40 and all(fake_gpu.count(f) == 2 * 40 for f in fns)
    # round r starts with variant r mod 3
    firsts = [fake_gpu[r * 3 * 2 * per_round] for r in range(bench.INTERLEAVE_ROUNDS)]
    assert firsts == [fns[r % 3] for r in range(bench.INTERLEAVE_ROUNDS)]


def test_a_failed_launch_stops_the_timing_at_its_batch(fake_gpu):
    """A launch that fails leaves semaphores set and every later replay waits out the kernel's bound: the
    timer must raise the kernel's error after that variant's batch, not replay on for minutes."""
    calls = {"n": 0}

    def failing_check():
        calls["n"] += 1
        if calls["n"] == 3:  # after the warm-up and two batches
            raise KernelError("semaphore wait timed out (SM 3, instruction 2, semaphore 7)")

    fns = [lambda: None, lambda: None]
    with pytest.raises(KernelError, match="semaphore wait timed out"):
        bench._interleaved_graph_us(fns, replays=200, checks=[lambda: None, failing_check])
    per_round = 200 // bench.INTERLEAVE_ROUNDS
    assert len(fake_gpu) <= 2 * 4 * per_round  # two rounds of two variants at most, not 2 x 200
