"""Steal groups: which partials share tiles (schedule/steal.py), how they are encoded, and what the simulator
makes of them (every tile computed once, claims served in time order)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlaprof import format as fmt
from mlaprof.costmodel import CostModel, fit_with_report, trace_tile_tokens
from mlaprof.schedule import make_schedule
from mlaprof.schedule.encode import EncodeError, encode, from_trace
from mlaprof.schedule.steal import share_tiles
from mlaprof.schedule.tasks import Schedule, Task
from mlaprof.sim import SimulationError, run, simulate
from mlaprof.trace.schema import KIND_NAMES
from mlaprof.workloads import NAMED, Workload

W, P, R = fmt.Word, fmt.Opcode.PARTIAL, fmt.Opcode.REDUCTION
TILE = fmt.KV_TILE_TOKENS


def groups_of(s: Schedule) -> dict[int, list[Task]]:
    out: dict[int, list[Task]] = {}
    for t in s.tasks:
        if t.steal >= 0:
            out.setdefault(t.steal, []).append(t)
    return {g: sorted(ts, key=lambda t: t.kv_start) for g, ts in out.items()}


def tiles_by_member(trace) -> dict[int, list[int]]:
    kind = trace.codes("kind", KIND_NAMES)
    m = kind == fmt.Kind.COMPUTE
    task, aux, start = trace.col("task")[m], trace.col("aux")[m], trace.col("start_ns")[m]
    out: dict[int, list[int]] = {}
    for i in np.argsort(start, kind="stable"):
        out.setdefault(int(task[i]), []).append(int(aux[i]))
    return out


@pytest.mark.parametrize("name", list(NAMED))
@pytest.mark.parametrize("scheduler", ["static", "makespan"])
def test_groups_are_split_sequences_last_partials(name, scheduler):
    w = NAMED[name]
    # as planned (placement.py moves merges by simulated time, which steal groups change)
    fixed = make_schedule(w, 132, scheduler, steal=False, placement="plan")
    s = make_schedule(w, 132, scheduler, placement="plan")
    assert [dataclasses.replace(t, steal=-1) for t in s.tasks] == fixed.tasks and s.queues == fixed.queues
    last = {[i for i in q if s.tasks[i].op == P][-1] for q in s.queues if any(s.tasks[i].op == P for i in q)}
    for g, ts in groups_of(s).items():
        assert len(ts) >= 2 and all(t.op == P and not t.final and t.id in last for t in ts)
        assert len({(t.seq, t.q_start, t.q_count) for t in ts}) == 1
        assert all(a.kv_end == b.kv_start for a, b in zip(ts, ts[1:]))
        assert -(-ts[-1].kv_end // TILE) - ts[0].kv_start // TILE >= len(ts)
    assert s.params["steal"] == len(groups_of(s))
    if name == "b132-4096-q4":  # no sequence is split: nothing to share
        assert not groups_of(s)


def test_encoded_members_carry_the_group_range_and_a_fresh_counter():
    s = make_schedule(NAMED["seed-representative"], 132, "static")
    enc = encode(s)
    rows = {int(r[W.TASK]): r for r in enc.instructions.reshape(-1, fmt.WORDS_PER_INSTRUCTION) if r[W.OPCODE]}
    signal_sems = {int(r[W.SIGNAL_SEM]) for r in rows.values()}
    counters = set()
    for ts in groups_of(s).values():
        lo, hi = ts[0].kv_start, ts[-1].kv_end
        sems = {int(rows[t.id][W.STEAL_SEM]) for t in ts}
        assert len(sems) == 1 and not sems & signal_sems and not sems & counters
        counters |= sems
        for m, t in enumerate(ts):
            r = rows[t.id]
            assert (r[W.KV_START], r[W.KV_END], r[W.STEAL_MEMBER], r[W.STEAL_MEMBERS]) == (lo, hi, m, len(ts))
    for t in s.tasks:
        if t.steal < 0:
            r = rows[t.id]
            assert (r[W.KV_START], r[W.KV_END]) == (t.kv_start, t.kv_end) and not r[W.STEAL_MEMBERS]
    assert not enc.instructions[..., W.RESERVED : W.RESERVED + 2].any()
    assert enc.num_sems == 1 + max(signal_sems | counters)


def _two_partials(**change) -> Schedule:
    w = Workload("two", (300, 200), 2)
    t = [Task(0, P, 0, 0, 2, 0, 128, sm=0, steal=0), Task(1, P, 0, 0, 2, 128, 300, sm=1, steal=0),
         Task(2, R, 0, 0, 2, 0, 300, inputs=(0, 1), final=True, sm=1), Task(3, P, 1, 0, 2, 0, 200, final=True, sm=2)]
    for tid, fields in change.items():
        t[int(tid[1:])] = dataclasses.replace(t[int(tid[1:])], **fields)
    return Schedule(w, 3, t, [[0], [1, 2], [3]], "hand")


@pytest.mark.parametrize("change,message", [
    ({"t1": {"steal": 1}}, "needs two or more partials"),
    ({"t1": {"kv_start": 192}, "t0": {"kv_end": 150}}, "not contiguous"),
    ({"t3": {"steal": 0}}, "final partial"),
    ({"t2": {"steal": 0}}, "reduction"),
    ({"t0": {"steal": -2}}, "a group id is >= 0"),
])
def test_bad_steal_groups_are_refused_with_a_reason(change, message):
    encode(_two_partials())  # the unchanged one is fine
    with pytest.raises(EncodeError, match=message):
        encode(_two_partials(**change))


def test_a_group_shares_one_query_range():
    from mlaprof.schedule.encode import steal_groups

    t = _two_partials().tasks
    t[1] = dataclasses.replace(t[1], q_start=1, q_count=1)
    with pytest.raises(EncodeError, match="one query range"):
        steal_groups(t)


def test_a_group_needs_a_tile_per_member():
    w = Workload("short", (100,), 1)
    t = [Task(0, P, 0, 0, 1, 0, 30, sm=0, steal=0), Task(1, P, 0, 0, 1, 30, 60, sm=1, steal=0),
         Task(2, P, 0, 0, 1, 60, 100, sm=2, steal=0),
         Task(3, R, 0, 0, 1, 0, 100, inputs=(0, 1, 2), final=True, sm=2)]
    with pytest.raises(EncodeError, match="only 2 KV tiles"):
        encode(Schedule(w, 3, t, [[0], [1], [2, 3]], "hand"))


@pytest.mark.parametrize("name", ["seed-representative", "b1-65536-q1", "b64-rand256to1024-q4"])
def test_simulated_members_compute_every_tile_once_starting_with_their_own(name):
    s = make_schedule(NAMED[name], 132, "makespan")
    trace = simulate(encode(s), jitter=0.05, seed=3)
    back = from_trace(trace)
    assert [t.steal for t in back.tasks] == [t.steal for t in s.tasks]  # the task table keeps the groups
    done = tiles_by_member(trace)
    for ts in groups_of(s).values():
        n = -(-ts[-1].kv_end // TILE) - ts[0].kv_start // TILE
        assert sorted(u for t in ts for u in done[t.id]) == list(range(n))
        assert all(done[t.id][0] == m for m, t in enumerate(ts))
    assert trace_tile_tokens(trace) == TILE


def test_members_end_together_where_fixed_ranges_do_not():
    """With SMs streaming at different rates (sm_spread), fixed equal ranges end apart; steal members end
    within about two tiles of each other (one computing, one in flight when the range runs out)."""
    cost = dataclasses.replace(CostModel(), sm_spread=0.3)
    w = Workload("one", (64 * 1000,), 1)

    def partial_ends(steal):
        s = make_schedule(w, 100, "static", cost, steal=steal)
        trace = simulate(encode(s), cost)
        kind, task = trace.codes("kind", KIND_NAMES), trace.col("task")
        ends = [trace.col("end_ns")[(kind == fmt.Kind.COMPUTE) & (task == t.id)].max()
                for t in s.tasks if t.op == P]
        return np.asarray(ends, float), trace.makespan_ns

    fixed, fixed_end = partial_ends(False)
    steal, steal_end = partial_ends(True)
    period = float(cost.load_ns(np.array([TILE]))[0])
    assert np.ptp(steal) <= 2.5 * period < np.ptp(fixed)
    assert steal_end < fixed_end


def test_a_member_queued_late_takes_little_more_than_its_own_tile():
    w = Workload("late", (64 * 60, 64 * 40), 1)
    t = [Task(0, P, 1, 0, 1, 0, 64 * 40, final=True, sm=0)]
    t += [Task(1 + m, P, 0, 0, 1, 64 * 20 * m, 64 * 20 * (m + 1), sm=m, steal=0) for m in range(3)]
    t += [Task(4, R, 0, 0, 1, 0, 64 * 60, inputs=(1, 2, 3), final=True, sm=2)]
    s = Schedule(w, 3, t, [[0, 1], [2], [3, 4]], "hand")
    done = tiles_by_member(simulate(encode(s)))
    assert done[1] == [0]  # SM 0 reaches its member after 40 tiles of another sequence: all are taken
    assert sorted(done[2] + done[3]) == list(range(1, 60))


def test_the_simulator_refuses_inconsistent_steal_words():
    enc = encode(make_schedule(NAMED["b1-65536-q1"], 8, "static"))
    ins = enc.instructions.copy()
    rows = ins.reshape(-1, fmt.WORDS_PER_INSTRUCTION)
    member = np.flatnonzero(rows[:, W.STEAL_MEMBERS] > 0)[0]
    bad = ins.copy()
    bad.reshape(-1, fmt.WORDS_PER_INSTRUCTION)[member, W.STEAL_MEMBER] = 99
    with pytest.raises(SimulationError, match="member index"):
        run(bad)
    bad = ins.copy()
    bad.reshape(-1, fmt.WORDS_PER_INSTRUCTION)[member, W.STEAL_MEMBER] = 5
    with pytest.raises(SimulationError, match="must appear once"):
        run(bad)
    bad = ins.copy()
    bad.reshape(-1, fmt.WORDS_PER_INSTRUCTION)[member, W.STEAL_MEMBERS] += 1
    with pytest.raises(SimulationError, match="members"):
        run(bad)


def test_calibration_reads_steal_traces():
    """The fit recovers the per-tile rates from traces whose members compute scattered tiles."""
    true = CostModel()
    traces = [simulate(encode(make_schedule(NAMED[n], 132, sc, true)), true, jitter=0.02, seed=i)
              for i, (n, sc) in enumerate([("b1-65536-q1", "static"), ("seed-representative", "makespan"),
                                           ("b64-rand256to1024-q4", "static")])]
    model, _ = fit_with_report(traces, true)
    assert model.load_byte_ns == pytest.approx(true.load_byte_ns, rel=0.03)
    assert model.compute_flop_ns == pytest.approx(true.compute_flop_ns, rel=0.05)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lens=st.lists(st.integers(1, 40_000), min_size=1, max_size=10), s_q=st.integers(1, 4),
       num_sms=st.integers(1, 160), scheduler=st.sampled_from(["static", "makespan"]))
def test_any_schedule_with_steal_groups_runs_and_covers_each_tile_once(lens, s_q, num_sms, scheduler):
    w = Workload("hyp", tuple(max(n, s_q) for n in lens), s_q)
    s = make_schedule(w, num_sms, scheduler)
    trace = simulate(encode(s))
    done = tiles_by_member(trace)
    for ts in groups_of(s).values():
        n = -(-ts[-1].kv_end // TILE) - ts[0].kv_start // TILE
        assert sorted(u for t in ts for u in done[t.id]) == list(range(n))


def test_info_reports_each_steal_group(capsys):
    """`mlaprof info` (and its JSON) say, per group, how the tiles were shared and how far apart the members
    ended; a schedule without groups says nothing about them."""
    from mlaprof.analysis import analyze
    from mlaprof.cli.main import main
    from mlaprof.trace.io import write_trace

    s = make_schedule(NAMED["seed-representative"], 132, "static")
    trace = simulate(encode(s), jitter=0.05, seed=1)
    a = analyze(trace)
    groups = groups_of(s)
    assert [g["group"] for g in a.steal_groups] == sorted(groups)
    done = tiles_by_member(trace)
    for g in a.steal_groups:
        members = groups[g["group"]]
        tiles = [len(done[t.id]) for t in members]
        assert (g["members"], g["tiles"], g["tiles_min"], g["tiles_max"]) == (len(members), sum(tiles), min(tiles),
                                                                              max(tiles))
        assert (g["kv_start"], g["kv_end"]) == (members[0].kv_start, members[-1].kv_end) and g["end_spread_us"] >= 0
    assert a.to_json()["steal_groups"] == a.steal_groups
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = write_trace(f"{d}/s.arrow", trace.table, trace.meta)
        assert main(["info", str(path)]) == 0
        assert f"steal groups {len(groups)} ({sum(map(len, groups.values()))} partials" in capsys.readouterr().out
        fixed = simulate(encode(make_schedule(NAMED["seed-representative"], 132, "static", steal=False)))
        path = write_trace(f"{d}/f.arrow", fixed.table, fixed.meta)
        assert main(["info", str(path)]) == 0 and "steal groups" not in capsys.readouterr().out
        assert analyze(fixed).steal_groups == []


def test_cli_steal_flag(capsys, tmp_path):
    from mlaprof.cli.main import main

    assert main(["schedule", "-w", "b1-65536-q1", "-s", "static", "--per-sm"]) == 0
    out = capsys.readouterr().out
    assert "steal=1" in out and "~g0" in out
    assert main(["schedule", "-w", "b1-65536-q1", "-s", "static", "--steal", "off", "--per-sm"]) == 0
    out = capsys.readouterr().out
    assert "steal=" not in out and "~g" not in out
    assert main(["simulate", "-w", "b1-65536-q1", "-s", "static", "--steal", "off", "--out", str(tmp_path / "f.arrow")]) == 0
    assert main(["simulate", "-w", "b1-65536-q1", "-s", "static", "--out", str(tmp_path / "s.arrow")]) == 0
    capsys.readouterr()
    from mlaprof.trace.io import read_trace
    assert read_trace(tmp_path / "s.arrow").meta.scheduler_params["steal"] == 1
    assert "steal" not in read_trace(tmp_path / "f.arrow").meta.scheduler_params
