"""Properties every schedule must have, for both schedulers, over random workloads and SM counts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mlaprof import format as fmt
from mlaprof.errors import UserError
from mlaprof.schedule import SCHEDULERS, make_schedule
from mlaprof.schedule.static import group_sizes, split_even, static_schedule
from mlaprof.workloads import NAMED, Workload

TILE = fmt.KV_TILE_TOKENS


@st.composite
def workloads(draw, max_total=None):
    s_q = draw(st.integers(1, 4))
    batch = draw(st.integers(1, 140))
    short = st.integers(s_q, 4096)
    long = st.integers(s_q, 131072)
    lens = draw(st.lists(st.one_of(short, short, long), min_size=batch, max_size=batch))
    if max_total is not None:
        assume(sum(lens) <= max_total)
    return Workload("hyp", tuple(lens), s_q)


def check_schedule(s, w: Workload, num_sms: int) -> None:
    tasks = s.tasks
    assert [t.id for t in tasks] == list(range(len(tasks)))
    assert len(s.queues) == num_sms
    # every task on exactly one queue, the SM it says
    seen = {}
    for sm, q in enumerate(s.queues):
        for tid in q:
            assert tid not in seen
            seen[tid] = sm
            assert tasks[tid].sm == sm
    assert set(seen) == set(range(len(tasks)))
    readers = {t.id: [] for t in tasks}
    for t in tasks:
        assert 0 <= t.seq < w.batch
        assert 0 <= t.kv_start < t.kv_end <= w.lens[t.seq]
        if t.op == fmt.Opcode.PARTIAL:
            assert t.inputs == ()
            assert (t.q_start, t.q_count) == (0, w.s_q)  # a partial reads its KV once for all query tokens
            # chunks start on a KV tile; only a sequence's end may cut a tile short
            assert t.kv_start % TILE == 0 and (t.kv_end % TILE == 0 or t.kv_end == w.lens[t.seq])
        elif t.counted:
            # one query token, one aligned column block, any number of partials (schedule/widen.py)
            assert t.q_count == 1 and 0 <= t.q_start < w.s_q and t.final
            assert t.col_count in fmt.COUNTED_COL_BLOCKS and t.col_start % t.col_count == 0
            assert 0 <= t.col_start and t.col_start + t.col_count <= fmt.HEAD_DIM_V
            assert 2 <= len(t.inputs) <= fmt.MAX_COUNTED_INPUTS and len(set(t.inputs)) == len(t.inputs)
            assert all(tasks[i].op == fmt.Opcode.PARTIAL for i in t.inputs)
        else:
            # a reduction is whole (all tokens) or per query token (16 rows)
            assert (t.q_start, t.q_count) == (0, w.s_q) or (t.q_count == 1 and 0 <= t.q_start < w.s_q)
            assert 2 <= len(t.inputs) <= fmt.MAX_FANIN and len(set(t.inputs)) == len(t.inputs)
            assert t.col_count == fmt.HEAD_DIM_V
        if t.op == fmt.Opcode.REDUCTION:
            for i in t.inputs:
                src = tasks[i]
                assert 0 <= i < len(tasks) and src.seq == t.seq and not src.final
                assert src.q_start <= t.q_start and t.q_start + t.q_count <= src.q_start + src.q_count
                readers[i].append(t.id)
            # a reduction's KV range is the union of its inputs', and they tile it without gaps
            spans = sorted((tasks[i].kv_start, tasks[i].kv_end) for i in t.inputs)
            assert spans[0][0] == t.kv_start and spans[-1][1] == t.kv_end
            assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    # every (query token, 16-column block) of a scratch result is read by exactly one reduction (per-token
    # reductions share their input, each taking its own token; column-block merges each their block); final
    # results are read by none
    def cells(t):
        return [(q, c) for q in range(t.q_start, t.q_start + t.q_count)
                for c in range(t.col_start, t.col_start + t.col_count, 16)]

    for t in tasks:
        if t.final:
            assert readers[t.id] == []
            continue
        covered = sorted(x for r in readers[t.id] for x in cells(tasks[r]))
        assert covered == cells(t)
    # each (sequence, query token, column block) has exactly one final task, covering the whole sequence
    finals = sorted((t.seq, q, c, t.kv_start, t.kv_end) for t in tasks if t.final for q, c in cells(t))
    assert finals == [(i, q, c, 0, n) for i, n in enumerate(w.lens) for q in range(w.s_q)
                      for c in range(0, fmt.HEAD_DIM_V, 16)]
    # every (sequence, KV token) is covered by exactly one partial (query tokens: all, checked above); with
    # the tiling of each reduction's inputs this covers every (sequence, query token, KV token) exactly once
    for seq, n in enumerate(w.lens):
        parts = sorted((t.kv_start, t.kv_end) for t in tasks if t.op == fmt.Opcode.PARTIAL and t.seq == seq)
        assert parts[0][0] == 0 and parts[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    # the dependency graph is acyclic: ids in a topological order exist (Kahn)
    indeg = {t.id: len(t.inputs) for t in tasks}
    ready = [t.id for t in tasks if not t.inputs]
    done = 0
    while ready:
        x = ready.pop()
        done += 1
        for r in readers[x]:
            indeg[r] -= 1
            if indeg[r] == 0:
                ready.append(r)
    assert done == len(tasks)
    assert s.predicted_makespan_us > 0 and s.compute_ms >= 0


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(w=workloads(), num_sms=st.integers(1, 300))
def test_schedule_properties(scheduler, w, num_sms):
    check_schedule(make_schedule(w, num_sms, scheduler), w, num_sms)


@pytest.mark.parametrize("scheduler", SCHEDULERS)
@pytest.mark.parametrize("num_sms", [1, 2, 7, 132, 264])
def test_named_workloads_any_sm_count(scheduler, num_sms):
    for w in NAMED.values():
        check_schedule(make_schedule(w, num_sms, scheduler), w, num_sms)


def test_static_chunks_and_whole_sequences():
    w = Workload("t", (100, 5000, 31), 2)
    s = static_schedule(w, 8)
    chunk = s.params["chunk_tokens"]
    assert chunk % TILE == 0 and chunk >= w.total_kv / 8
    by_seq = {i: [t for t in s.tasks if t.seq == i and t.op == fmt.Opcode.PARTIAL] for i in range(3)}
    # a sequence shorter than a chunk stays whole and writes the output itself
    for i in (0, 2):
        assert len(by_seq[i]) == 1 and by_seq[i][0].final
    assert len(by_seq[1]) == -(-5000 // chunk)
    tiles = [-(-(t.kv_end - t.kv_start) // TILE) for t in by_seq[1]]
    assert max(tiles) - min(tiles) <= 1  # balanced to within a tile
    assert all(not t.final for t in by_seq[1])


def test_tree_helpers():
    n = 3 * TILE + 4  # 4 tiles, the last short: 2 + 1 + 1
    assert split_even(n, 3) == [(0, 2 * TILE), (2 * TILE, 3 * TILE), (3 * TILE, n)]
    assert split_even(10, 5) == [(0, 10)]  # never an empty chunk
    assert group_sizes(7, 6) == [4, 3]
    assert group_sizes(109, 6) == [6] * 14 + [5] * 5


def test_bad_arguments():
    w = NAMED["seed-representative"]
    with pytest.raises(UserError, match="at least 1 SM"):
        make_schedule(w, 0, "static")
    with pytest.raises(UserError, match="unknown scheduler"):
        make_schedule(w, 4, "greedy")
    with pytest.raises(UserError, match="fan-in"):
        static_schedule(w, 4, fanin=7)


def test_queues_follow_planned_time():
    """Queue order is the planned start order, so no SM waits on something it runs later itself."""
    for scheduler in SCHEDULERS:
        s = make_schedule(NAMED["b64-rand256to1024-q4"], 132, scheduler)
        for q in s.queues:
            starts = [s.tasks[t].est_start_us for t in q]
            assert starts == sorted(starts)
        pos = {t: (sm, p) for sm, q in enumerate(s.queues) for p, t in enumerate(q)}
        for t in s.tasks:
            for i in t.inputs:
                assert s.tasks[i].est_end_us < t.est_end_us
                if pos[i][0] == pos[t.id][0]:
                    assert pos[i][1] < pos[t.id][1]
    assert np.isfinite(s.predicted_makespan_us)
