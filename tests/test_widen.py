"""Flattening reduction trees into column-block merges over counted inputs (schedule/widen.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlaprof import format as fmt
from mlaprof.costmodel import default
from mlaprof.schedule import make_schedule
from mlaprof.schedule.encode import EncodeError, encode
from mlaprof.schedule.tasks import Schedule, Task
from mlaprof.schedule.widen import WidenError, widen_merges
from mlaprof.sim import simulate
from mlaprof.workloads import NAMED, Workload
from tests.test_encode import slot_reuse_is_safe
from tests.test_schedule import check_schedule

P, R = fmt.Opcode.PARTIAL, fmt.Opcode.REDUCTION


def depth(tasks, tid) -> int:
    t = tasks[tid]
    return 0 if t.op == P or t.counted else 1 + max(depth(tasks, i) for i in t.inputs)


@pytest.mark.parametrize("scheduler", ["static", "makespan"])
@pytest.mark.parametrize("name", ["seed-representative", "b1-65536-q1"])
def test_deep_trees_become_one_level_of_column_blocks(name, scheduler):
    w = NAMED[name]
    tree = make_schedule(w, 132, scheduler, merges="tree", steal=False)  # as planned: predicted = simulated
    wide = make_schedule(w, 132, scheduler, merges="wide", steal=False)
    check_schedule(wide, w, 132)
    assert max(depth(tree.tasks, t.id) for t in tree.tasks if t.final) >= 2
    # the longest sequence's trees at least (trees the model does not expect to end sooner stay)
    longest = max(range(w.batch), key=lambda i: w.lens[i])
    assert all(depth(wide.tasks, t.id) <= 1 for t in wide.tasks if t.final and t.seq == longest)
    counted = [t for t in wide.tasks if t.counted]
    block = wide.params["col_block"]
    assert counted and {t.col_count for t in counted} == {block}
    # the block width the model predicts ends soonest, and sooner than the trees
    others = [widen_merges(tree, col_block=b) for b in fmt.COUNTED_COL_BLOCKS]
    best = min(o.predicted_makespan_us for o in others)
    # (makespan may keep static's flattened plan instead, when that is predicted to end sooner still)
    assert (wide.predicted_makespan_us == best if wide.params.get("shape") != "static" else
            wide.predicted_makespan_us <= best) and best < tree.predicted_makespan_us
    # one merge per (sequence, query token, block), each reading every partial of its sequence, in KV order
    for t in counted:
        parts = sorted((x for x in wide.tasks if x.op == P and x.seq == t.seq), key=lambda x: x.kv_start)
        assert list(t.inputs) == [x.id for x in parts]
    # nothing waits on a counted merge, and every one sits after all partials of its SM
    for q in wide.queues:
        kinds = [wide.tasks[i].counted for i in q]
        assert kinds == sorted(kinds)
    # the simulator runs it (no deadlock; counters complete) and the prediction is what it plans
    sim_us = simulate(encode(wide)).makespan_ns / 1e3
    assert sim_us < simulate(encode(tree)).makespan_ns / 1e3
    assert sim_us == pytest.approx(wide.predicted_makespan_us, abs=2e-3)  # widen times merges as the simulator does


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lens=st.lists(st.integers(1, 120_000), min_size=1, max_size=8), s_q=st.integers(1, 4),
       num_sms=st.integers(1, 200), scheduler=st.sampled_from(["static", "makespan"]),
       col_block=st.sampled_from([None, *fmt.COUNTED_COL_BLOCKS]), min_depth=st.integers(1, 3))
def test_any_flattening_is_a_valid_schedule(lens, s_q, num_sms, scheduler, col_block, min_depth):
    w = Workload("hyp", tuple(max(n, s_q) for n in lens), s_q)
    s = widen_merges(make_schedule(w, num_sms, scheduler, merges="tree"), col_block=col_block, min_depth=min_depth)
    check_schedule(s, w, num_sms)
    enc = encode(s)
    slot_reuse_is_safe(enc.instructions)
    simulate(enc)  # raises on a deadlock or a counter that never completes


def test_trees_stay_where_one_level_would_not_end_sooner():
    slow = dataclasses.replace(default(), counted_base_ns=1e6)  # a counted merge of a millisecond
    w = NAMED["b1-65536-q1"]
    tree = make_schedule(w, 132, "static", slow, merges="tree")
    assert widen_merges(tree, slow) is tree
    assert make_schedule(w, 132, "static", slow, merges="wide").to_json() == tree.to_json()


def test_refusals():
    s = make_schedule(NAMED["b1-65536-q1"], 132, "static", merges="tree")
    with pytest.raises(WidenError, match="column block 24"):
        widen_merges(s, col_block=24)
    with pytest.raises(WidenError, match="min_depth"):
        widen_merges(s, min_depth=0)
    with pytest.raises(Exception, match="unknown merge layout"):
        make_schedule(NAMED["b1-65536-q1"], 132, "static", merges="flat")


def test_encoder_refuses_what_the_kernel_cannot_run():
    w = Workload("t", (300,), 2)
    base = [Task(0, P, 0, 0, 2, 0, 128, sm=0), Task(1, P, 0, 0, 2, 128, 300, sm=1)]

    def schedule(*reds):
        tasks = base + [dataclasses.replace(r, id=2 + k) for k, r in enumerate(reds)]
        queues = [[0], [1]]
        for t in tasks[2:]:
            queues[t.sm].append(t.id)
        return Schedule(w, 2, tasks, queues, "hand")

    ok = [Task(0, R, 0, q, 1, 0, 300, inputs=(0, 1), final=True, sm=q % 2, col_start=c, col_count=256 // 2)
          for q in range(2) for c in (0, 128, 256, 384)]
    enc = encode(schedule(*ok))
    rows = enc.instructions.reshape(-1, fmt.WORDS_PER_INSTRUCTION)
    counted = rows[rows[:, fmt.Word.INPUT_LAYOUT] == fmt.InputLayout.COUNTED]
    assert len(counted) == 8 and (counted[:, fmt.Word.COUNTER_READERS] == 8).all()
    assert (rows[rows[:, fmt.Word.OPCODE] == P][:, fmt.Word.SIGNAL_COUNT] == fmt.SIGNAL_ADD).all()
    assert enc.num_sems == 1 and enc.num_slots == 2
    with pytest.raises(EncodeError, match="column block"):
        encode(schedule(dataclasses.replace(ok[0], col_count=48)))
    with pytest.raises(EncodeError, match="one query token"):
        encode(schedule(dataclasses.replace(ok[0], q_count=2)))
    listed = Task(0, R, 0, 1, 1, 0, 300, inputs=(0, 1), final=True, sm=1)
    with pytest.raises(EncodeError, match="same inputs"):
        encode(schedule(ok[0], listed))
    assert np.all(enc.instructions[..., fmt.Word.RESERVED] == 0)
