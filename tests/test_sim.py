"""The simulator: spans per the event conventions, the pipeline and semaphore rules, deadlock, traces."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mlaprof import format as fmt
from mlaprof.costmodel import CostModel
from mlaprof.schedule import SCHEDULERS, make_schedule
from mlaprof.schedule.encode import encode
from mlaprof.schedule.tasks import Schedule, Task
from mlaprof.sim import SimulationError, _tile_loop_np, _tile_loop_py, run, simulate
from mlaprof.trace.io import read_trace, write_trace
from mlaprof.trace.schema import KIND_NAMES, OPCODE_NAMES, ROLE_NAMES
from mlaprof.workloads import NAMED, Workload
from tests.test_schedule import workloads

K = fmt.Kind


def frame(trace) -> dict[str, np.ndarray]:
    cols = {c: trace.col(c) for c in ("sm", "instr", "task", "start_ns", "end_ns", "aux", "wait_task", "kv_start", "kv_end")}
    cols["kind"] = trace.codes("kind", KIND_NAMES)
    cols["role"] = trace.codes("role", ROLE_NAMES)
    cols["opcode"] = trace.codes("opcode", OPCODE_NAMES)
    return cols


def test_spans_follow_the_conventions(tmp_path):
    s = make_schedule(NAMED["seed-representative"], 132, "makespan")
    enc = encode(s)
    trace = simulate(enc)
    path = write_trace(tmp_path / "sim.arrow", trace.table, trace.meta)
    back = read_trace(path)  # validates
    m = back.meta
    assert m.source == "simulated" and m.timer_source == "cost-model" and m.sm_count == 132
    assert m.scheduler == "makespan" and m.workload == s.workload.to_json() and m.tasks == s.to_json()
    assert m.run_id and m.created and m.overflow_events == 0
    f = frame(back)
    tasks = {t.id: t for t in s.tasks}
    for tid, t in tasks.items():
        sel = f["task"] == tid
        kinds, roles, aux = f["kind"][sel], f["role"][sel], f["aux"][sel]

        def of(kind):
            return kinds == kind

        assert of(K.INSTRUCTION).sum() == 1 and (roles[of(K.INSTRUCTION)] == fmt.Role.CONTROLLER).all()
        assert of(K.SETUP).sum() == 1 and (roles[of(K.SETUP)] == fmt.Role.CONTROLLER).all()
        assert of(K.STORE).sum() == 1 and (roles[of(K.STORE)] == fmt.Role.CONSUMER).all()
        if t.op == fmt.Opcode.PARTIAL and t.steal >= 0:  # a steal member: the tiles it claimed (checked below)
            assert sorted(aux[of(K.LOAD)]) == sorted(aux[of(K.COMPUTE)]) and of(K.WAIT).sum() == 0
        elif t.op == fmt.Opcode.PARTIAL:
            n = -(-(t.kv_end - t.kv_start) // fmt.KV_TILE_TOKENS)
            assert sorted(aux[of(K.LOAD)]) == list(range(n)) and (roles[of(K.LOAD)] == fmt.Role.PRODUCER).all()
            assert sorted(aux[of(K.COMPUTE)]) == list(range(n)) and (roles[of(K.COMPUTE)] == fmt.Role.CONSUMER).all()
            assert of(K.WAIT).sum() == 0
        else:
            # a reduction: no loads (inputs come from L2 inside its compute), one wait per input, one merge
            assert of(K.LOAD).sum() == 0
            # (a counted merge waits once, on the counter all its inputs add to)
            assert sorted(aux[of(K.WAIT)]) == ([0] if t.counted else list(range(len(t.inputs))))
            waits = sel & (f["kind"] == K.WAIT)
            if t.counted:  # one wait, on the input that finished last
                assert len(f["wait_task"][waits]) == 1 and f["wait_task"][waits][0] in t.inputs
            else:
                assert sorted(f["wait_task"][waits]) == sorted(t.inputs)
            assert of(K.COMPUTE).sum() == 1 and aux[of(K.COMPUTE)][0] == -1
        inst = sel & (f["kind"] == K.INSTRUCTION)
        lo, hi = f["start_ns"][inst][0], f["end_ns"][inst][0]
        # controller and consumer spans lie inside the instruction; the producer may load ahead of it
        inside = sel & (f["role"] != fmt.Role.PRODUCER)
        assert (f["start_ns"][inside] >= lo).all() and (f["end_ns"][inside] <= hi).all()
        consumer = sel & (f["role"] == fmt.Role.CONSUMER)
        assert f["end_ns"][consumer].max() == hi  # the instruction ends with its store
        loads = sel & (f["kind"] == K.LOAD)
        if loads.any():
            assert f["end_ns"][loads].max() <= hi


def test_pipeline_and_semaphore_rules():
    cost = CostModel()
    stages = 3
    w = Workload("t", (3000, 700, 5000, 64), 4)
    s = make_schedule(w, 5, "static")
    f = frame(simulate(encode(s), cost, stages=stages))
    store_end = {int(t): int(e) for t, e, k in zip(f["task"], f["end_ns"], f["kind"]) if k == K.STORE}
    for sm in range(5):
        on = f["sm"] == sm
        loads = np.flatnonzero(on & (f["kind"] == K.LOAD))
        loads = loads[np.argsort(f["start_ns"][loads])]
        # one load at a time (the SM's bandwidth share)
        assert (f["start_ns"][loads][1:] >= f["end_ns"][loads][:-1]).all()
        comps = np.flatnonzero(on & (f["kind"] == K.COMPUTE) & (f["opcode"] == fmt.Opcode.PARTIAL))
        comps = comps[np.argsort(f["start_ns"][comps])]
        assert len(comps) == len(loads)
        # tile i computes after it landed; load i + stages waits for the compute of tile i (its buffer)
        assert (f["start_ns"][comps] >= f["end_ns"][loads]).all()
        assert (f["start_ns"][loads][stages:] >= f["end_ns"][comps][:-stages]).all()
        assert (f["start_ns"][comps][1:] >= f["end_ns"][comps][:-1]).all()
    for i in np.flatnonzero(f["kind"] == K.WAIT):
        assert f["end_ns"][i] >= store_end[int(f["wait_task"][i])] + cost.sem_latency_ns - 1


def test_vector_and_scalar_tile_loops_agree():
    rng = random.Random(0)
    for _ in range(50):
        n = rng.randint(1, 200)
        loads = [rng.uniform(100, 2000) for _ in range(n)]
        comps = [rng.uniform(100, 2000) for _ in range(n)]
        stages = rng.randint(1, 6)
        ring = [rng.uniform(0, 3000) for _ in range(stages)]
        args = (rng.uniform(0, 2000), rng.uniform(0, 2000))
        g = rng.randint(0, 10)
        r1, r2 = list(ring), list(ring)
        a = _tile_loop_py(loads, comps, *args, r1, g, stages)
        b = _tile_loop_np(loads, comps, *args, r2, g, stages)
        for x, y in zip(a[:4], b[:4]):
            assert np.allclose(x, y)
        assert np.isclose(a[4], b[4]) and np.isclose(a[5], b[5]) and np.allclose(r1, r2)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
def test_simulation_matches_the_schedulers_timeline(scheduler):
    for w in NAMED.values():
        s = make_schedule(w, 132, scheduler, merges="tree", steal=False)  # the planner's own timeline
        sim_us = simulate(encode(s)).makespan_ns / 1e3
        # the timeline composes the simulator's per-tile pipeline (KV_STAGES buffers included) in closed form:
        # on the named workloads the two agree to the simulator's whole-ns rounding
        assert sim_us == pytest.approx(s.predicted_makespan_us, abs=2e-3), (w.name, sim_us, s.predicted_makespan_us)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(w=workloads(max_total=400_000), num_sms=st.integers(1, 300), scheduler=st.sampled_from(SCHEDULERS))
def test_every_schedule_runs_to_completion(w, num_sms, scheduler):
    """The per-SM orders cannot deadlock: the simulator, honouring every semaphore, finishes them."""
    assume(w.total_kv // fmt.KV_TILE_TOKENS <= 15_000)
    s = make_schedule(w, num_sms, scheduler)
    events, counts = run(encode(s).instructions)
    instr = sum(len(q) for q in s.queues)
    assert (counts > 0).sum() == sum(1 for q in s.queues if q)
    inst_events = ((events[..., 0] & 0xFF) == K.INSTRUCTION) & (np.arange(events.shape[1])[None] < counts[:, None])
    assert inst_events.sum() == instr


def deadlocked() -> Schedule:
    """SM 0 runs R1 (needs P3 from SM 1) before P0; SM 1 runs R2 (needs P0) before P3: a wait cycle."""
    w = Workload("dead", (100, 100), 1)
    t = [
        Task(0, fmt.Opcode.PARTIAL, 0, 0, 1, 0, 50, sm=0),
        Task(1, fmt.Opcode.REDUCTION, 1, 0, 1, 0, 100, inputs=(3, 4), final=True, sm=0),
        Task(2, fmt.Opcode.REDUCTION, 0, 0, 1, 0, 100, inputs=(0, 5), final=True, sm=1),
        Task(3, fmt.Opcode.PARTIAL, 1, 0, 1, 0, 50, sm=1),
        Task(4, fmt.Opcode.PARTIAL, 1, 0, 1, 50, 100, sm=1),
        Task(5, fmt.Opcode.PARTIAL, 0, 0, 1, 50, 100, sm=0),
    ]
    return Schedule(w, 2, t, [[1, 0, 5], [2, 3, 4]], "hand")


def test_deadlock_is_reported_not_looped():
    enc = encode(deadlocked())  # the task graph is fine; only the per-SM orders deadlock
    with pytest.raises(SimulationError, match=r"deadlock: 2 SMs.*SM 0 instruction 0 waits on semaphore.*SM 1"):
        run(enc.instructions)


def test_tensor_errors():
    enc = encode(make_schedule(NAMED["b64-512-q2"], 4, "static"))
    bad = enc.instructions.copy()
    bad[0, 0, fmt.Word.OPCODE] = 9
    with pytest.raises(SimulationError, match="unknown opcode 9"):
        run(bad)
    with pytest.raises(SimulationError, match="must be"):
        run(bad[0])
    red = make_schedule(NAMED["seed-representative"], 8, "static", merges="tree")
    ins = encode(red).instructions.copy()
    rows = np.argwhere(ins[..., fmt.Word.OPCODE] == fmt.Opcode.REDUCTION)[0]
    ins[rows[0], rows[1], fmt.Word.INPUT_SEMS] = 10_000
    with pytest.raises(SimulationError, match="which no instruction releases"):
        run(ins)
    wide = encode(make_schedule(NAMED["b1-65536-q1"], 132, "static")).instructions.copy()
    counted = np.argwhere(wide[..., fmt.Word.INPUT_LAYOUT] == fmt.InputLayout.COUNTED)
    assert len(counted)
    sm, p = counted[0]
    every = wide[..., fmt.Word.INPUT_LAYOUT] == fmt.InputLayout.COUNTED
    wide[every, fmt.Word.NUM_INPUTS] += 1  # all wait for one input more than add to the counter: a GPU hang
    with pytest.raises(SimulationError, match="add to it"):
        run(wide)
    wide[every, fmt.Word.NUM_INPUTS] -= 1
    wide[sm, p, fmt.Word.COUNTER_READERS] += 1  # readers disagree: the last would never reset the counter
    with pytest.raises(SimulationError, match="never reset"):
        run(wide)


def test_jitter_is_seeded():
    enc = encode(make_schedule(NAMED["seed-representative"], 16, "static"))
    a = run(enc.instructions, jitter=0.05, seed=1)[0]
    b = run(enc.instructions, jitter=0.05, seed=1)[0]
    c = run(enc.instructions, jitter=0.05, seed=2)[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_several_readers_per_semaphore():
    """Per-token reductions share each partial: the writer signals their count, each passes once the store
    ended (plus latency); a count that differs from the readers is refused (the GPU would hang or leak)."""
    from mlaprof.schedule.static import static_schedule

    cost = CostModel()
    s = static_schedule(Workload("t", (3000, 5000), 4), 6, cost, per_token=True)
    enc = encode(s)
    f = frame(simulate(enc, cost))
    store_end = {int(t): int(e) for t, e, k in zip(f["task"], f["end_ns"], f["kind"]) if k == K.STORE}
    readers = {}
    for t in s.tasks:
        for i in t.inputs:
            readers.setdefault(i, []).append(t.id)
    shared = [i for i, r in readers.items() if len(r) == 4]
    assert shared and all(s.tasks[i].op == fmt.Opcode.PARTIAL for i in shared)
    for i in np.flatnonzero(f["kind"] == K.WAIT):
        assert f["end_ns"][i] >= store_end[int(f["wait_task"][i])] + cost.sem_latency_ns - 1
    ins = enc.instructions.copy()
    sm, p = np.argwhere((ins[..., fmt.Word.SIGNAL_COUNT] == 4))[0]
    ins[sm, p, fmt.Word.SIGNAL_COUNT] = 1
    with pytest.raises(SimulationError, match="SIGNAL_COUNT must equal the readers"):
        run(ins, cost)
