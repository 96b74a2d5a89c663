"""mlaprof.export and `mlaprof export`: the output is valid trace-event JSON that Perfetto can load."""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from mlaprof.cli.main import main
from mlaprof.export import assign_lanes, export
from mlaprof.trace.io import read_trace, write_trace
from tests.golden import synthetic, two_sm


@pytest.fixture
def golden(tmp_path):
    b = two_sm.build_a(gpu_name="NVIDIA H100 80GB HBM3")
    return read_trace(write_trace(tmp_path / "a.arrow", b.table(), b.meta))


@pytest.fixture(scope="module")
def pipelined(tmp_path_factory):
    """Synthetic trace whose producer loads overlap (4 tiles in flight), so lanes are needed."""
    table, meta = synthetic.build(num_sms=4, num_seqs=12, chunk_tokens=512, seed=1)
    return read_trace(write_trace(tmp_path_factory.mktemp("exp") / "p.arrow", table, meta))


def check_trace_events(doc: dict) -> dict:
    """Validate against the trace-event format; returns events grouped by phase. Raises AssertionError."""
    assert isinstance(doc, dict) and isinstance(doc["traceEvents"], list)
    by_ph = defaultdict(list)
    for ev in doc["traceEvents"]:
        assert ev["ph"] in ("M", "X", "s", "f"), ev
        assert isinstance(ev["pid"], int)
        by_ph[ev["ph"]].append(ev)
    thread_names = {}
    for ev in by_ph["M"]:
        assert ev["name"] in ("process_name", "process_sort_index", "thread_name", "thread_sort_index")
        assert isinstance(ev["args"], dict)
        if ev["name"] == "thread_name":
            thread_names[(ev["pid"], ev["tid"])] = ev["args"]["name"]
    assert any(ev["name"] == "process_name" for ev in by_ph["M"])
    slices = defaultdict(list)
    for ev in by_ph["X"]:
        assert isinstance(ev["name"], str) and isinstance(ev["cat"], str)
        assert isinstance(ev["ts"], (int, float)) and isinstance(ev["dur"], (int, float)) and ev["dur"] >= 0
        assert (ev["pid"], ev["tid"]) in thread_names, "every thread is named"
        slices[(ev["pid"], ev["tid"])].append((ev["ts"], ev["ts"] + ev["dur"]))
    # complete events of one thread must nest or be disjoint (Perfetto drops partially overlapping ones)
    for key, spans in slices.items():
        stack = []
        for s, e in sorted(spans, key=lambda x: (x[0], -x[1])):
            while stack and stack[-1] <= s + 1e-9:
                stack.pop()
            assert not stack or e <= stack[-1] + 1e-9, f"partial overlap on thread {thread_names[key]}"
            stack.append(e)
    starts = {ev["id"]: ev for ev in by_ph["s"]}
    finishes = {ev["id"]: ev for ev in by_ph["f"]}
    assert len(starts) == len(by_ph["s"]) and len(finishes) == len(by_ph["f"]), "flow ids are unique"
    assert starts.keys() == finishes.keys(), "every flow start has its finish"
    for fid, s in starts.items():
        f = finishes[fid]
        assert f.get("bp") == "e"
        for ev in (s, f):  # each end binds to a slice on its own thread that encloses its timestamp
            assert any(a - 1e-9 <= ev["ts"] <= b + 1e-9 for a, b in slices[(ev["pid"], ev["tid"])]), ev
    return by_ph


def test_golden_export(golden, tmp_path):
    counts = export(golden, tmp_path / "a.json")
    doc = json.loads((tmp_path / "a.json").read_text())
    ev = check_trace_events(doc)
    assert counts == {"M": 14, "X": 29, "s": 2, "f": 2}
    assert len(ev["X"]) == len(golden)
    names = {e["args"]["name"] for e in ev["M"] if e["name"] == "thread_name"}
    assert names == {f"SM {s} {r}" for s in (0, 1) for r in ("controller", "producer", "consumer")}
    proc = [e for e in ev["M"] if e["name"] == "process_name"][0]["args"]["name"]
    assert proc.startswith("NVIDIA H100 80GB HBM3 - golden-two-sm - golden-a")
    # exact times in µs; the reduction's instruction span
    red = [e for e in ev["X"] if e["cat"].startswith("instruction") and e["args"]["opcode"] == "reduction"][0]
    assert (red["ts"], red["dur"], red["name"]) == (0.1, 0.2, "reduction s0 kv[0,160)")
    # flows go from the producing task's STORE (consumer thread) to the WAIT that waited on it
    tid_name = {e["tid"]: e["args"]["name"] for e in ev["M"] if e["name"] == "thread_name"}
    flows = sorted((tid_name[s["tid"]], s["ts"], tid_name[f["tid"]], f["ts"])
                   for s in ev["s"] for f in ev["f"] if s["id"] == f["id"])
    assert flows == [("SM 0 consumer", 0.095, "SM 0 controller", 0.11),
                     ("SM 1 consumer", 0.19, "SM 0 controller", 0.155)]
    assert doc["otherData"]["scheduler"] == "golden-a"
    # the critical path (SM 1's kv [64,160) partial, then SM 0's reduction) is marked on its instructions only
    marked = sorted((e["args"]["critical_step"], e["args"]["sm"], e["args"]["instr"], e["cat"])
                    for e in ev["X"] if "critical_step" in e["args"])
    assert marked == [(1, 1, 0, "instruction,critical path"), (2, 0, 1, "instruction,critical path")]
    assert sum("critical path" in e["cat"] for e in ev["X"]) == 2


def test_pipelined_loads_get_lanes(pipelined, tmp_path):
    export(pipelined, tmp_path / "p.json", "chrome")
    ev = check_trace_events(json.loads((tmp_path / "p.json").read_text()))
    names = {e["args"]["name"] for e in ev["M"] if e["name"] == "thread_name"}
    assert "SM 0 producer #2" in names  # overlapping tile loads went to a second lane
    assert len(ev["X"]) == len(pipelined)
    waits = int(((pipelined.col("kind") == "wait") & (pipelined.col("wait_task") >= 0)).sum())
    assert len(ev["s"]) == waits > 0


def test_assign_lanes():
    # group 0: [0,10] holds [2,5] and [5,9] (nested); [8,12] overlaps [0,10] partially -> lane 1
    group = np.array([0, 0, 0, 0, 1, 1])
    start = np.array([0, 2, 5, 8, 0, 1])
    end = np.array([10, 5, 9, 12, 5, 6])
    same = np.zeros(6, int)
    assert assign_lanes(group, start, end, same).tolist() == [0, 0, 0, 1, 0, 1]
    # identical and zero-length spans nest
    assert assign_lanes(np.zeros(3, int), np.array([0, 0, 3]), np.array([5, 5, 3]), np.zeros(3, int)).tolist() == [0, 0, 0]


def test_prefetched_instruction_keeps_its_spans():
    """Controller fetching ahead: instruction 1 [3,20] opens while 0 [0,10] runs; 1's setup [3,4] and wait
    [4,15] go with instruction 1 (lane 1), not under instruction 0, although the setup would fit there."""
    group = np.zeros(5, int)
    start = np.array([0, 1, 3, 3, 4])
    end = np.array([10, 2, 20, 4, 15])
    instr = np.array([0, 0, 1, 1, 1])
    assert assign_lanes(group, start, end, instr).tolist() == [0, 0, 1, 1, 1]
    # once instruction 0 has ended, instruction 2 goes back to lane 0, while instruction 1's zero-length wait
    # at 15 (lane 0 is empty by then) stays under instruction 1
    lanes = assign_lanes(np.zeros(7, int), np.r_[start, 21, 15], np.r_[end, 30, 15], np.r_[instr, 2, 1])
    assert lanes.tolist() == [0, 0, 1, 1, 1, 0, 1]


def test_cli_export(golden, tmp_path, capsys):
    out = tmp_path / "deep" / "x.json"
    assert main(["export", str(golden.path), "--format", "perfetto", "--out", str(out)]) == 0
    assert "29 spans, 2 semaphore flows" in capsys.readouterr().out
    check_trace_events(json.loads(out.read_text()))
    assert main(["export", str(golden.path), "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_failed_export_keeps_existing_file(golden, tmp_path, monkeypatch):
    out = tmp_path / "x.json"
    out.write_text("previous")
    import mlaprof.export as ex

    def boom(trace):
        yield "M", "{}"
        raise RuntimeError("interrupted")

    monkeypatch.setattr(ex, "trace_events", boom)
    with pytest.raises(RuntimeError):
        export(golden, out)
    assert out.read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.arrow", "x.json"]  # no temporary file left


def _trace_processor_binary() -> str | None:
    """A trace_processor_shell already on this machine; never downloaded at test time."""
    for cand in (os.environ.get("MLAPROF_TRACE_PROCESSOR"), shutil.which("trace_processor_shell"),
                 shutil.which("trace_processor")):
        if cand and Path(cand).is_file():
            return cand
    cache = Path.home() / ".local" / "share" / "perfetto" / "prebuilts"
    found = sorted(p for p in cache.glob("trace_processor_shell*") if p.is_file() and not p.name.endswith(".tmp"))
    return str(found[-1]) if found else None


def test_perfetto_trace_processor_loads_export(pipelined, tmp_path):
    tp_mod = pytest.importorskip("perfetto.trace_processor")
    binary = _trace_processor_binary()
    if binary is None:
        pytest.skip("no trace_processor_shell binary here (the perfetto package downloads one; tests never do)")
    export(pipelined, tmp_path / "p.json")
    config = tp_mod.TraceProcessorConfig(bin_path=binary)
    with tp_mod.TraceProcessor(trace=str(tmp_path / "p.json"), config=config) as tp:
        n_slices = next(iter(tp.query("select count(*) as n from slice"))).n
        n_flows = next(iter(tp.query("select count(*) as n from flow"))).n
    assert n_slices == len(pipelined)
    waits = int(((pipelined.col("kind") == "wait") & (pipelined.col("wait_task") >= 0)).sum())
    assert n_flows == waits


@pytest.mark.parametrize("workload", ["seed-representative", "b132-4096-q4"])
def test_simulated_export_is_valid(workload, tmp_path):
    """The simulator's controller fetches ahead and its loads pipeline across instructions: lanes keep it valid."""
    from tests.golden.simulated import simulated

    t = simulated(workload, "makespan")
    counts = export(t, tmp_path / "s.json")
    ev = check_trace_events(json.loads((tmp_path / "s.json").read_text()))
    assert counts["X"] == len(ev["X"]) == len(t)
    waits = int(((t.col("kind") == "wait") & (t.col("wait_task") >= 0)).sum())
    assert counts["s"] == counts["f"] == waits
    # every controller span of one instruction sits on one thread, under that instruction's span
    threads = defaultdict(set)
    for e in ev["X"]:
        if e["cat"].split(",")[0] in ("instruction", "setup", "wait"):  # (a critical instruction: two categories)
            threads[(e["args"]["sm"], e["args"]["instr"])].add(e["tid"])
    assert all(len(v) == 1 for v in threads.values())
