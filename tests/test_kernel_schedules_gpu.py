"""The megakernel running real schedules (both schedulers, named and random workloads, several SM counts)."""

import pytest

torch = pytest.importorskip("torch")

from mlaprof.correctness import Case, check, default_cases, random_workloads  # noqa: E402
from mlaprof.workloads import NAMED  # noqa: E402

needs_gpu = pytest.mark.skipif(
    not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] != 9, reason="needs an sm_90 GPU"
)


def _sms():
    return torch.cuda.get_device_properties(0).multi_processor_count


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("scheduler", ["static", "makespan"])
@pytest.mark.parametrize("name", list(NAMED))
def test_named_workloads(name, scheduler):
    r = check(Case(NAMED[name], scheduler, _sms(), True, 0), compare_timing=(name == "seed-representative"))
    assert r.ok, r


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("scheduler", ["static", "makespan"])
@pytest.mark.parametrize("name", ["seed-representative", "b1-65536-q1"])
def test_named_workloads_with_reduction_trees(name, scheduler):
    r = check(Case(NAMED[name], scheduler, _sms(), True, 0, "tree"), compare_timing=True)
    assert r.ok, r


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("i", range(8))
def test_random_workloads(i):
    w = random_workloads(8, seed=99)[i]
    r = check(Case(w, ("static", "makespan")[i % 2], [1, 5, 33, _sms()][i % 4], i % 2 == 0, 7 + i))
    assert r.ok, r


def test_default_cases_cover_the_spec():
    cases = default_cases(132)
    assert {c.scheduler for c in cases} == {"static", "makespan"}
    assert {c.workload.name for c in cases} >= set(NAMED)
    assert {c.shuffled for c in cases} == {True, False}
    lens = [n for c in cases for n in c.workload.lens]
    assert min(lens) <= 4 and max(lens) == 131072
    assert {c.workload.s_q for c in cases} == {1, 2, 3, 4}
