"""The store: catalogue rows from the library, error rows for bad files (no server paths), caching."""

import os

import numpy as np
import pyarrow as pa
import pytest

from dashboard.files import TraceDir
from dashboard.store import TraceStore
from dashboard.synthetic import synthesize, write_examples
from mlaprof import analysis
from mlaprof.errors import UserError
from mlaprof.trace.io import read_trace, write_trace


@pytest.fixture
def folder(tmp_path):
    write_examples(tmp_path / "sim", spans=3000)
    (tmp_path / "corrupt.arrow").write_bytes(b"ARROW1" + os.urandom(200))
    with pa.ipc.new_file(str(tmp_path / "foreign.arrow"), pa.schema([("x", pa.int32())])) as w:
        w.write_table(pa.table({"x": pa.array([1, 2, 3], pa.int32())}))
    return tmp_path


def test_catalogue_rows(folder):
    rows = {r.path: r for r in TraceStore(TraceDir(folder)).catalogue()}
    assert set(rows) == {"corrupt.arrow", "foreign.arrow", "sim/synthetic__makespan.arrow",
                         "sim/synthetic__static.arrow"}
    ok = rows["sim/synthetic__static.arrow"]
    an = analysis.analyze(read_trace(folder / "sim" / "synthetic__static.arrow"))
    assert ok.ok and ok.scheduler == "static" and ok.source == "simulated" and ok.spans == an.num_spans
    assert ok.makespan_us == an.makespan_us
    assert ok.busy_pct == pytest.approx(100 * an.busy_us / (an.busy_us + an.wait_us + an.idle_us), abs=0.05)
    for bad, words in (("corrupt.arrow", "not a readable Arrow trace"), ("foreign.arrow", "not written by mlaprof")):
        assert not rows[bad].ok and words in rows[bad].error
        assert rows[bad].error.startswith(bad) and str(folder) not in rows[bad].error  # no server paths leak
        assert rows[bad].to_record()["status"] == "error"


def test_load_refuses_outside_and_caches(folder):
    store = TraceStore(TraceDir(folder / "sim"))
    with pytest.raises(UserError, match=r"'\.\.'"):
        store.load("../corrupt.arrow")
    a = store.load("synthetic__static.arrow")
    assert store.load("synthetic__static.arrow") is a
    table, meta = synthesize(2000, seed=5)
    write_trace(folder / "sim" / "synthetic__static.arrow", table, meta)  # rewritten in place: read again
    b = store.load("synthetic__static.arrow")
    assert b is not a and len(b.trace) == table.num_rows


def test_diff_comes_from_the_library(folder):
    store = TraceStore(TraceDir(folder / "sim"))
    d = store.diff("synthetic__static.arrow", "synthetic__makespan.arrow")
    assert d.mode == "matched"
    assert d.makespan_delta_us == pytest.approx(d.makespan_b_us - d.makespan_a_us, abs=1e-3) and d.makespan_delta_us < 0
    assert store.diff("synthetic__static.arrow", "synthetic__makespan.arrow") is d


def test_inconsistent_file_is_an_error_not_a_crash(folder):
    table, meta = synthesize(1000, num_sms=8)
    meta.sm_count = "many"  # metadata of the wrong type: validation itself trips over it
    t = table.replace_schema_metadata({b"mlaprof": meta.to_bytes()})
    with pa.ipc.new_file(str(folder / "odd.arrow"), t.schema) as w:
        w.write_table(t)
    row = TraceStore(TraceDir(folder)).row("odd.arrow")
    assert not row.ok and row.error.startswith("odd.arrow: ") and "\n" not in row.error
    np.testing.assert_equal(row.spans, 0)
