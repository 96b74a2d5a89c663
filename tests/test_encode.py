"""The instruction tensor the kernel reads: layout, slots, semaphores, files, and refusals."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlaprof import format as fmt
from mlaprof.schedule import make_schedule
from mlaprof.schedule.encode import EncodeError, counts_of, encode, load, save
from mlaprof.schedule.static import static_schedule
from mlaprof.schedule.tasks import Schedule, Task
from mlaprof.workloads import NAMED, Workload

W = fmt.Word
P, R = fmt.Opcode.PARTIAL, fmt.Opcode.REDUCTION


def tiny_schedule() -> Schedule:
    """seq 0 (200 tokens) in 3 partials merged on SM 1; seq 1 whole on SM 0."""
    w = Workload("tiny", (200, 50), 2)
    tasks = [
        Task(0, P, 0, 0, 2, 0, 64, sm=0, est_start_us=0, est_end_us=1),
        Task(1, P, 0, 0, 2, 64, 128, sm=1, est_start_us=0, est_end_us=1),
        Task(2, P, 0, 0, 2, 128, 200, sm=2, est_start_us=0, est_end_us=1),
        Task(3, R, 0, 0, 2, 0, 200, inputs=(0, 1, 2), final=True, sm=1, est_start_us=2, est_end_us=3),
        Task(4, P, 1, 0, 2, 0, 50, final=True, sm=0, est_start_us=1, est_end_us=2),
    ]
    return Schedule(w, 3, tasks, [[0, 4], [1, 3], [2]], "hand")


def test_layout_of_every_word():
    enc = encode(tiny_schedule())
    ins = enc.instructions
    assert ins.dtype == np.int32 and ins.shape == (3, 3, fmt.WORDS_PER_INSTRUCTION)
    # an all-zero END row after each SM's last instruction
    assert not ins[0, 2].any() and not ins[1, 2].any() and not ins[2, 1].any() and not ins[2, 2].any()
    r = ins[1, 1]  # the reduction
    assert r[W.OPCODE] == R and r[W.TASK] == 3 and r[W.SEQ] == 0
    assert (r[W.Q_START], r[W.Q_COUNT], r[W.KV_START], r[W.KV_END]) == (0, 2, 0, 200)
    assert r[W.OUT_SLOT] == fmt.NO_SLOT and r[W.SIGNAL_SEM] == fmt.NO_SEM and r[W.NUM_INPUTS] == 3
    slots = [ins[0, 0, W.OUT_SLOT], ins[1, 0, W.OUT_SLOT], ins[2, 0, W.OUT_SLOT]]
    sems = [ins[0, 0, W.SIGNAL_SEM], ins[1, 0, W.SIGNAL_SEM], ins[2, 0, W.SIGNAL_SEM]]
    assert list(r[W.INPUT_SLOTS : W.INPUT_SLOTS + 3]) == slots and len(set(slots)) == 3
    assert list(r[W.INPUT_SEMS : W.INPUT_SEMS + 3]) == sems and sorted(sems) == [0, 1, 2]
    # each partial has one reader; a final task releases nothing
    assert [ins[0, 0, W.SIGNAL_COUNT], ins[1, 0, W.SIGNAL_COUNT], ins[2, 0, W.SIGNAL_COUNT]] == [1, 1, 1]
    assert r[W.SIGNAL_COUNT] == 0
    assert not r[W.INPUT_SLOTS + 3 : W.INPUT_SLOTS + fmt.MAX_FANIN].any()
    assert not r[W.INPUT_SEMS + 3 : W.INPUT_SEMS + fmt.MAX_FANIN].any() and not r[W.RESERVED]
    assert (r[W.COL_START], r[W.COL_COUNT], r[W.INPUT_LAYOUT], r[W.COUNTER_READERS]) == (0, fmt.HEAD_DIM_V, 0, 0)
    whole = ins[0, 1]
    assert whole[W.OPCODE] == P and whole[W.TASK] == 4 and whole[W.OUT_SLOT] == -1 and whole[W.SIGNAL_SEM] == -1
    assert whole[W.NUM_INPUTS] == 0 and not whole[W.INPUT_SLOTS :].any()  # SIGNAL_COUNT 0 included
    assert (enc.num_slots, enc.num_sems) == (3, 3) == counts_of(ins)


def slot_reuse_is_safe(ins: np.ndarray) -> None:
    """The reuse rule, read off the tensor alone: two writers of one slot are ordered by dependencies so that
    the later one depends on every reader of the earlier one; no reduction writes a slot it reads."""
    rows = ins.reshape(-1, fmt.WORDS_PER_INSTRUCTION)
    rows = rows[rows[:, W.OPCODE] != fmt.Opcode.END]
    task_of_sem = {int(r[W.SIGNAL_SEM]): int(r[W.TASK]) for r in rows if r[W.SIGNAL_SEM] >= 0}
    slot_of = {int(r[W.TASK]): int(r[W.OUT_SLOT]) for r in rows}
    adders: dict[int, list[int]] = {}  # counter semaphore -> the tasks that add to it
    for r in rows:
        if r[W.SIGNAL_COUNT] == fmt.SIGNAL_ADD:
            adders.setdefault(int(r[W.SIGNAL_SEM]), []).append(int(r[W.TASK]))
    counted = {int(r[W.TASK]) for r in rows if r[W.INPUT_LAYOUT] == fmt.InputLayout.COUNTED}
    inputs, read_slots = {}, {}
    for r in rows:
        t, n = int(r[W.TASK]), int(r[W.NUM_INPUTS])
        if t in counted:  # contiguous slots, one counter: its inputs are whoever adds to it, slot order = input order
            first = int(r[W.INPUT_SLOTS])
            inputs[t] = sorted(adders[int(r[W.INPUT_SEMS])], key=slot_of.get)
            read_slots[t] = list(range(first, first + n))
            assert [slot_of[i] for i in inputs[t]] == read_slots[t]
        else:
            inputs[t] = [task_of_sem[int(s)] for s in r[W.INPUT_SEMS : W.INPUT_SEMS + n]]
            read_slots[t] = r[W.INPUT_SLOTS : W.INPUT_SLOTS + n].tolist()
    readers = {t: [] for t in inputs}
    for t, ins_ in inputs.items():
        for i in ins_:
            readers[i].append(t)
    # a writer releases as many counts as it has readers (0 = final, no semaphore); one read by counted
    # merges adds 1 to their counter, which says how many read it
    for r in rows:
        t = int(r[W.TASK])
        if r[W.SIGNAL_COUNT] == fmt.SIGNAL_ADD:
            assert readers[t] and all(x in counted for x in readers[t])
            assert all(int(rows[rows[:, W.TASK] == x][0, W.COUNTER_READERS]) == len(readers[t]) for x in readers[t])
            continue
        assert int(r[W.SIGNAL_COUNT]) == len(readers[t])
        assert (r[W.SIGNAL_SEM] >= 0) == (r[W.SIGNAL_COUNT] > 0)
    anc = {}

    def ancestors(t):
        if t not in anc:
            out = set()
            for i in inputs[t]:
                out |= ancestors(i) | {i}
            anc[t] = out
        return anc[t]

    writers = {}
    for r in rows:
        t, slot = int(r[W.TASK]), int(r[W.OUT_SLOT])
        if slot >= 0:
            writers.setdefault(slot, []).append(t)
        assert slot not in set(read_slots[t]), f"task {t} writes slot {slot} that it reads"
        # an input's slot holds that input's result
        for i, s in zip(inputs[t], read_slots[t]):
            assert slot_of[i] == int(s)
    for slot, ws in writers.items():
        for a in ws:
            for b in ws:
                if a < b:
                    assert set(readers[a]) <= ancestors(b) or set(readers[b]) <= ancestors(a), \
                        f"slot {slot}: tasks {a} and {b} may be live at once"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lens=st.lists(st.integers(1, 60000), min_size=1, max_size=40), s_q=st.integers(1, 4),
       num_sms=st.integers(1, 200), scheduler=st.sampled_from(["static", "makespan"]),
       per_token=st.sampled_from([None, True, False]))
def test_slots_never_collide_while_live(lens, s_q, num_sms, scheduler, per_token):
    """Over random workloads, with whole and per-token reductions (several readers per result)."""
    w = Workload("hyp", tuple(max(n, s_q) for n in lens), s_q)
    s = static_schedule(w, num_sms, per_token=per_token) if scheduler == "static" and per_token is not None \
        else make_schedule(w, num_sms, scheduler)
    enc = encode(s)
    slot_reuse_is_safe(enc.instructions)
    # one semaphore per scratch result, except that the inputs of one counted group share their counter; and
    # one tile counter per steal group
    groups = {tuple(t.inputs) for t in enc.schedule.tasks if t.counted}
    shared = sum(len(g) for g in groups)
    steal = {t.steal for t in enc.schedule.tasks if t.steal >= 0}
    assert enc.num_sems == sum(not t.final for t in enc.schedule.tasks) - shared + len(groups) + len(steal)


def per_token_schedule() -> Schedule:
    """seq 0 (s_q 2) in 3 partials; two per-token reductions (token 0 on SM 1, token 1 on SM 2) read all
    three; then a partial of seq 1 on SM 2 split in two and merged per token: its scratch may reuse a slot
    only after both per-token readers of the slot's previous occupant."""
    w = Workload("pt", (200, 300), 2)
    tasks = [
        Task(0, P, 0, 0, 2, 0, 64, sm=0, est_start_us=0, est_end_us=1),
        Task(1, P, 0, 0, 2, 64, 128, sm=1, est_start_us=0, est_end_us=1),
        Task(2, P, 0, 0, 2, 128, 200, sm=2, est_start_us=0, est_end_us=1),
        Task(3, R, 0, 0, 1, 0, 200, inputs=(0, 1, 2), final=True, sm=1, est_start_us=2, est_end_us=3),
        Task(4, R, 0, 1, 1, 0, 200, inputs=(0, 1, 2), final=True, sm=2, est_start_us=2, est_end_us=3),
        Task(5, P, 1, 0, 2, 0, 160, sm=0, est_start_us=1, est_end_us=4),
        Task(6, P, 1, 0, 2, 160, 300, sm=2, est_start_us=3, est_end_us=5),
        Task(7, R, 1, 0, 1, 0, 300, inputs=(5, 6), final=True, sm=0, est_start_us=5, est_end_us=6),
        Task(8, R, 1, 1, 1, 0, 300, inputs=(5, 6), final=True, sm=1, est_start_us=5, est_end_us=6),
    ]
    return Schedule(w, 3, tasks, [[0, 5, 7], [1, 3, 8], [2, 4, 6]], "hand")


def test_per_token_reductions_share_their_inputs():
    enc = encode(per_token_schedule())
    ins = enc.instructions
    by_task = {int(r[W.TASK]): r for r in ins.reshape(-1, fmt.WORDS_PER_INSTRUCTION) if r[W.OPCODE]}
    for p in (0, 1, 2, 5, 6):  # every partial is read by both per-token reductions of its sequence
        assert by_task[p][W.SIGNAL_COUNT] == 2 and by_task[p][W.SIGNAL_SEM] >= 0
    for r, q in ((3, 0), (4, 1), (7, 0), (8, 1)):
        assert (by_task[r][W.Q_START], by_task[r][W.Q_COUNT], by_task[r][W.SIGNAL_COUNT]) == (q, 1, 0)
    assert list(by_task[3][W.INPUT_SEMS : W.INPUT_SEMS + 3]) == list(by_task[4][W.INPUT_SEMS : W.INPUT_SEMS + 3])
    slot_reuse_is_safe(ins)
    # task 6 depends on neither reader of seq 0's partials, so it cannot take their slots
    assert by_task[6][W.OUT_SLOT] not in {by_task[p][W.OUT_SLOT] for p in (0, 1, 2)}


def test_reductions_recycle_slots():
    enc = encode(make_schedule(NAMED["b1-65536-q1"], 132, "static", merges="tree"))
    scratch_writers = sum(not t.final for t in enc.schedule.tasks)
    assert enc.num_slots < scratch_writers  # upper tree levels reuse the slots of merged leaves
    slot_reuse_is_safe(enc.instructions)


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_save_load_round_trip(tmp_path, suffix):
    s = make_schedule(NAMED["seed-representative"], 132, "makespan")
    enc = encode(s)
    path = save(enc, tmp_path / f"plan{suffix}")
    back = load(path)
    assert np.array_equal(back.instructions, enc.instructions) and back.instructions.dtype == np.int32
    assert (back.num_slots, back.num_sems) == (enc.num_slots, enc.num_sems)
    if suffix == ".npz":
        assert back.schedule.to_json() == s.to_json() and back.schedule.queues == s.queues
        assert back.schedule.workload == s.workload and back.schedule.scheduler == "makespan"
        assert np.array_equal(encode(back.schedule).instructions, enc.instructions)
    else:
        assert back.schedule is None


def test_bad_files(tmp_path):
    with pytest.raises(EncodeError, match="no such"):
        load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not numpy at all")
    with pytest.raises(EncodeError, match="not a .npy/.npz"):
        load(bad)
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 3), np.int32))
    with pytest.raises(EncodeError, match="expected int32"):
        load(wrong)
    with pytest.raises(EncodeError, match=".npy"):
        save(encode(tiny_schedule()), tmp_path / "plan.txt")


def edit(s: Schedule, tid: int, **kw) -> Schedule:
    s.tasks[tid] = dataclasses.replace(s.tasks[tid], **kw)
    return s


def test_refusals():
    with pytest.raises(EncodeError, match="fan-in 7"):
        s = tiny_schedule()
        extra = [Task(5 + i, P, 0, 0, 2, 0, 10, sm=2) for i in range(4)]
        s.tasks += extra
        s.queues[2] += [t.id for t in extra]
        encode(edit(s, 3, inputs=(0, 1, 2, 5, 6, 7, 8)))
    with pytest.raises(EncodeError, match="input 9 is not a task"):
        encode(edit(tiny_schedule(), 3, inputs=(0, 1, 9)))
    with pytest.raises(EncodeError, match="must cover the reduction's q range"):
        encode(edit(tiny_schedule(), 1, q_start=1, q_count=1))
    with pytest.raises(EncodeError, match="listed twice"):
        encode(edit(tiny_schedule(), 3, inputs=(0, 1, 1)))
    with pytest.raises(EncodeError, match="writes the final output"):
        encode(edit(tiny_schedule(), 2, final=True))
    with pytest.raises(EncodeError, match="no reduction reads"):
        s = tiny_schedule()
        s.tasks.append(Task(5, P, 1, 0, 2, 0, 10, sm=2))
        s.queues[2].append(5)
        encode(s)
    with pytest.raises(EncodeError, match="cycle"):
        s = tiny_schedule()
        s.tasks[0] = dataclasses.replace(s.tasks[0], op=R, inputs=(3,))
        s.tasks[3] = dataclasses.replace(s.tasks[3], final=False)
        encode(s)
    with pytest.raises(EncodeError, match="on no SM's queue"):
        s = tiny_schedule()
        s.queues[2] = []
        encode(s)
    with pytest.raises(EncodeError, match="queued twice"):
        s = tiny_schedule()
        s.queues[2].append(0)
        encode(s)
    with pytest.raises(EncodeError, match="KV range"):
        encode(edit(tiny_schedule(), 4, kv_end=51))
