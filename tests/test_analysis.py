"""mlaprof.analysis and `mlaprof info` against hand-worked answers and independent brute-force checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mlaprof.analysis import analyze
from mlaprof.cli.main import main
from mlaprof.trace.io import Trace, read_trace, write_trace
from mlaprof.workloads import Workload
from tests.golden import synthetic, two_sm


def _trace(tmp_path, builder, name="t.arrow") -> Trace:
    return read_trace(write_trace(tmp_path / name, builder.table(), builder.meta))


@pytest.fixture
def golden(tmp_path):
    return _trace(tmp_path, two_sm.build_a())


@pytest.fixture(scope="module")
def small_synthetic(tmp_path_factory):
    table, meta = synthetic.build(num_sms=8, num_seqs=40, chunk_tokens=256, seed=1)  # seed 1: a wait on the path
    return read_trace(write_trace(tmp_path_factory.mktemp("syn") / "s.arrow", table, meta))


def test_golden_times(golden):
    a = analyze(golden)
    assert a.makespan_us == 0.3
    np.testing.assert_allclose(a.sm_busy_us, [0.23, 0.22])
    np.testing.assert_allclose(a.sm_wait_us, [0.07, 0.0])
    np.testing.assert_allclose(a.sm_idle_us, [0.0, 0.08])
    np.testing.assert_allclose(a.sm_finish_us, [0.3, 0.25])
    assert (a.busy_us, a.wait_us, a.idle_us) == (0.45, 0.07, 0.08)
    assert a.by_kind_us == {"instruction": 0.53, "setup": 0.035, "load": 0.21, "compute": 0.205, "wait": 0.09,
                            "store": 0.06}
    assert a.by_opcode_us == {"partial": 0.33, "reduction": 0.2}
    p = a.op_stats["partial"]
    assert (p.count, p.mean_us, p.p50_us, p.p90_us, p.max_us) == (3, 0.11, 0.1, 0.164, 0.18)
    assert a.op_stats["reduction"].count == 1
    assert a.load_imbalance == pytest.approx(300 / 275, abs=1e-6)
    assert (a.num_spans, a.num_instructions) == (29, 4)
    np.testing.assert_array_equal(a.sm_instructions, [2, 2])


def test_golden_rates(tmp_path):
    t = _trace(tmp_path, two_sm.build_a(kernel_time_us=0.5))
    a = analyze(t)
    w = Workload.from_json(two_sm.WORKLOAD)
    assert a.tflops == pytest.approx(w.flops / 0.3e-6 / 1e12, rel=1e-4)
    assert a.gbps == pytest.approx(w.bytes / 0.3e-6 / 1e9, rel=1e-4)
    assert a.tflops_kernel == pytest.approx(w.flops / 0.5e-6 / 1e12, rel=1e-4)
    assert a.gbps_kernel == pytest.approx(w.bytes / 0.5e-6 / 1e9, rel=1e-4)
    assert analyze(_trace(tmp_path, two_sm.build_a(), "b.arrow")).tflops_kernel is None


def test_golden_critical_path_through_a_wait(golden):
    path = analyze(golden).critical_path
    assert [(s.sm, s.instr, s.task, s.reason) for s in path] == [(1, 0, 1, "start"), (0, 1, 2, "wait")]
    red = path[1]
    assert (red.opcode, red.seq, red.kv_start, red.kv_end, red.start_us, red.end_us) == ("reduction", 0, 0, 160, 0.1, 0.3)
    w = red.waited_for
    # the zero-length wait on task 0 (released at 100 ns, before the wait began at 110) does not bind
    assert (w["task"], w["sm"], w["instr"], w["opcode"], w["kv_start"], w["kv_end"]) == (1, 1, 0, "partial", 64, 160)
    assert (w["release_us"], w["wait_start_us"], w["wait_end_us"], w["wait_us"]) == (0.2, 0.11, 0.2, 0.09)


def test_golden_critical_path_through_the_queue(tmp_path):
    """With a 150 ns tail, seq 1 on SM1 ends last (at 350), queued behind task 1."""
    a = analyze(_trace(tmp_path, two_sm.build_a(tail=150)))
    assert a.makespan_us == 0.35
    assert [(s.sm, s.instr, s.reason) for s in a.critical_path] == [(1, 0, "start"), (1, 1, "queue")]
    assert a.critical_path[1].waited_for is None


def test_json_and_summary(golden):
    j = json.loads(json.dumps(analyze(golden).to_json()))
    assert j["critical_summary"] == {"steps": 2, "waits": 1, "sms": 2, "start_us": 0.02, "end_us": 0.3,
                                     "wait_us": 0.09, "on_path_us_by_opcode": {"partial": 0.18, "reduction": 0.1}}
    assert j["sms"][0] == {"sm": 0, "instructions": 2, "busy_us": 0.23, "wait_us": 0.07, "idle_us": 0.0,
                           "finish_us": 0.3}
    assert "instructions" not in j


def _brute_union(intervals) -> int:
    total, reach = 0, None
    for s, e in sorted(intervals):
        if reach is None or s > reach:
            total += e - s
            reach = e
        elif e > reach:
            total += e - reach
            reach = e
    return total


def test_busy_wait_idle_match_brute_force(small_synthetic):
    t = small_synthetic
    a = analyze(t)
    sm, kind, s, e = t.col("sm"), t.col("kind"), t.col("start_ns"), t.col("end_ns")
    for i in range(t.meta.sm_count):
        m = sm == i
        work = [(x, y) for k, x, y in zip(kind[m], s[m], e[m]) if k in ("setup", "load", "compute", "store")]
        both = work + [(x, y) for k, x, y in zip(kind[m], s[m], e[m]) if k == "wait"]
        assert a.sm_busy_us[i] * 1000 == pytest.approx(_brute_union(work))
        assert a.sm_wait_us[i] * 1000 == pytest.approx(_brute_union(both) - _brute_union(work))
        assert a.sm_busy_us[i] + a.sm_wait_us[i] + a.sm_idle_us[i] == pytest.approx(a.makespan_us)
        assert a.sm_finish_us[i] * 1000 == e[m].max()
    assert a.load_imbalance == pytest.approx(a.sm_finish_us.max() / a.sm_finish_us.mean())


def test_critical_path_is_a_chain(small_synthetic):
    """Every step is explained by the one before it; the path ends at the makespan."""
    a = analyze(small_synthetic)
    path = a.critical_path
    assert path[-1].end_us == a.makespan_us
    assert path[0].reason == "start"
    assert any(s.reason == "wait" for s in path)
    for prev, cur in zip(path, path[1:]):
        if cur.reason == "queue":
            assert (prev.sm, prev.instr) == (cur.sm, cur.instr - 1)
        else:
            assert cur.reason == "wait"
            w = cur.waited_for
            assert (prev.sm, prev.instr, prev.task) == (w["sm"], w["instr"], w["task"])
            assert w["release_us"] > w["wait_start_us"]  # it really had to wait for it
            task = small_synthetic.meta.tasks[cur.task]
            assert prev.task in task["inputs"]


def test_wait_hidden_behind_the_previous_instruction_is_not_the_reason(tmp_path):
    """A controller that fetches ahead waits [110,200] for task 1 while SM0 still runs task 0 until 300: the
    wait binds (task 1 released at 200, after the wait began) but the queue held the reduction back."""
    from tests.golden.builder import TraceBuilder, task

    tasks = [task(0, "partial", 0, 0, 64), task(1, "partial", 0, 64, 160),
             task(2, "reduction", 0, 0, 160, inputs=(0, 1), final=True), task(3, "partial", 1, 0, 32, final=True)]
    b = TraceBuilder(two_sm.WORKLOAD, 2, tasks)
    C, K = "controller", "consumer"
    b.span(0, C, "instruction", 0, 0, 0, 300).span(0, K, "store", 0, 0, 280, 300)
    b.span(0, C, "instruction", 1, 2, 100, 400).span(0, C, "wait", 1, 2, 110, 110, aux=0, wait_task=0)
    b.span(0, C, "wait", 1, 2, 110, 200, aux=1, wait_task=1).span(0, K, "compute", 1, 2, 300, 380)
    b.span(0, K, "store", 1, 2, 380, 400)
    b.span(1, C, "instruction", 0, 1, 0, 200).span(1, K, "store", 0, 1, 180, 200)
    b.span(1, C, "instruction", 1, 3, 200, 250).span(1, K, "store", 1, 3, 240, 250)
    path = analyze(_trace(tmp_path, b)).critical_path
    assert [(s.sm, s.instr, s.reason) for s in path] == [(0, 0, "start"), (0, 1, "queue")]
    # the same, but SM1 starts 120 ns later, so task 1 is released at 320, after task 0 ended: now the wait is
    # the reason
    b.rows = [dict(r, end_ns=320) if (r["sm"], r["kind"], r["aux"]) == (0, "wait", 1) else r for r in b.rows]
    b.rows = [dict(r, start_ns=r["start_ns"] + 120, end_ns=r["end_ns"] + 120) if r["sm"] == 1 else r for r in b.rows]
    path = analyze(_trace(tmp_path, b, "late.arrow")).critical_path
    assert [(s.sm, s.instr, s.reason) for s in path] == [(1, 0, "start"), (0, 1, "wait")]


def test_times_before_zero(tmp_path):
    """A trace whose clock starts at -50 ns: makespan counts from there, the per-SM parts still add up."""
    b = two_sm.build_a()
    for r in b.rows:
        r["start_ns"] -= 50
        r["end_ns"] -= 50
    a = analyze(_trace(tmp_path, b))
    assert a.makespan_us == 0.3
    np.testing.assert_allclose(a.sm_busy_us, [0.23, 0.22])
    np.testing.assert_allclose(a.sm_wait_us, [0.07, 0.0])
    np.testing.assert_allclose(a.sm_idle_us, [0.0, 0.08])
    np.testing.assert_allclose(a.sm_finish_us, [0.25, 0.2])
    assert [(s.task, s.start_us, s.end_us) for s in a.critical_path] == [(1, -0.03, 0.15), (2, 0.05, 0.25)]


def test_no_instruction_spans_uses_extents(tmp_path):
    b = two_sm.build_a()
    b.rows = [r for r in b.rows if r["kind"] != "instruction"]
    a = analyze(_trace(tmp_path, b))
    assert any("no INSTRUCTION spans" in n for n in a.notes)
    assert a.op_stats == {}
    # the reduction's extent is [100, 300] and the wait on task 1 still binds
    assert [(s.task, s.reason) for s in a.critical_path] == [(1, "start"), (2, "wait")]


def test_empty_trace(tmp_path):
    b = two_sm.build_a()
    b.rows = []
    a = analyze(_trace(tmp_path, b))
    assert (a.makespan_us, a.num_instructions, a.critical_path, a.busy_us) == (0.0, 0, [], 0.0)
    assert a.load_imbalance == 1.0


def test_unusable_workload_is_a_note_not_a_crash(tmp_path):
    b = two_sm.build_a()
    b.meta.workload = {"name": "broken"}
    a = analyze(_trace(tmp_path, b))
    assert a.tflops is None and any("workload metadata unusable" in n for n in a.notes)


def test_cli_info_text(golden, capsys):
    assert main(["info", str(golden.path)]) == 0
    out = capsys.readouterr().out
    assert "makespan    0.30 us" in out
    assert "critical path: 2 steps on 2 SMs, 1 semaphore waits" in out
    assert "wait 0.09 us for task 1 (SM 1 #0 partial seq 0 kv [64,160))" in out


def test_cli_info_json(golden, capsys):
    assert main(["info", str(golden.path), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    j = json.loads(out)
    for key in ("workload", "scheduler", "source", "makespan_us", "by_kind_us", "critical_path", "sms", "op_stats",
                "load_imbalance", "tflops", "gbps"):
        assert key in j
    assert j["scheduler"] == "golden-a" and j["source"] == "simulated" and j["makespan_us"] == 0.3
    assert [s["reason"] for s in j["critical_path"]] == ["start", "wait"]


def test_cli_info_help_has_example(capsys):
    with pytest.raises(SystemExit) as e:
        main(["info", "--help"])
    assert e.value.code == 0
    assert "mlaprof info traces/sim.arrow" in capsys.readouterr().out


# ---- traces from the simulator ------------------------------------------------------------------------------

NAMED = ["seed-representative", "b1-65536-q1", "b64-rand256to1024-q4", "b64-512-q2", "b132-4096-q4"]


@pytest.mark.parametrize("scheduler", ["static", "makespan"])
@pytest.mark.parametrize("workload", NAMED)
def test_simulated_trace_invariants(workload, scheduler):
    from tests.golden.simulated import simulated

    t = simulated(workload, scheduler)
    a = analyze(t)
    assert a.makespan_us == pytest.approx(t.makespan_ns / 1000)
    np.testing.assert_allclose(a.sm_busy_us + a.sm_wait_us + a.sm_idle_us, a.makespan_us, atol=1e-6)
    assert (a.sm_busy_us >= 0).all() and (a.sm_wait_us >= 0).all() and (a.sm_idle_us >= -1e-9).all()
    assert a.num_instructions == len(t.meta.tasks)
    w = Workload.from_json(t.meta.workload)
    assert a.tflops == pytest.approx(w.flops / (a.makespan_us * 1e-6) / 1e12, rel=1e-3)
    path = a.critical_path
    assert path and path[-1].end_us == a.makespan_us and path[0].reason == "start"
    tasks = {x["id"]: x for x in t.meta.tasks}
    for prev, cur in zip(path, path[1:]):
        if cur.reason == "queue":
            assert (prev.sm, prev.instr) == (cur.sm, cur.instr - 1)
        else:
            assert cur.reason == "wait" and prev.task == cur.waited_for["task"]
            assert prev.task in tasks[cur.task]["inputs"]


# ---- the KV stream --------------------------------------------------------------------------------------------

def test_golden_kv_stream(golden):
    """two_sm.build_a's partial tile loads: SM0 [10,40] [40,70], SM1 [30,60] [60,90] [90,120] [205,225] (the
    reduction's input loads are not KV tiles). Span 10 -> 225 ns; its middle (43 ns off each end) is
    (53, 182]: SM1's tiles end there at 60, 90 and 120, 30 ns apart (SM0 has one end there, at 70). Of the 64
    sample times in it, 9 have two loads in flight, 24 one and 31 none: median one SM."""
    from mlaprof.costmodel import TILE_BYTES

    k = analyze(golden).kv_stream
    assert (k["sms"], k["tiles"], k["start_us"], k["end_us"]) == (2, 6, 0.01, 0.225)
    assert k["mean_tbps"] == pytest.approx(6 * TILE_BYTES / 215 / 1e3, abs=1e-4)
    assert (k["tile_interval_us"], k["streaming_sms"]) == (0.03, 1.0)
    assert k["steady_tbps"] == pytest.approx(TILE_BYTES / 30 / 1e3, abs=1e-4)


def test_kv_stream_without_a_middle(tmp_path):
    """One tile per SM: no two ends on one SM in the middle, so only the extent and the mean rate."""
    b = two_sm.build_a()
    b.rows = [r for r in b.rows if not (r["kind"] == "load" and r["aux"] > 0)]
    k = analyze(_trace(tmp_path, b)).kv_stream
    assert (k["sms"], k["tiles"]) == (2, 3)
    assert k["tile_interval_us"] is None and k["streaming_sms"] is None and k["steady_tbps"] is None
    b.rows = [r for r in b.rows if r["kind"] != "load"]
    assert analyze(_trace(tmp_path, b, "none.arrow")).kv_stream is None


def test_kv_stream_of_the_recorded_traces_is_hbm_bound():
    """bench/NOTES.md v23 in the recorded traces: seed-representative with a partial on every SM (132) streams
    at the rate it had on 120 SMs, each SM's tiles 11% further apart."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    # the 120-SM trace of that probe's time (the shipped schedule then; traces/ has been re-recorded since)
    on_120 = analyze(read_trace(root / "bench/results/probe/v23_every_sm_traces/seed-representative__makespan__shipped.arrow")).kv_stream
    on_132 = analyze(read_trace(root / "bench/results/probe/v23_every_sm_traces/seed-representative__makespan.arrow")).kv_stream
    assert (on_120["sms"], on_120["tiles"], on_132["sms"], on_132["tiles"]) == (120, 833, 132, 833)
    assert (on_120["tile_interval_us"], on_132["tile_interval_us"]) == (2.88, 3.2)
    assert on_132["steady_tbps"] == pytest.approx(on_120["steady_tbps"], rel=0.02)


def test_cli_info_and_diff_show_the_kv_stream(capsys):
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    a = root / "bench/results/probe/v23_every_sm_traces/seed-representative__makespan__shipped.arrow"
    b = root / "bench/results/probe/v23_every_sm_traces/seed-representative__makespan.arrow"
    assert main(["info", str(a)]) == 0
    out = capsys.readouterr().out
    assert "KV stream   833 tiles on 120 SMs, 1.38 -> 24.80 us (2.62 TB/s over it); 9.47 us more to the makespan" in out
    assert "one tile per SM every 2.880 us (median), 120 SMs loading -> 3.07 TB/s" in out
    assert main(["diff", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "kv_tile_interval_us" in out and "+0.320" in out


# ---- the critical path's time by part ----------------------------------------------------------------------

def test_golden_critical_time(golden):
    """two_sm.build_a's path: SM1's kv [64,160) partial from 20 to 200 ns (setup 10; loads alone 30-60, 80-90,
    110-120; computes 60-80, 90-110, 120-170, loads under them hidden; nothing 170-180; store 20), then SM0's
    reduction from its binding wait's end at 200 (the release at 200: no semaphore time) to 300 (load 20,
    merge 60, store 20); 0 to 20 before the first step."""
    t = analyze(golden).critical_time_us
    assert t == {"before_first": 0.02, "setup": 0.01, "load": 0.07, "compute": 0.15, "store": 0.04, "wait": 0.0,
                 "unrecorded": 0.01, "semaphore": 0.0, "queue": 0.0}
    assert sum(t.values()) == pytest.approx(0.3)


def test_golden_critical_time_through_the_queue(tmp_path):
    """With a 150 ns tail the path is SM1's two instructions: [20, 200] as above, then seq 1 from 200 to 350
    (setup 5, load 20, compute 115, store 10)."""
    t = analyze(_trace(tmp_path, two_sm.build_a(tail=150))).critical_time_us
    assert (t["queue"], t["semaphore"], t["before_first"]) == (0.0, 0.0, 0.02)
    assert (t["setup"], t["load"], t["compute"], t["store"], t["unrecorded"]) == (0.015, 0.07, 0.205, 0.03, 0.01)
    assert sum(t.values()) == pytest.approx(0.35)


@pytest.mark.parametrize("name", ["seed-representative__makespan", "b64-rand256to1024-q4__static",
                                  "b132-4096-q4__makespan"])
def test_critical_time_adds_up_on_recorded_traces(name, capsys):
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "traces" / f"{name}.arrow"
    a = analyze(read_trace(path))
    assert sum(a.critical_time_us.values()) == pytest.approx(a.critical_path[-1].end_us, abs=1e-3)
    assert all(v >= 0 for v in a.critical_time_us.values())
    assert main(["info", str(path)]) == 0
    assert f"adding up to {a.critical_path[-1].end_us:.2f})" in capsys.readouterr().out


def test_critical_time_in_diff(golden, tmp_path, capsys):
    from mlaprof.diff import diff

    b = _trace(tmp_path, two_sm.build_a(tail=150), "b.arrow")
    d = diff(golden, b)
    assert d.critical_time_us["compute"] == {"a": 0.15, "b": 0.205, "delta": 0.055}
    assert main(["diff", str(golden.path), str(b.path)]) == 0
    assert "its time by part (us)" in capsys.readouterr().out


def test_critical_time_matches_brute_force(small_synthetic):
    """Every nanosecond of every step given to the first kind open then (independent of the sweep)."""
    from mlaprof.analysis import PATH_KINDS, Spans
    from mlaprof.trace.schema import KIND_NAMES

    a = analyze(small_synthetic)
    sp = Spans.of(small_synthetic)
    want = dict.fromkeys(a.critical_time_us, 0)
    prev = None
    for step in a.critical_path:
        begin = round(1000 * (step.waited_for["wait_end_us"] if step.waited_for else step.start_us))
        end = round(1000 * step.end_us)
        if prev is None:
            want["before_first"] += begin
        else:
            begin = min(max(begin, prev), end)
            want["semaphore" if step.reason == "wait" else "queue"] += begin - prev
        prev = end
        mine = (sp.sm == step.sm) & (sp.instr == step.instr)
        ns = np.arange(begin, end)
        taken = np.zeros(len(ns), bool)
        for kind in PATH_KINDS:
            m = mine & (sp.kind == kind)
            open_ = ((sp.start[m][:, None] <= ns) & (ns < sp.end[m][:, None])).any(axis=0) if m.any() else taken & False
            want[KIND_NAMES[kind]] += int((open_ & ~taken).sum())
            taken |= open_
        want["unrecorded"] += int((~taken).sum())
    assert a.critical_time_us == {k: round(v / 1000, 4) for k, v in want.items()}
    assert sum(want.values()) == round(1000 * a.critical_path[-1].end_us)
