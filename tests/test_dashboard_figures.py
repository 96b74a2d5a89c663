"""Gantt, diff and summary figures on synthetic traces: what is drawn, filters, hover data, numbers."""

import base64
import json

import numpy as np
import plotly.io as pio
import pytest

from dashboard import figures
from dashboard.data import BAR_KINDS, Filters, GanttData
from dashboard.synthetic import synthesize
from dashboard.view import View
from mlaprof import analysis
from mlaprof.trace.io import Trace
from mlaprof.trace.schema import KIND_NAMES


def _decode(arr):
    if isinstance(arr, dict):
        a = np.frombuffer(base64.b64decode(arr["bdata"]), dtype={"f4": np.float32, "f8": np.float64,
                                                                "i4": np.int32}[arr["dtype"]])
        return a.reshape([int(x) for x in arr["shape"].split(",")]) if "shape" in arr else a
    return np.asarray(arr)


@pytest.fixture(scope="module")
def trace():
    table, meta = synthesize(6000, num_sms=132, seed=1)
    return Trace(table=table, meta=meta)


@pytest.fixture(scope="module")
def data(trace):
    return GanttData.of(trace, "t.arrow")


def _bars(fig):
    """kind name -> (x pairs, y) of the drawn bars."""
    out = {}
    for tr in fig["data"]:
        if tr["mode"] == "lines" and tr["legendgroup"] in BAR_KINDS:
            x, y = _decode(tr["x"]).reshape(-1, 3), _decode(tr["y"]).reshape(-1, 3)
            assert np.all(np.isnan(x[:, 2])) and np.all(x[:, 1] >= x[:, 0])
            out[tr["legendgroup"]] = (x[:, :2], y[:, 0])
    return out


def test_raw_gantt_draws_every_span_of_every_sm(trace, data):
    fig, info = figures.gantt_figure(data, Filters(), View())
    assert info["raw"]
    bars = _bars(fig)
    kinds = trace.col("kind")
    for k in BAR_KINDS:
        assert len(bars[k][1]) == int(np.sum(kinds == k)), k
    sms_with_spans = set(np.unique(trace.col("sm")).tolist())
    assert set(np.concatenate([y for _, y in bars.values()]).astype(int).tolist()) == sms_with_spans == set(range(132))
    boundaries = [t for t in fig["data"] if t.get("legendgroup") == "boundary"][0]
    assert len(_decode(boundaries["x"])) == 3 * 2 * int(np.sum(kinds == "instruction"))
    # JSON is typed arrays (base64), not lists of numbers
    assert '"bdata"' in pio.json.to_json_plotly(fig)


def test_hover_names_the_instruction(trace, data):
    fig, _ = figures.gantt_figure(data, Filters(kinds=("wait",)), View())
    hover = [t for t in fig["data"] if t["mode"] == "markers"]
    assert hover and all("wait" in t["hovertemplate"] for t in hover)
    cd, y = _decode(hover[0]["customdata"]), _decode(hover[0]["y"])
    sm, instr, start = int(round(y[0])), int(cd[0, 0]), cd[0, 7]
    t = trace.table.to_pylist()
    match = [r for r in t if r["kind"] == "wait" and r["sm"] == sm and r["instr"] == instr
             and abs(r["start_ns"] / 1000 - start) < 1e-3]
    assert match and cd[0, 4] == match[0]["kv_start"] and cd[0, 5] == match[0]["kv_end"]
    assert cd[0, 1] == match[0]["seq"] and cd[0, 8] == pytest.approx((match[0]["end_ns"] - match[0]["start_ns"]) / 1000, abs=1e-3)
    assert cd[0, 6] == match[0]["aux"] and "SM %{y:.0f}" in hover[0]["hovertemplate"]


def test_filters(trace, data):
    kinds, sms, seqs, ops = trace.col("kind"), trace.col("sm"), trace.col("seq"), trace.col("opcode")
    fig, _ = figures.gantt_figure(data, Filters(kinds=("compute", "store"), opcodes=("reduction",),
                                                sm_range=(10, 40), seqs=(1, 3)), View())
    bars = _bars(fig)
    want = (np.isin(kinds, ["compute"]) & (ops == "reduction") & (sms >= 10) & (sms <= 40) & np.isin(seqs, [1, 3]))
    assert len(bars["compute"][1]) == int(want.sum()) > 0
    assert len(bars["load"][1]) == 0 if "load" in bars else True
    assert set(bars["compute"][1].astype(int)) <= set(range(10, 41))
    assert fig["layout"]["yaxis"]["range"] == [40.5, 9.5]


def test_split_roles_puts_roles_on_sub_rows(data):
    fig, _ = figures.gantt_figure(data, Filters(split_roles=True), View())
    bars = _bars(fig)
    for kind, offset in (("setup", -0.3), ("load", 0.0), ("store", 0.3)):
        y = bars[kind][1]
        np.testing.assert_allclose(y - np.round(y), offset, atol=1e-5)


def test_zoomed_out_big_trace_is_aggregated_and_small():
    table, meta = synthesize(60_000, num_sms=132, seed=2)
    d = GanttData.of(Trace(table=table, meta=meta), "big")
    fig, info = figures.gantt_figure(d, Filters(), View(), raw_limit=5000)
    assert not info["raw"] and info["visible_spans"] > 5000
    assert info["sms_drawn"] == list(range(132))
    # bounded by rows x buckets whatever the span count, at well under 100 bytes of JSON a bar
    assert info["bars"] <= 132 * 1000
    assert len(pio.json.to_json_plotly(fig)) < 100 * info["bars"] + 50_000
    zoom = (d.makespan_us * 0.5, d.makespan_us * 0.5 + 2.0)
    fig, info = figures.gantt_figure(d, Filters(), View(x=zoom), raw_limit=5000)
    assert info["raw"] and fig["layout"]["xaxis"]["range"] == list(zoom)


def test_diff_figure_shares_the_time_axis(trace, data):
    table, meta = synthesize(6000, num_sms=132, seed=1, slowdown=0.8)
    b = GanttData.of(Trace(table=table, meta=meta), "b.arrow")
    fig, ia, ib = figures.diff_figure(data, b, Filters(), View())
    lay = fig["layout"]
    assert lay["xaxis"]["matches"] == "x2" and lay["xaxis"]["range"] == lay["xaxis2"]["range"]
    assert lay["xaxis"]["range"][1] == pytest.approx(max(data.makespan_us, b.makespan_us))
    assert {t["yaxis"] for t in fig["data"]} == {"y", "y2"}
    assert ia["sms_drawn"] == ib["sms_drawn"] == list(range(132))


def test_summary_figures_show_the_library_numbers(trace):
    an = analysis.analyze(trace)
    fig = figures.sm_states_figure(an)
    busy, wait, idle = (_decode(t["y"]) for t in fig["data"])
    np.testing.assert_allclose(busy, an.sm_busy_us, rtol=1e-6)
    np.testing.assert_allclose(busy + wait + idle, an.makespan_us, rtol=1e-5)
    kinds = figures.kind_totals_figure(an)["data"][0]
    assert kinds["y"] == [an.by_kind_us[k] for k in BAR_KINDS]
    hist = figures.duration_histogram_figure(an)["data"]
    assert {h["name"] for h in hist} == {"partial", "reduction"}
    assert sum(len(_decode(h["x"])) for h in hist) == an.num_instructions
    json.dumps(fig)  # plain JSON-able dicts


# ---- the critical path over the bars ---------------------------------------------------------------------------

def _critical(fig):
    steps = [t for t in fig["data"] if t.get("name") == "critical path"]
    hand = [t for t in fig["data"] if t.get("name") == "critical path: semaphore hand-off"]
    return steps, hand


def test_critical_path_is_drawn_step_by_step(trace):
    """Each step of the analysis' path on its SM's row, from its binding wait's end (or its start) to its end;
    each binding wait a dotted hand-off from the release on the awaited SM; hover names the step."""
    path = analysis.analyze(trace).critical_path
    assert any(s.waited_for for s in path) and len(path) >= 2
    d = GanttData.of(trace, "t.arrow", path)
    fig, info = figures.gantt_figure(d, Filters(), View())
    (steps,), hand = _critical(fig)
    assert info["critical_steps"] == len(path) and steps["type"] == "scattergl"  # WebGL over WebGL bars
    x, y = _decode(steps["x"]).reshape(-1, 3), _decode(steps["y"]).reshape(-1, 3)
    begin = [s.waited_for["wait_end_us"] if s.waited_for else s.start_us for s in path]
    np.testing.assert_allclose(x[:, 0], begin, rtol=1e-6)
    np.testing.assert_allclose(x[:, 1], [s.end_us for s in path], rtol=1e-6)
    np.testing.assert_array_equal(y[:, 0], [s.sm for s in path])
    assert f"{len(path)}/{len(path)} · SM {path[-1].sm} #{path[-1].instr}" in steps["text"][-1]
    waits = [s for s in path if s.waited_for]
    hx, hy = _decode(hand[0]["x"]).reshape(-1, 3), _decode(hand[0]["y"]).reshape(-1, 3)
    np.testing.assert_allclose(hx[:, 0], [s.waited_for["release_us"] for s in waits], rtol=1e-6)
    np.testing.assert_array_equal(hy[:, :2], [[s.waited_for["sm"], s.sm] for s in waits])


def test_critical_path_off_absent_and_aggregated(trace):
    path = analysis.analyze(trace).critical_path
    d = GanttData.of(trace, "t.arrow", path)
    fig, info = figures.gantt_figure(d, Filters(critical=False), View())
    assert _critical(fig) == ([], []) and info["critical_steps"] == 0
    fig, info = figures.gantt_figure(GanttData.of(trace, "t.arrow"), Filters(), View())  # no analysis given
    assert _critical(fig) == ([], []) and info["critical_steps"] == 0
    fig, info = figures.gantt_figure(d, Filters(), View(), raw_limit=100)  # aggregated: still drawn
    assert not info["raw"] and [t["type"] for t in _critical(fig)[0]] == ["scatter"]  # SVG over the heatmap
    b = GanttData.of(trace, "b.arrow", path)
    fig, ia, ib = figures.diff_figure(d, b, Filters(), View())  # both panels, one legend entry
    steps, _ = _critical(fig)
    assert [t["yaxis"] for t in steps] == ["y", "y2"] and [t["showlegend"] for t in steps] == [True, False]


def test_critical_path_checkbox():
    from dashboard.panels import filters

    assert filters(BAR_KINDS, ["partial"], None, [], ["critical"]).critical
    assert not filters(BAR_KINDS, ["partial"], None, [], ["boundaries"]).critical
