"""The synthetic traces the dashboard is tested and benchmarked on follow the kernel's event conventions."""

import math

import numpy as np

from dashboard.synthetic import synthesize
from mlaprof import format as fmt
from mlaprof.trace.io import Trace
from mlaprof.trace.validate import validate_table


def test_event_conventions():
    table, meta = synthesize(5000, num_sms=16, seed=3)
    validate_table(table, meta)
    assert meta.source == "simulated" and meta.extra["synthetic"] and meta.timer_source == "synthetic"
    t = Trace(table=table, meta=meta)
    rows = table.to_pylist()
    tasks = {x["id"]: x for x in meta.tasks}
    by_instr = {}
    for r in rows:
        by_instr.setdefault((r["sm"], r["instr"]), []).append(r)
    assert len(by_instr) == len(tasks)
    for spans in by_instr.values():
        kinds = [s["kind"] for s in spans]
        task = tasks[spans[0]["task"]]
        assert kinds.count("instruction") == 1 and kinds.count("setup") == 1 and kinds.count("store") == 1
        roles = {s["kind"]: s["role"] for s in spans}
        assert roles["setup"] == "controller" and roles["store"] == "consumer"
        if task["op"] == "partial":
            tiles = math.ceil((task["kv_end"] - task["kv_start"]) / fmt.KV_TILE_TOKENS)
            for kind, role in (("load", "producer"), ("compute", "consumer")):
                aux = sorted(s["aux"] for s in spans if s["kind"] == kind)
                assert aux == list(range(tiles)) and {s["role"] for s in spans if s["kind"] == kind} == {role}
        else:
            waits = sorted((s["aux"], s["wait_task"]) for s in spans if s["kind"] == "wait")
            assert waits == list(enumerate(task["inputs"]))
            assert kinds.count("load") == len(task["inputs"]) and kinds.count("compute") == 1
            stored = [[x for x in rows if x["task"] == src and x["kind"] == "store"][0]["end_ns"]
                      for src in task["inputs"]]
            for s in spans:  # input i is loaded after it was stored; the merge after every input was
                if s["kind"] == "load":
                    assert s["start_ns"] >= stored[s["aux"]]
                if s["kind"] in ("compute", "store"):
                    assert s["start_ns"] >= max(stored)
    assert int(t.col("start_ns").min()) == 0


def test_size_scales():
    for n in (5000, 40000, 200_000):
        table, _ = synthesize(n, num_sms=132)
        assert 0.8 * n <= table.num_rows <= 1.25 * n, (n, table.num_rows)


def test_slowdown_scales_time():
    a, _ = synthesize(3000, seed=1)
    b, _ = synthesize(3000, seed=1, slowdown=0.5)
    ra, rb = a.column("end_ns").to_numpy().max(), b.column("end_ns").to_numpy().max()
    assert np.isclose(rb / ra, 0.5, rtol=0.05)
