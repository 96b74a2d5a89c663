"""Every trace bundled under traces/ opens in the dashboard and its Gantt draws every SM and every kind.

(The browser tests draw one trace per workload in chromium; this checks all of them, without a browser.)
"""

import base64

import numpy as np
import pytest

from dashboard import figures
from dashboard.app import DEFAULT_DIR
from dashboard.data import BAR_KINDS, Filters
from dashboard.files import TraceDir
from dashboard.store import TraceStore
from dashboard.view import View

BUNDLED = TraceDir(DEFAULT_DIR).discover() if DEFAULT_DIR.is_dir() else []


def _drawn(fig) -> dict[str, set[int]]:
    out = {}
    for t in fig["data"]:
        if t["mode"] == "lines" and t["legendgroup"] in BAR_KINDS:
            y = np.frombuffer(base64.b64decode(t["y"]["bdata"]), np.float32)
            out[t["legendgroup"]] = set(np.round(y[~np.isnan(y)]).astype(int).tolist())
    return out


@pytest.fixture(scope="module")
def store():
    return TraceStore(TraceDir(DEFAULT_DIR), capacity=2)


@pytest.mark.skipif(not BUNDLED, reason="no traces bundled under traces/ yet")
@pytest.mark.parametrize("rel", BUNDLED)
def test_bundled_trace_draws_every_sm_and_kind(store, rel):
    row = store.row(rel)
    assert row.ok, row.error
    ld = store.load(rel)
    t = ld.trace
    kinds, sms = t.col("kind"), t.col("sm")
    want = {k: set(np.unique(sms[kinds == k]).tolist()) for k in BAR_KINDS if np.any(kinds == k)}
    fig, info = figures.gantt_figure(ld.gantt, Filters(), View())
    drawn = _drawn(fig)
    assert set().union(*drawn.values()) == set().union(*want.values())
    if info["raw"]:
        assert {k: v for k, v in drawn.items() if v} == want
    else:
        fig, _ = figures.gantt_figure(ld.gantt, Filters(split_roles=True), View())
        assert {k for k, v in _drawn(fig).items() if v} == set(want)
    assert ld.analysis.makespan_us == pytest.approx(ld.gantt.makespan_us, abs=1e-3)
