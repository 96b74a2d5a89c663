"""The host never blocks forever on a stuck launch: wait_for_gpu polls with a deadline (CPU: fake events)."""

from __future__ import annotations

import time

import pytest

from mlaprof.errors import UserError
from mlaprof.kernel import KernelError, KernelHang, wait_for_gpu


class FakeEvent:
    def __init__(self, done_after: int | None):
        self.polls, self.done_after = 0, done_after

    def query(self) -> bool:
        self.polls += 1
        return self.done_after is not None and self.polls > self.done_after


def test_returns_once_the_event_completes():
    ev = FakeEvent(done_after=3)
    wait_for_gpu(ev, "x", timeout_s=5)
    assert ev.polls == 4


def test_a_stuck_event_raises_a_clear_error_in_time():
    t0 = time.monotonic()
    with pytest.raises(KernelHang, match="did not finish within 0.2 s.*kernel bug"):
        wait_for_gpu(FakeEvent(done_after=None), "a CUDA-graph replay", timeout_s=0.2)
    assert time.monotonic() - t0 < 2


def test_a_hang_is_a_user_facing_error_but_not_a_kernel_error():
    # the bench catches KernelError per entry and goes on; after a hang nothing may go on
    assert issubclass(KernelHang, UserError) and not issubclass(KernelHang, KernelError)
