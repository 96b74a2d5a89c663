"""mlaprof.diff and `mlaprof diff`: self-diff is zero, matching goes by what instructions compute, aggregate mode."""

from __future__ import annotations

import json
import re

import pytest

from mlaprof.cli.main import main
from mlaprof.diff import diff
from mlaprof.trace.io import read_trace, write_trace
from tests.golden import synthetic, two_sm
from tests.golden.builder import TraceBuilder, task


def _write(tmp_path, b, name):
    return read_trace(write_trace(tmp_path / name, b.table(), b.meta))


@pytest.fixture
def ab(tmp_path):
    return _write(tmp_path, two_sm.build_a(), "a.arrow"), _write(tmp_path, two_sm.build_b(), "b.arrow")


def _numbers(obj, path=""):
    """Every number in a JSON-like object whose key names a delta, shift or score, with its path."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{path}[{i}]")
    elif isinstance(obj, (int, float)) and re.search(r"delta|shift|score", path):
        yield path, obj


def _assert_zero_diff(d):
    j = json.loads(json.dumps(d.to_json(max_ops=None)))
    nums = list(_numbers(j))
    assert nums, "no delta was found: the check would pass vacuously"
    assert [p for p, v in nums if v != 0] == []
    assert j["mode"] == "matched"
    assert j["sms"] == []
    assert j["ops"]["only_in_a"] == j["ops"]["only_in_b"] == j["ops"]["moved_sm"] == 0
    cp = j["critical_path"]
    assert cp["only_in_a"] == cp["only_in_b"] == cp["reason_changed"] == []
    assert cp["common"] == cp["steps_a"] == cp["steps_b"]


def test_self_diff_is_all_zeros_golden(ab):
    a, _ = ab
    d = diff(a, a)
    _assert_zero_diff(d)
    assert d.ops["matched"] == 4


def test_self_diff_is_all_zeros_synthetic(tmp_path):
    table, meta = synthetic.build(num_sms=8, num_seqs=40, chunk_tokens=256, seed=1)
    t = read_trace(write_trace(tmp_path / "s.arrow", table, meta))
    d = diff(t, t)
    _assert_zero_diff(d)
    assert d.ops["matched"] == len(t.meta.tasks)


def test_golden_a_vs_b(ab):
    a, b = ab
    d = diff(a, b)
    assert d.mode == "matched"
    assert d.makespan_delta_us == 0.05
    assert d.totals == {"busy_us": {"a": 0.45, "b": 0.45, "delta": 0.0},
                        "wait_us": {"a": 0.07, "b": 0.12, "delta": 0.05},
                        "idle_us": {"a": 0.08, "b": 0.13, "delta": 0.05}}
    assert d.by_kind_us["wait"] == {"a": 0.09, "b": 0.14, "delta": 0.05}
    assert d.opcode_mean_us["reduction"]["delta"] == 0.05 and d.opcode_mean_us["partial"]["delta"] == 0.0
    assert d.opcode_count["partial"] == {"a": 3, "b": 3, "delta": 0}
    assert d.ops["matched"] == 4 and d.ops["only_in_a"] == d.ops["only_in_b"] == 0
    # matched by content although every task id differs between A and B
    by_kv = {(c.signature["seq"], c.signature["kv_start"], c.signature["kv_end"]): c for c in d.op_changes}
    red = by_kv[(0, 0, 160)]
    assert (red.a["task"], red.b["task"], red.dur_delta_us, red.start_shift_us) == (2, 12, 0.05, 0.0)
    assert red.signature["inputs"] == [[0, 1, 0, 64], [0, 1, 64, 160]]
    s1 = by_kv[(1, 0, 32)]
    assert (s1.a["instr"], s1.b["instr"], s1.dur_delta_us, s1.start_shift_us) == (1, 0, 0.0, -0.18)
    assert (by_kv[(0, 64, 160)].start_shift_us, by_kv[(0, 0, 64)].start_shift_us) == (0.05, 0.0)
    assert d.op_changes[0] == red  # largest |duration delta| first
    assert [s["sm"] for s in d.sms] == [0]
    cp = d.critical_path
    assert (cp["steps_a"], cp["steps_b"], cp["common"], cp["end_delta_us"]) == (2, 3, 2, 0.05)
    assert cp["only_in_a"] == []
    assert [(s["seq"], s["kv_start"], s["reason"]) for s in cp["only_in_b"]] == [(1, 0, "start")]
    assert [(c["a"]["reason"], c["b"]["reason"]) for c in cp["reason_changed"]] == [("start", "queue")]


def test_different_workloads_compare_aggregates(tmp_path, ab):
    a, _ = ab
    table, meta = synthetic.build(num_sms=4, num_seqs=6, chunk_tokens=256, seed=0)
    other = read_trace(write_trace(tmp_path / "s.arrow", table, meta))
    d = diff(a, other)
    assert d.mode == "aggregate"
    assert "workloads differ" in d.note and "only aggregates" in d.note
    assert d.ops is None and len(d.op_changes) == 0
    assert d.makespan_delta_us == round(d.makespan_b_us - d.makespan_a_us, 4) != 0
    assert d.by_kind_us["load"]["a"] == 0.21
    assert "only_in_a" not in d.critical_path


def test_same_workload_without_common_ops_is_aggregate(tmp_path, ab):
    """Seq 0 as one partial, seq 1 split in two and reduced: nothing computes what A's instructions compute."""
    a, _ = ab
    tasks = [task(0, "partial", 0, 0, 160, final=True), task(1, "partial", 1, 0, 16), task(2, "partial", 1, 16, 32),
             task(3, "reduction", 1, 0, 32, inputs=(1, 2), final=True)]
    b = TraceBuilder(two_sm.WORKLOAD, 2, tasks)
    C = "controller"
    b.span(0, C, "instruction", 0, 0, 0, 200).span(1, C, "instruction", 0, 1, 0, 40)
    b.span(1, C, "instruction", 1, 2, 40, 80).span(1, C, "instruction", 2, 3, 80, 120)
    d = diff(a, _write(tmp_path, b, "c.arrow"))
    assert d.mode == "aggregate"
    assert "no instruction computes the same thing" in d.note


def test_cli_diff_text_json_html(ab, tmp_path, capsys):
    a, b = ab
    assert main(["diff", str(a.path), str(b.path)]) == 0
    out = capsys.readouterr().out
    assert "mode: matched" in out and "makespan us" in out and "+0.050" in out
    assert "only in B: SM 1 #0 partial seq 1 kv [0,32)" in out

    assert main(["diff", str(a.path), str(b.path), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    j = json.loads(out)
    assert j["makespan_delta_us"] == 0.05 and j["op_changes_total"] == 4 and len(j["op_changes"]) == 4

    html_path = tmp_path / "report" / "d.html"
    assert main(["diff", str(a.path), str(b.path), "--html", str(html_path)]) == 0
    page = html_path.read_text()
    # self-contained: plotly.js is inlined, nothing is fetched
    assert "<script src=" not in page.replace('<script src="data:', "")
    assert "Plotly.newPlot" in page and len(page) > 1_000_000
    assert "A: golden-a" in page and "B: golden-b" in page
    assert '"matches":"x2"' in page  # the two Gantts share one x axis
    assert "Matched instructions" in page and "steps only in b" in page


def test_cli_diff_help_has_example(capsys):
    with pytest.raises(SystemExit):
        main(["diff", "--help"])
    assert "mlaprof diff traces/static.arrow traces/makespan.arrow" in capsys.readouterr().out


# ---- traces from the simulator ------------------------------------------------------------------------------

@pytest.mark.parametrize("workload", ["seed-representative", "b64-rand256to1024-q4", "b132-4096-q4"])
def test_simulated_static_vs_makespan(workload):
    from tests.golden.simulated import simulated

    a, b = simulated(workload, "static"), simulated(workload, "makespan")
    d = diff(a, b)
    assert d.makespan_delta_us == pytest.approx(d.makespan_b_us - d.makespan_a_us, abs=1e-4)
    assert d.makespan_a_us == pytest.approx(a.makespan_ns / 1000)
    if d.mode == "matched":
        assert d.ops["matched"] + d.ops["only_in_a"] == len(a.meta.tasks)
        assert d.ops["matched"] + d.ops["only_in_b"] == len(b.meta.tasks)
    _assert_zero_diff(diff(b, b))


def test_simulated_same_schedule_with_jitter_matches_every_op():
    """One schedule simulated twice with different noise: every instruction is matched, and something moved."""
    from tests.golden.simulated import simulated

    a = simulated("b64-rand256to1024-q4", "makespan", jitter=0.1, seed=1)
    b = simulated("b64-rand256to1024-q4", "makespan", jitter=0.1, seed=2)
    d = diff(a, b)
    assert d.mode == "matched"
    assert d.ops["matched"] == len(a.meta.tasks) and d.ops["only_in_a"] == d.ops["only_in_b"] == 0
    assert d.ops["moved_sm"] == 0
    assert d.ops["dur_delta_us"]["max_abs"] > 0
    top = d.op_changes[0]
    assert abs(top.dur_delta_us) == d.ops["dur_delta_us"]["max_abs"]


def test_cli_output_into_a_closed_pipe_is_quiet(ab):
    """`mlaprof diff A B | head`: the reader left; no traceback, exit status 141 (as SIGPIPE would give)."""
    import os
    import subprocess
    import sys

    a, b = ab
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first write, so every write fails
    try:
        p = subprocess.run([sys.executable, "-m", "mlaprof", "diff", str(a.path), str(b.path)], stdout=w,
                           stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(w)
    assert p.stderr == ""
    assert p.returncode == 141


def test_different_sm_counts(capsys):
    """132 vs 64 SMs on one workload: instructions still match by content, per-SM deltas cover all 132 SMs."""
    from tests.golden.simulated import simulated

    a, b = simulated("b64-512-q2", "makespan"), simulated("b64-512-q2", "makespan", num_sms=64)
    d = diff(a, b, top_sms=200)
    assert d.a["sm_count"] == 132 and d.b["sm_count"] == 64
    assert max(s["sm"] for s in d.sms) >= 64  # SMs B does not have show up as changed (they lost their work)
    gone = [s for s in d.sms if s["sm"] >= 64]
    assert all(s["instructions"]["b"] == 0 and s["busy_us"]["b"] == 0 for s in gone)
    assert main(["diff", str(a.path), str(b.path)]) == 0
    assert "mode: " in capsys.readouterr().out


def test_cli_aggregate_mode_and_bad_top(tmp_path, ab, capsys):
    a, _ = ab
    table, meta = synthetic.build(num_sms=4, num_seqs=6, chunk_tokens=256, seed=0)
    other = write_trace(tmp_path / "s.arrow", table, meta)
    assert main(["diff", str(a.path), str(other)]) == 0
    out = capsys.readouterr().out
    assert "mode: aggregate: the workloads differ" in out and "instructions:" not in out
    assert main(["diff", str(a.path), str(other), "--top", "-1"]) == 2
    assert "--top must be >= 0" in capsys.readouterr().err
