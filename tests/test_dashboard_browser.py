"""The dashboard in a real (headless chromium) browser: bars for every SM and kind, filters, zoom, diff, errors.

The app serves a temporary folder holding a copy of the bundled ``traces/`` plus synthetic traces and two
bad files.  What the page drew is read back from Plotly's own state (``gd._fullData``), not from our Python
objects, so these tests see what the browser got.

Set MLAPROF_DASH_SCREENSHOT=path to also save a screenshot of the Gantt page there (docs/dashboard.png).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from dashboard.app import DEFAULT_DIR, create_app
from dashboard.data import BAR_KINDS
from dashboard.synthetic import synthesize, write_examples
from mlaprof import diff as mdiff
from mlaprof.analysis import analyze
from mlaprof.trace.io import read_trace, write_trace

pytestmark = pytest.mark.browser

DRAWN = """
const gd = document.querySelector(arguments[0] + ' .js-plotly-plot');
if (!gd || !gd._fullData) return null;
const out = {};
const add = (key, sm) => { (out[key] = out[key] || new Set()).add(sm); };
for (const t of gd._fullData) {
  if (!t.visible) continue;
  const axis = t.yaxis || 'y';
  if (t.type === 'heatmap' && t.meta && t.meta.kinds) {  // aggregated: cell value -> kind, row -> SM
    for (let i = 0; i < t.z.length; i++)
      for (let j = 0; j < t.z[i].length; j++)
        if (t.z[i][j] > 0) add(axis + '|' + t.meta.kinds[t.z[i][j]], Math.round(t.y[i]));
    continue;
  }
  if (t.mode !== 'lines' || t.legendgroup === 'critical') continue;  // the critical path is no kind's bar
  out[axis + '|' + t.legendgroup] = out[axis + '|' + t.legendgroup] || new Set();
  for (let i = 0; i < t.y.length; i++) {
    const v = t.y[i];
    if (v === v && v !== null) add(axis + '|' + t.legendgroup, Math.round(v));
  }
}
const res = {};
for (const k in out) res[k] = Array.from(out[k]);
return res;
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("served")
    for src in sorted(DEFAULT_DIR.rglob("*.arrow")):  # whatever traces the repo bundles today
        dst = root / "bundled" / src.relative_to(DEFAULT_DIR)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    write_examples(root / "synthetic", spans=8000)
    table, meta = synthesize(60_000, seed=4)
    write_trace(root / "synthetic" / "synthetic-60k__static.arrow", table, meta)
    (root / "corrupt.arrow").write_bytes(b"ARROW1\x00\x00" + bytes(range(256)) * 4)
    with pa.ipc.new_file(str(root / "foreign.arrow"), pa.schema([("x", pa.int64())])) as w:
        w.write_table(pa.table({"x": pa.array([1, 2], pa.int64())}))
    return root


def _good(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.arrow")
                  if p.name not in ("corrupt.arrow", "foreign.arrow"))


def _start(dash_duo, root: Path):
    dash_duo.start_server(create_app(root))
    dash_duo.wait_for_element("#gantt .js-plotly-plot", timeout=20)
    # the first trace's Gantt and status come with the page (answers.first_page), not from a callback
    assert dash_duo.find_element("#gantt-status").text.startswith(_good(root)[0] + ":")
    return dash_duo


def _pick(dash_duo, dropdown: str, rel: str, status: str = "#gantt-status"):
    """Open the dropdown and click the option labelled ``rel`` (one lookup, not one per option)."""
    from selenium.webdriver.common.by import By

    dash_duo.find_element(dropdown).click()
    dash_duo.wait_for_element(".dash-dropdown-options", timeout=10)
    dash_duo.driver.find_element(
        By.XPATH, f"//*[contains(@class, 'dash-dropdown-option')][normalize-space()='{rel}']").click()
    _close_menus(dash_duo)
    if status:
        dash_duo.wait_for_contains_text(status, rel, timeout=30)


def _drawn(dash_duo, graph="#gantt") -> dict[str, set[int]]:
    got = dash_duo.driver.execute_script(DRAWN, graph) or {}
    return {k: set(v) for k, v in got.items()}


def _expected(path: Path) -> tuple[set[int], dict[str, set[int]]]:
    t = read_trace(path)
    kinds, sms = t.col("kind"), t.col("sm")
    per_kind = {k: set(np.unique(sms[kinds == k]).tolist()) for k in BAR_KINDS if np.any(kinds == k)}
    return set().union(*per_kind.values()), per_kind


def _until(cond, timeout: float):
    """Poll ``cond`` until it is true (what the page shows catches up with a callback)."""
    end = time.time() + timeout
    while not cond():
        assert time.time() < end, "the page did not reach the expected state in time"
        time.sleep(0.1)


def _close_menus(dash_duo):
    """Dash 4's dropdown menu stays open after a pick and would swallow the next click."""
    from selenium.webdriver.common.keys import Keys

    dash_duo.driver.switch_to.active_element.send_keys(Keys.ESCAPE)


def _set_checklist(dash_duo, checklist: str, wanted: set[str]):
    for box in dash_duo.find_elements(f"#{checklist} input"):
        if box.is_selected() != (box.get_attribute("value") in wanted):
            box.click()


def _one_per_workload(rels: list[str]) -> list[str]:
    """A bundled trace per workload (measured first) plus every synthetic one; tests/test_dashboard_bundled.py
    checks the figure of every bundled trace without a browser."""
    chosen, seen = [], set()
    for rel in sorted(rels, key=lambda r: ("simulated" in r, r)):
        workload = Path(rel).name.split("__")[0]
        if rel.startswith("synthetic/") or workload not in seen:
            chosen.append(rel)
            seen.add(workload)
    return chosen


def test_traces_draw_every_sm_and_kind(dash_duo, served):
    _start(dash_duo, served)
    dash_duo.find_element("#trace-a").click()
    labels = set(dash_duo.find_element(".dash-dropdown-options").text.split("\n"))
    _close_menus(dash_duo)
    assert set(_good(served)) <= labels  # every bundled and synthetic trace is listed, readable
    assert {"corrupt.arrow (error)", "foreign.arrow (error)"} <= labels
    for rel in _one_per_workload(_good(served)):
        _pick(dash_duo, "#trace-a", rel)
        k = analyze(read_trace(served / rel)).kv_stream  # the summary's KV stream card, as the analysis has it
        if k and k["tile_interval_us"] is not None:
            dash_duo.wait_for_contains_text("#summary-cards", f"{k['tile_interval_us']:.2f} µs", timeout=30)
        sms, per_kind = _expected(served / rel)
        drawn = _drawn(dash_duo)
        assert set().union(*drawn.values()) >= sms, rel  # every SM with spans has bars
        assert drawn.get("y|boundary"), rel
        if "one by one" in dash_duo.find_element("#gantt-status").text:
            for kind, kind_sms in per_kind.items():  # every span drawn: each kind on exactly its SMs
                assert drawn.get(f"y|{kind}") == kind_sms, (rel, kind)
            continue
        # aggregated: with roles on sub-rows no kind can hide another, so every kind present must show
        _set_checklist(dash_duo, "filter-options", {"split", "boundaries", "critical"})
        _until(lambda: "setup" in {k.split("|")[1] for k, v in _drawn(dash_duo).items() if v}, timeout=30)
        split = {k.split("|")[1] for k, v in _drawn(dash_duo).items() if v}
        assert split >= set(per_kind), rel
        _set_checklist(dash_duo, "filter-options", {"boundaries", "critical"})


def test_filters_zoom_and_diff(dash_duo, served):
    rel = "synthetic/synthetic__static.arrow"
    t = read_trace(served / rel)
    _start(dash_duo, served)
    _pick(dash_duo, "#trace-a", rel)
    assert "one by one" in dash_duo.find_element("#gantt-status").text

    # hover on a drawn span names its instruction
    label = dash_duo.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const gd = document.querySelector('#gantt .js-plotly-plot');
        const i = gd._fullData.findIndex(t => t.mode === 'markers' && t.legendgroup === 'compute');
        const t = gd._fullData[i];
        Plotly.Fx.hover(gd, {xval: t.x[0], yval: t.y[0]});  // the point of the first compute span
        setTimeout(() => { const h = gd.querySelector('.hovertext'); done(h ? h.textContent : null); }, 300);""")
    for words in ("compute", "SM ", "instruction ", "sequence ", "query tokens", "KV [", "start ", "duration "):
        assert label and words in label, (words, label)

    # the critical path over the bars, on by default, one point per step end; the checkbox takes it away
    critical = """return document.querySelector('#gantt .js-plotly-plot')._fullData
                  .filter(t => t.name === 'critical path').map(t => t.x.filter(v => v === v).length);"""
    steps = len(analyze(t).critical_path)
    _until(lambda: dash_duo.driver.execute_script(critical) == [2 * steps], timeout=30)
    boxes = {"split": False, "boundaries": True, "critical": False}
    _set_checklist(dash_duo, "filter-options", {k for k, on in boxes.items() if on})
    _until(lambda: dash_duo.driver.execute_script(critical) == [], timeout=30)
    _set_checklist(dash_duo, "filter-options", {"boundaries", "critical"})
    _until(lambda: dash_duo.driver.execute_script(critical) == [2 * steps], timeout=30)

    # opcode filter: only reductions, so only the SMs that ran one
    _set_checklist(dash_duo, "filter-opcodes", {"reduction"})
    red_sms = set(np.unique(t.col("sm")[t.col("opcode") == "reduction"]).tolist())
    _until(lambda: set().union(*_drawn(dash_duo).values()) <= red_sms, timeout=30)
    drawn = _drawn(dash_duo)
    assert drawn["y|wait"] and set().union(*drawn.values()) == red_sms

    # kind filter, then a sequence filter on top of it
    _set_checklist(dash_duo, "filter-opcodes", {"partial", "reduction"})
    _set_checklist(dash_duo, "filter-kinds", {"compute"})
    only_compute = lambda: {k for k, v in _drawn(dash_duo).items() if v and k != "y|boundary"} == {"y|compute"}  # noqa: E731
    _until(only_compute, timeout=30)  # each click re-draws; wait for the last one
    dash_duo.select_dcc_dropdown("#filter-seqs", value="2")
    _close_menus(dash_duo)
    seq_sms = set(np.unique(t.col("sm")[(t.col("seq") == 2) & (t.col("kind") == "compute")]).tolist())
    _until(lambda: _drawn(dash_duo).get("y|compute") == seq_sms, timeout=30)

    # diff: B against A on one shared time axis, with the library's delta table
    _set_checklist(dash_duo, "filter-kinds", set(BAR_KINDS))
    b = "synthetic/synthetic__makespan.arrow"
    _pick(dash_duo, "#trace-b", b, status="")
    dash_duo.find_elements(".tab")[1].click()
    dash_duo.wait_for_element("#diff-headline", timeout=30)
    _until(lambda: any(k.startswith("y2|") for k in _drawn(dash_duo, "#diff-gantt")), timeout=30)
    drawn = _drawn(dash_duo, "#diff-gantt")
    for axis in ("y", "y2"):  # the sequence filter still applies: compute of sequence 2 in both
        assert set().union(*(v for k, v in drawn.items() if k.startswith(axis + "|"))), axis
    layout = dash_duo.driver.execute_script(
        "const l = document.querySelector('#diff-gantt .js-plotly-plot')._fullLayout;"
        "return [l.xaxis.range, l.xaxis2.range, l.xaxis.matches];")
    assert layout[0] == layout[1] and layout[2] == "x2"
    d = mdiff.diff(read_trace(served / rel), read_trace(served / b))
    text = dash_duo.find_element("#diff-headline").text
    assert f"{d.makespan_delta_us:,.3f}" in text and "makespan" in text
    assert "mode: matched" in dash_duo.find_element("#diff-tables").text
    compute = d.critical_time_us["compute"]  # the critical path's time by part, as mlaprof.diff has it
    assert f"{compute['a']:,.3f}" in dash_duo.find_element("#diff-critical-time").text

    # zoom: a big trace drawn aggregated becomes span-by-span once few spans are in view, and back
    dash_duo.find_elements(".tab")[0].click()
    big = "synthetic/synthetic-60k__static.arrow"
    _pick(dash_duo, "#trace-a", big)
    dash_duo.wait_for_contains_text("#gantt-status", "aggregated", timeout=30)
    # an aggregated cell's hover says it is one, and how much of the cell its kind fills
    label = dash_duo.driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        const gd = document.querySelector('#gantt .js-plotly-plot');
        const t = gd._fullData.find(t => t.type === 'heatmap');
        let i = 0, j = 0;
        outer: for (i = 0; i < t.z.length; i++) for (j = 0; j < t.z[i].length; j++) if (t.z[i][j] > 0) break outer;
        Plotly.Fx.hover(gd, {xval: t.x0 + j * t.dx, yval: t.y[i]});
        setTimeout(() => { const h = gd.querySelector('.hovertext'); done(h ? h.textContent : null); }, 300);""")
    for words in ("aggregated", "kind ", "% of this", "zoom in"):
        assert label and words in label, (words, label)
    dash_duo.driver.execute_script(
        "Plotly.relayout(document.querySelector('#gantt .js-plotly-plot'), {'xaxis.range': [100, 104]});")
    dash_duo.wait_for_contains_text("#gantt-status", "one by one", timeout=30)
    xr = dash_duo.driver.execute_script(
        "return document.querySelector('#gantt .js-plotly-plot')._fullLayout.xaxis.range;")
    assert xr == pytest.approx([100, 104])
    dash_duo.driver.execute_script(
        "Plotly.relayout(document.querySelector('#gantt .js-plotly-plot'), {'xaxis.autorange': true});")
    dash_duo.wait_for_contains_text("#gantt-status", "aggregated", timeout=30)


def test_bad_files_show_error_cards_and_the_rest_works(dash_duo, served):
    _start(dash_duo, served)
    dash_duo.wait_for_contains_text("#load-errors", "corrupt.arrow", timeout=30)
    cards = dash_duo.find_element("#load-errors").text
    assert "foreign.arrow" in cards and "2 of" in cards
    _pick(dash_duo, "#trace-a", "corrupt.arrow (error)", status="")
    dash_duo.wait_for_contains_text("#gantt-error .error-card", "not a readable Arrow trace file", timeout=30)
    assert str(served) not in dash_duo.find_element("#gantt-error").text
    # a click on a row of the trace table picks that trace
    good = "synthetic/synthetic__static.arrow"
    dash_duo.find_element("#trace-table .dash-filter input[type=text]").send_keys("synthetic__static\n")
    _until(lambda: len(dash_duo.find_elements("#trace-table td.dash-cell.column-0")) == 1, timeout=30)
    dash_duo.find_element("#trace-table td.dash-cell.column-0").click()
    dash_duo.wait_for_contains_text("#gantt-status", good, timeout=30)
    _until(lambda: not dash_duo.find_elements("#gantt-error .error-card"), timeout=30)
    assert _drawn(dash_duo).get("y|compute")
    # the diff of a good trace against a bad one: an error card in the diff tab, nothing else breaks
    _pick(dash_duo, "#trace-b", "foreign.arrow (error)", status="")
    dash_duo.find_elements(".tab")[1].click()
    dash_duo.wait_for_contains_text("#diff-error .error-card", "not written by mlaprof", timeout=30)
    dash_duo.find_elements(".tab")[0].click()
    _until(lambda: _drawn(dash_duo).get("y|compute"), timeout=30)


@pytest.mark.skipif(not os.environ.get("MLAPROF_DASH_SCREENSHOT"), reason="set MLAPROF_DASH_SCREENSHOT=path to save one")
def test_screenshot(dash_duo, served):
    """Saves the page the README shows to MLAPROF_DASH_SCREENSHOT; MLAPROF_DASH_SCREENSHOT_DIR serves that folder
    instead of the test folder, MLAPROF_DASH_SCREENSHOT_TRACE picks the trace. docs/dashboard.png came from:
    MLAPROF_DASH_SCREENSHOT=docs/dashboard.png MLAPROF_DASH_SCREENSHOT_DIR=traces
    MLAPROF_DASH_SCREENSHOT_TRACE=seed-representative__static.arrow pytest -k screenshot tests/test_dashboard_browser.py
    """
    target = os.environ["MLAPROF_DASH_SCREENSHOT"]
    root = Path(os.environ.get("MLAPROF_DASH_SCREENSHOT_DIR") or served)
    rel = os.environ.get("MLAPROF_DASH_SCREENSHOT_TRACE") or _good(root)[0]
    _start(dash_duo, root)
    dash_duo.driver.set_window_size(1500, 2450)
    _pick(dash_duo, "#trace-a", rel)
    dash_duo.wait_for_element("#summary-sm-states .js-plotly-plot", timeout=30)
    time.sleep(2)  # let the summary charts finish drawing
    dash_duo.driver.save_screenshot(target)
    assert Path(target).stat().st_size > 10_000
