"""Merge placement by simulated time (schedule/placement.py): the makespan scheduler's last pass."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlaprof import format as fmt
from mlaprof.schedule import make_schedule
from mlaprof.schedule.encode import encode, validate
from mlaprof.schedule.placement import _simulated_times, place_merges
from mlaprof.schedule.plan import ScheduleError
from mlaprof.sim import simulate
from mlaprof.workloads import NAMED, Workload

P, R = fmt.Opcode.PARTIAL, fmt.Opcode.REDUCTION


def _check_placed(before, after):
    """The same tasks on the same partial queues, every merge once, partials first, predicted = simulated,
    and no later end than the plan it came from."""
    tasks = after.tasks
    assert [(t.op, t.seq, t.q_start, t.kv_start, t.kv_end, t.inputs, t.steal) for t in tasks] == \
        [(t.op, t.seq, t.q_start, t.kv_start, t.kv_end, t.inputs, t.steal) for t in before.tasks]
    assert sorted(i for q in after.queues for i in q) == list(range(len(tasks)))
    for sm, (q0, q1) in enumerate(zip(before.queues, after.queues)):
        assert [i for i in q1 if tasks[i].op is P] == [i for i in q0 if tasks[i].op is P]
        ops = [tasks[i].op for i in q1]
        assert ops == sorted(ops, key=lambda op: op is R), f"SM {sm}: a merge before a partial"
        assert all(tasks[i].sm == sm for i in q1)
    validate(after)  # acyclic, and no SM waits on a task queued after it on itself
    _, simulated = _simulated_times(after, None)
    assert after.predicted_makespan_us == pytest.approx(simulated)
    assert simulated < _simulated_times(before, None)[1]


@pytest.mark.parametrize("name", ["seed-representative", "b64-rand256to1024-q4"])
def test_makespan_places_merges_by_simulated_time(name):
    plan = make_schedule(NAMED[name], 132, "makespan", placement="plan")
    placed = make_schedule(NAMED[name], 132, "makespan")
    assert placed.params["placed_merges"] > 0 and "simulated" in placed.params["placement"]
    _check_placed(plan, placed)


def test_the_last_ready_merges_get_sms_of_their_own():
    """seed-representative: the long sequence's merges are ready last (its 101 partials end together) and
    decide the makespan; as planned, four of them queue behind a merge of another sequence."""
    def behind_another(s):
        last_seq = max((t for t in s.tasks if t.op is P), key=lambda t: t.est_end_us).seq
        n = 0
        for q in s.queues:
            merges = [s.tasks[i] for i in q if s.tasks[i].op is R]
            n += sum(1 for k, t in enumerate(merges) if t.seq == last_seq and k > 0)
        return n

    plan = make_schedule(NAMED["seed-representative"], 132, "makespan", placement="plan")
    placed = make_schedule(NAMED["seed-representative"], 132, "makespan")
    assert behind_another(plan) > 0 and behind_another(placed) == 0


def test_static_and_reduction_trees_are_left_as_planned():
    w = NAMED["seed-representative"]
    assert "placement" not in make_schedule(w, 132, "static").params
    tree = make_schedule(w, 132, "makespan", merges="tree", placement="plan")
    assert any(tree.tasks[j].op is R for t in tree.tasks for j in t.inputs)
    assert place_merges(tree) is tree
    with pytest.raises(ScheduleError, match="unknown merge placement"):
        make_schedule(w, 132, "makespan", placement="later")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])  # ~1 in 10 is placed anew
@given(lens=st.lists(st.integers(1, 40_000), min_size=1, max_size=12), s_q=st.integers(1, 4),
       num_sms=st.integers(1, 160), steal=st.booleans())
def test_any_placement_is_valid_and_ends_sooner(lens, s_q, num_sms, steal):
    w = Workload("hyp", tuple(max(n, s_q) for n in lens), s_q)
    plan = make_schedule(w, num_sms, "makespan", steal=steal, placement="plan")
    placed = place_merges(plan)
    if placed is not plan:
        _check_placed(plan, placed)
        simulate(encode(placed))  # runs to the end: no SM waits forever


def test_cli_placement_flag(capsys):
    from mlaprof.cli.main import main

    assert main(["schedule", "-w", "seed-representative", "-s", "makespan"]) == 0
    assert "placed_merges=" in capsys.readouterr().out
    assert main(["schedule", "-w", "seed-representative", "-s", "makespan", "--placement", "plan"]) == 0
    assert "placed_merges=" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["schedule", "-w", "seed-representative", "--placement", "soon"])
