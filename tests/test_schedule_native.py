"""The schedulers' native core (mlaprof/schedule/native) against the Python planners it mirrors: the same
schedules, bit for bit (tasks, predicted times, queues, params), on the golden cases, on random workloads,
SM counts and cost models; and how it is built, cached and done without."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlaprof import format as fmt
from mlaprof.costmodel import CostModel, default
from mlaprof.schedule import make_schedule, native
from mlaprof.schedule.native import calls
from mlaprof.schedule.makespan import makespan_schedule
from mlaprof.schedule.static import static_schedule
from mlaprof.workloads import NAMED, Workload
from tests.test_schedule import check_schedule, workloads
from tests.test_schedule_speed_equivalence import _cost, cases

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(native.library() is None, reason="the native core could not be built here")


@pytest.fixture(autouse=True)
def no_fallback(monkeypatch):
    """The core plans every schedule asked of it here: where it gives up (an edge it leaves to Python, or a
    slip such as an array read before it is written), the result would still match, from Python, so the
    comparisons alone would not notice."""
    gave_up = []
    real = calls._call

    def call(name, workload, num_sms, *args):
        out = real(name, workload, num_sms, *args)
        if out is None:
            gave_up.append((name, workload.lens[:4], num_sms))
        return out

    monkeypatch.setattr(calls, "_call", call)
    yield
    assert not gave_up, f"the native core gave up on {gave_up[:3]}"


def both(plan):
    """``plan()`` with the native core, then in Python."""
    got = plan()
    with native.python_only():
        want = plan()
    return got, want


def assert_same(got, want) -> None:
    assert got.tasks == want.tasks  # every field, the predicted times compared exactly
    assert got.queues == want.queues
    assert got.params == want.params
    assert got.predicted_makespan_us == want.predicted_makespan_us
    assert [type(v) for v in vars(got.tasks[0]).values()] == [type(v) for v in vars(want.tasks[0]).values()]


@pytest.mark.parametrize("cid,w,sms,sched,cost", cases(), ids=[c[0] for c in cases()])
def test_golden_cases_match_python(cid, w, sms, sched, cost):
    assert_same(*both(lambda: make_schedule(w, sms, sched, _cost(cost))))


@pytest.mark.parametrize("name", list(NAMED))
@pytest.mark.parametrize("num_sms", [1, 2, 7, 132, 200])
@pytest.mark.parametrize("per_token", [None, False, True])
def test_named_workloads_match_python(name, num_sms, per_token):
    w = NAMED[name]
    assert_same(*both(lambda: static_schedule(w, num_sms, per_token=per_token)))
    assert_same(*both(lambda: makespan_schedule(w, num_sms, per_token=per_token)))


def cost_models():
    """The packaged and uncalibrated models, and random ones around the packaged model (any constant scaled
    by 0 to 3, row granules of 16 to 128): the C formulas must follow every constant."""
    fields = [f.name for f in dataclasses.fields(CostModel) if f.name != "row_granule"]
    scaled = st.fixed_dictionaries({n: st.one_of(st.just(1.0), st.just(0.0), st.floats(0.0, 3.0)) for n in fields})

    def build(scales, granule):
        base = default()
        return dataclasses.replace(base, row_granule=granule,
                                   **{n: getattr(base, n) * s for n, s in scales.items()})

    return st.one_of(st.just(default()), st.just(CostModel()),
                     st.builds(build, scaled, st.sampled_from([16, 32, 64, 128])))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(w=workloads(max_total=2_000_000), num_sms=st.integers(1, 200), cost=cost_models(),
       per_token=st.sampled_from([None, False, True]), fanin=st.integers(2, 6))
def test_random_workloads_match_python(w, num_sms, cost, per_token, fanin):
    assert_same(*both(lambda: static_schedule(w, num_sms, cost, fanin=fanin, per_token=per_token)))
    assert_same(*both(lambda: makespan_schedule(w, num_sms, cost, per_token=per_token)))


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(s_q=st.integers(1, 4), lens=st.lists(st.integers(4, 300), min_size=1, max_size=12),
       num_sms=st.integers(1, 200))
def test_short_sequences_match_python(s_q, lens, num_sms):
    """Sequences of a few tiles on many SMs: empty filler leaves, merges of one input, whole sequences."""
    w = Workload("short", tuple(lens), s_q)
    assert_same(*both(lambda: make_schedule(w, num_sms, "static")))
    assert_same(*both(lambda: make_schedule(w, num_sms, "makespan")))


def test_python_planner_where_the_core_cannot_plan():
    class Scaled(CostModel):  # a model whose spans the C formulas do not know
        def partial_ns(self, tokens, rows, final):
            return 2 * super().partial_ns(tokens, rows, final)

    assert not native.usable(Scaled())
    w = NAMED["seed-representative"]
    s = make_schedule(w, 16, "static", Scaled())
    with native.python_only():
        assert native.library() is None
        assert_same(s, make_schedule(w, 16, "static", Scaled()))
    # per-SM placement stays in Python, and gives what it gave before
    assert_same(*both(lambda: make_schedule(w, 132, "makespan", sm_rates=True)))


def _run(code: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), **env}, timeout=600)


PRINT_SCHEDULES = """
    from mlaprof.schedule import make_schedule, native
    from mlaprof.workloads import NAMED
    w = NAMED["seed-representative"]
    print(native.library() is not None)
    for sched in ("static", "makespan"):
        s = make_schedule(w, 132, sched)
        print(repr(s.tasks), s.queues, s.params)
"""


def test_concurrent_first_builds_share_one_library(tmp_path):
    """Processes that build at once into an empty cache each get a whole library (compiled under a private
    name, renamed into place), and leave one library and no temporary files."""
    env = {"XDG_CACHE_HOME": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(PRINT_SCHEDULES)], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env={**os.environ, "PYTHONPATH": str(REPO), **env}) for _ in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    assert all(o.splitlines()[0] == "True" for o, _ in outs)
    assert len({o for o, _ in outs}) == 1
    files = sorted(p.name for p in (tmp_path / "mlaprof" / "native").iterdir())
    assert len(files) == 1 and files[0].endswith(".so"), files


def test_without_a_compiler_plans_in_python_with_one_warning(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path), "CC": str(tmp_path / "no-such-cc")}
    without = _run(PRINT_SCHEDULES, env)
    assert without.returncode == 0, without.stderr
    assert without.stdout.splitlines()[0] == "False"
    assert len(without.stderr.strip().splitlines()) == 1, without.stderr
    assert "native scheduler core unavailable" in without.stderr
    with_core = _run(PRINT_SCHEDULES, {})
    assert with_core.stdout.splitlines()[1:] == without.stdout.splitlines()[1:]


def test_poisoned_build_matches_python(tmp_path):
    """A build whose uninitialised allocations hold garbage (-DMLP_POISON) plans the same schedules, itself:
    every array the C reads before writing is allocated zero-filled."""
    done = _run("""
        from mlaprof.schedule import make_schedule, native
        from mlaprof.schedule.native import calls
        from mlaprof.workloads import NAMED
        assert native.library() is not None
        plans = []
        real = calls._call
        calls._call = lambda *a: plans.append(real(*a)) or plans[-1]
        for w in NAMED.values():
            for sms in (132, 16, 7):
                for sched in ("static", "makespan"):
                    got = make_schedule(w, sms, sched, merges="tree")
                    with native.python_only():
                        want = make_schedule(w, sms, sched, merges="tree")
                    assert (got.tasks, got.queues, got.params) == (want.tasks, want.queues, want.params), w.name
        assert plans and all(p is not None for p in plans)
        print("same", len(plans))
    """, {"XDG_CACHE_HOME": str(tmp_path), "MLAPROF_NATIVE_CFLAGS": "-DMLP_POISON"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["same", "30"]


def test_turned_off_by_the_environment():
    done = _run("from mlaprof.schedule import native; print(native.library())", {"MLAPROF_NATIVE": "0"})
    assert done.stdout.strip() == "None" and done.stderr == ""


def test_more_filler_leaves_than_sms_skips_the_shape_on_both_paths():
    """Free merges make the backward planner split a one-token sequence into more leaves than there are SMs:
    that shape cannot be placed, and both paths skip it (hypothesis found the Python planner raising and
    the core giving up here)."""
    base = default()
    free = dataclasses.replace(base, reduce_base_ns=0.0, reduce_row_ns=0.0, reduce_byte_ns=0.0,
                               reduce_store_ns=0.0, sem_latency_ns=0.0, row_granule=16)
    for num_sms in (2, 14):
        got, want = both(lambda: makespan_schedule(Workload("hyp", (1,), 1), num_sms, free))
        assert_same(got, want)


@pytest.mark.parametrize("num_sms", [1, 2, 7, 132])
def test_tiles_that_cost_nothing(num_sms):
    """A model whose load and compute constants are all 0 (found by the random test above): the planner
    divides time by a tile's cost, so both mirrors floor it (makespan.MIN_TILE_NS) and still plan every
    tile, where they divided by zero (Python) or gave up (C)."""
    free_tiles = CostModel(setup_ns=194.3, reduce_setup_ns=0.0, load_base_ns=0.0, load_byte_ns=0.0,
                           compute_base_ns=0.0, compute_flop_ns=0.0, compute_short_ns=505.0, reduce_base_ns=1059.6,
                           reduce_row_ns=0.0, reduce_byte_ns=0.005, counted_base_ns=2023.6, counted_round_ns=954.6,
                           counted_line_ns=0.0, store_base_ns=1602.3, store_byte_ns=0.00025, reduce_store_ns=302.8,
                           reduce_fence_ns=0.0, first_load_ns=2005.9, sm_spread=0.112, sem_latency_ns=500.6,
                           steal_claim_ns=1000.0, row_granule=16)
    assert free_tiles.partial_linear(fmt.NUM_HEADS_Q, final=False)[1] == 0.0
    w = Workload("free", (1,) * 108 + (65,), 1)
    got, want = both(lambda: makespan_schedule(w, num_sms, free_tiles))
    assert_same(got, want)
    check_schedule(got, w, num_sms)


def test_merges_that_cost_nothing():
    """Free merges and no semaphore latency (found by the random test above): the lag from a merge's end to
    its leaves' deadline is negative, so a filler's leaf could get a first deadline <= 0. Python then lost
    track of it (KeyError) and the core gave up; a leaf's first reader now records it whatever the value."""
    free_merges = dataclasses.replace(default(), reduce_base_ns=0.0, reduce_row_ns=0.0, reduce_byte_ns=0.0,
                                      reduce_store_ns=0.0, reduce_fence_ns=0.0, sem_latency_ns=0.0, row_granule=16)
    assert free_merges.sem_latency_ns - free_merges.reduce_setup_ns < 0
    lens = (1,) * 11 + (65, 65, 129, 129, 129, 129, 193, 193, 193, 257, 257, 257, 321, 385, 385, 449, 449, 449,
                        513, 513, 513, 513, 513, 577, 577, 705, 705, 897, 897, 1025, 1025, 1089, 1153, 1153, 1217,
                        1281, 1345, 1345, 1473, 1729, 1793, 1793, 1985, 2433, 2817, 4033, 6977, 11521, 21569,
                        66433, 99969, 48769)
    w = Workload("free-merges", lens, 1)
    got, want = both(lambda: makespan_schedule(w, 9, free_merges))
    assert_same(got, want)
    check_schedule(got, w, 9)
