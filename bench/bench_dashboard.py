"""Dashboard Gantt at 10k, 100k and 1M spans: our figure against plotly.express.timeline on the same data.

For each size (a synthetic 132-SM trace, ``dashboard.synthetic``) it measures, best of ``--repeat`` runs:

* ours: preparing the trace (once per trace, when the app loads it: the drawing arrays, the filtered and
  sorted spans and, above ``lod.RAW_LIMIT`` spans, the level-of-detail pyramid), then building the
  full-view figure from that and encoding it to JSON the way Dash does (``plotly.io.json.to_json_plotly``),
  and the JSON size; the same for a zoom onto 5% of the makespan (what a zoom/pan callback costs);
* px.timeline on the same bars (every span but the INSTRUCTION ones, coloured by kind, y = SM): figure build
  from a table already in memory, ``fig.to_json()`` and its size.  Sizes above ``--px-max`` are not run:
  they are extrapolated linearly from the largest size that was run, and marked ``extrapolated``;
* speed-ups: build + JSON against build + JSON (each from its prepared input), and, to show what the
  preparation costs, ours with the once-per-trace preparation added;
* in headless chromium when it is installed (``--browser``): time for Plotly.newPlot of each figure's JSON to
  draw, and the dashboard's first paint for the largest trace (page navigation to the Gantt drawn, with a
  freshly started server, a freshly started browser and an empty cache (cold), then the same page again
  (warm)).  Headless
  chromium here renders WebGL in software (SwiftShader) on the CPU.

Writes ``bench/results/dashboard_bench.json`` and ``.md``.  Run: ``python bench/bench_dashboard.py``.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import plotly
import plotly.express as px
import plotly.io as pio
import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dashboard import figures, lod  # noqa: E402
from dashboard.data import BAR_KINDS, Filters, GanttData  # noqa: E402
from dashboard.synthetic import synthesize  # noqa: E402
from dashboard.view import View  # noqa: E402
from mlaprof.trace.io import Trace, write_trace  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def best_of(fn, repeat: int):
    best, out = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def _prepare(trace: Trace) -> GanttData:
    """What the app does once when it loads a trace (dashboard.store): arrays, then figures.warm."""
    data = GanttData.of(trace, "bench")
    figures.warm(data)
    return data


def bench_ours(trace: Trace, repeat: int) -> dict:
    prep_s, data = best_of(lambda: _prepare(trace), repeat)
    res = {"prepare_s": prep_s}
    for name, view in (("full", View()), ("zoom5pct", View(x=(0.45 * data.makespan_us, 0.50 * data.makespan_us)))):
        build_s, (fig, info) = best_of(lambda: figures.gantt_figure(data, Filters(), view), repeat)
        json_s, js = best_of(lambda: pio.json.to_json_plotly(fig), repeat)
        res[name] = {"build_s": build_s, "json_s": json_s, "total_s": build_s + json_s, "json_bytes": len(js),
                     "raw": info["raw"], "visible_spans": info["visible_spans"], "bars": info["bars"]}
        res[name]["_json"] = js
    return res


def px_table(trace: Trace) -> pa.Table:
    """The bars px.timeline draws: start/end as datetimes (px.timeline needs dates), SM, kind."""
    kind = trace.col("kind")
    keep = np.isin(kind, BAR_KINDS)
    start = trace.col("start_ns")[keep].astype("datetime64[ns]")
    end = trace.col("end_ns")[keep].astype("datetime64[ns]")
    return pa.table({"start": pa.array(start), "end": pa.array(end), "sm": pa.array(trace.col("sm")[keep]),
                     "kind": pa.array(kind[keep].astype(str))})


def bench_px(trace: Trace, repeat: int) -> dict:
    table = px_table(trace)
    build_s, fig = best_of(lambda: px.timeline(table, x_start="start", x_end="end", y="sm", color="kind"), repeat)
    json_s, js = best_of(lambda: fig.to_json(), repeat)
    return {"build_s": build_s, "json_s": json_s, "total_s": build_s + json_s, "json_bytes": len(js),
            "bars": table.num_rows, "extrapolated": False, "_json": js}


# ---- browser (optional) --------------------------------------------------------------------------------------

def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options

    o = Options()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--enable-unsafe-swiftshader", "--window-size=1500,1900", "--allow-file-access-from-files"):
        o.add_argument(a)
    d = webdriver.Chrome(options=o)
    d.set_script_timeout(300)
    return d


def browser_render_s(driver, fig_json: str, tmp: Path, timeout_s: float) -> float | None:
    """Seconds for Plotly.newPlot of this figure JSON to draw (None: over ``timeout_s``)."""
    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
    page = tmp / "page.html"
    page.write_text(f"<html><body><div id='g' style='width:1400px'></div><script src='{plotly_js.as_uri()}'></script>"
                    "</body></html>")
    driver.get(page.as_uri())
    driver.set_script_timeout(timeout_s)
    try:  # the JSON goes in as a string argument; parsing it is not timed, drawing is
        ms = driver.execute_async_script("""
        const cb = arguments[arguments.length - 1];
        const fig = JSON.parse(arguments[0]);
        const t0 = performance.now();
        Plotly.newPlot('g', fig.data, fig.layout).then(() => requestAnimationFrame(() => requestAnimationFrame(
          () => cb(performance.now() - t0))));""", fig_json)
    except Exception:  # noqa: BLE001 - script timeout: the figure took too long to draw
        return None
    return ms / 1000.0


def _best(times) -> float | None:
    got = [t for t in times if t is not None]
    return min(got) if got else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_paint_s(driver, folder: Path) -> dict:
    """Fresh server over ``folder`` (one trace): page navigation -> Gantt drawn, and where the time went."""
    port = _free_port()
    spawned = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "dashboard", str(folder), "--no-browser", "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        out = {"server_start_s": time.perf_counter() - spawned}  # process start to port open (imports, app)
        driver.execute_cdp_cmd("Network.clearBrowserCache", {})
        for visit in ("cold", "warm", "warm"):  # cold: fresh server and browser cache; warm: the same page again
            t = time.perf_counter()
            driver.get(f"http://127.0.0.1:{port}/")
            driver.set_script_timeout(120)
            driver.execute_async_script("""
            const cb = arguments[arguments.length - 1];
            (function poll() {
              const g = document.querySelector('#gantt .js-plotly-plot');
              if (g && g._fullData && g._fullData.length) requestAnimationFrame(() => requestAnimationFrame(() => cb(1)));
              else setTimeout(poll, 20);
            })();""")
            took = time.perf_counter() - t
            # where the time went, from the browser's resource timings (ms from navigation start)
            res = driver.execute_script(
                "const r = performance.getEntriesByType('resource');"
                "const f = s => r.filter(e => e.name.includes(s)).map(e => [e.startTime, e.responseEnd, e.transferSize]);"
                "const n = performance.getEntriesByType('navigation')[0];"
                "return {page: [0, n.responseEnd, n.transferSize], layout: f('_dash-layout'), plotly: f('plotly'),"
                "        updates: f('_dash-update-component')};")
            lay = res["layout"][0] if res["layout"] else None
            plot = max(res["plotly"], key=lambda e: e[1]) if res["plotly"] else None
            detail = {"total_s": took, "page_s": res["page"][1] / 1000,
                      "layout_request_s": (lay[1] - lay[0]) / 1000 if lay else None,
                      "layout_done_s": lay[1] / 1000 if lay else None, "layout_bytes": lay[2] if lay else None,
                      "plotly_js_done_s": plot[1] / 1000 if plot else None,
                      "callbacks_before_paint": sum(1 for e in res["updates"] if e[1] / 1000 < took)}
            detail["draw_after_layout_s"] = took - max(detail["layout_done_s"] or 0, detail["plotly_js_done_s"] or 0)
            if visit == "cold" or took < out.get("warm", {}).get("total_s", float("inf")):
                out[visit] = detail
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def server_load_s(folder: Path) -> float:
    """Seconds for the app's store to load the trace in ``folder`` (read, analyse, prepare: once per trace)."""
    from dashboard.files import TraceDir
    from dashboard.store import TraceStore

    store = TraceStore(TraceDir(folder))
    t = time.perf_counter()
    store.catalogue()
    return time.perf_counter() - t


# ---- report ---------------------------------------------------------------------------------------------------

def _fmt_s(v) -> str:
    return "n/a" if v is None else (f"{v * 1000:.0f} ms" if v < 1 else f"{v:.2f} s")


def _fmt_b(v) -> str:
    return "n/a" if v is None else (f"{v / 1e6:.2f} MB" if v >= 1e5 else f"{v / 1e3:.0f} kB")


def _drawn(o: dict) -> str:
    return f"{o['bars']:,} spans (raw)" if o["raw"] else f"{o['bars']:,} cells (aggregated)"


def _paint(d: dict) -> str:
    return (f"{_fmt_s(d['total_s'])}: page at {_fmt_s(d['page_s'])}, layout with the Gantt figure "
            f"({_fmt_b(d['layout_bytes'])}) answered at {_fmt_s(d['layout_done_s'])} (request "
            f"{_fmt_s(d['layout_request_s'])}), plotly.js ready at {_fmt_s(d['plotly_js_done_s'])}, then "
            f"{_fmt_s(d['draw_after_layout_s'])} to draw; {d['callbacks_before_paint']} callback(s) answered "
            f"before the paint")


def markdown(res: dict) -> str:
    lines = [
        "# Dashboard Gantt: figure build time, JSON size, drawing and first paint", "",
        f"{res['when']} on {res['machine']}; plotly {res['plotly']}; best of {res['repeat']}. "
        f"Synthetic 132-SM traces (`dashboard.synthetic`); px.timeline draws the same bars (all but INSTRUCTION "
        f"spans) from a table already in memory. Ours = the full-view figure built from the trace as the app "
        f"keeps it after loading (prepare column: arrays, filtered spans and, above {lod.RAW_LIMIT:,} spans, the "
        f"level-of-detail pyramid; once per trace) + JSON as Dash encodes it. Raw WebGL spans when at most "
        f"{lod.RAW_LIMIT:,} are in sight, else a heatmap of about {lod.BUCKETS} buckets per view and row. "
        f"Browser times: headless chromium with software WebGL (SwiftShader) on this CPU-only machine.", "",
        "| spans | ours: prepare (once per trace) | ours: build + JSON | ours: JSON | ours: drawn "
        "| zoom 5%: build + JSON "
        "| px.timeline: build + JSON | px: JSON | speed-up: build + JSON | speed-up: incl. our prepare "
        "| ours: draw in browser | px: draw in browser | speed-up: build + JSON + draw |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in res["sizes"]:
        o, z, p = r["ours"]["full"], r["ours"]["zoom5pct"], r["px"]
        prep = r["ours"]["prepare_s"]
        mark = " (extrapolated)" if p["extrapolated"] else ""
        bo, bp = r.get("browser_ours_s"), r.get("browser_px_s")
        e2e = f"{(p['total_s'] + bp) / (o['total_s'] + bo):.1f}x" if bo and bp else "n/a"
        lines.append(
            f"| {r['spans']:,} | {_fmt_s(prep)} | {_fmt_s(o['total_s'])} | {_fmt_b(o['json_bytes'])} | {_drawn(o)} | "
            f"{_fmt_s(z['total_s'])} | {_fmt_s(p['total_s'])}{mark} | {_fmt_b(p['json_bytes'])}{mark} | "
            f"{p['total_s'] / o['total_s']:.1f}x{mark} | {p['total_s'] / (o['total_s'] + prep):.1f}x{mark} | "
            f"{_fmt_s(bo)} | {_fmt_s(bp) if 'browser_px_s' in r else 'not run'} | {e2e} |")
    fp = res.get("first_paint")
    if fp:
        lines += ["", f"First paint of the dashboard with the {fp['spans']:,}-span trace (page navigation to the "
                      f"Gantt drawn):", "",
                  f"* cold (server just started, fresh browser, empty cache): {_paint(fp['cold'])}.",
                  f"* warm (the same page again, best of 2): {_paint(fp['warm'])}.",
                  f"* the server's one-off load of this trace (read, analyse, prepare and pyramid), measured "
                  f"in-process: {_fmt_s(fp['server_load_s'])}; `mlaprof dash` starts it in the background as "
                  f"soon as it starts (the cold visit began {_fmt_s(fp['server_start_s'])} after the server "
                  f"process was spawned, when its port opened, and a page asked for meanwhile waits for it)."]
    lines += ["", "Goals (issue 4): at least 10x faster than px.timeline at 100k spans; first paint at most 2 s at "
                  "1M spans.", ""]
    at = {r["spans"] // 1000 * 1000: r for r in res["sizes"]}
    r = at.get(100_000)
    if r:
        o, p, prep = r["ours"]["full"], r["px"], r["ours"]["prepare_s"]
        sp = p["total_s"] / o["total_s"]
        lines.append(f"* At {r['spans']:,} spans, build + JSON: {sp:.1f}x faster than px.timeline "
                     f"({'met' if sp >= 10 else 'not met'}). With our once-per-trace preparation counted in: "
                     f"{p['total_s'] / (o['total_s'] + prep):.1f}x.")
        if r.get("browser_ours_s") and r.get("browser_px_s"):
            e2e = (p["total_s"] + r["browser_px_s"]) / (o["total_s"] + r["browser_ours_s"])
            lines.append(f"* At {r['spans']:,} spans, build + JSON + draw: {e2e:.1f}x "
                         f"({'met' if e2e >= 10 else 'not met'} on this machine).")
    if fp:
        for visit in ("warm", "cold"):
            t = fp[visit]["total_s"]
            lines.append(f"* First paint at {fp['spans']:,} spans, {visit}: {t:.2f} s "
                         f"({'met' if t <= 2 else 'not met'} on this machine).")
    lines.append("")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--px-max", type=int, default=100_000, help="largest size px.timeline is run at (above: extrapolated)")
    ap.add_argument("--browser", action=argparse.BooleanOptionalAction, default=bool(shutil.which("chromedriver")))
    ap.add_argument("--browser-px-max", type=int, default=100_000)
    ap.add_argument("--out", default=str(RESULTS / "dashboard_bench"))
    args = ap.parse_args()

    res = {"when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
           "plotly": plotly.__version__, "repeat": args.repeat, "sizes": []}
    warm, _ = synthesize(2000, num_sms=132, seed=1)  # first calls pay imports and caches: not part of either
    bench_px(Trace(table=warm, meta=_), 1)
    bench_ours(Trace(table=warm, meta=_), 1)
    driver = _driver() if args.browser else None
    tmp = Path(tempfile.mkdtemp(prefix="bench_dash_"))
    try:
        last_px = None
        for n in args.sizes:
            table, meta = synthesize(n, num_sms=132, seed=0)
            trace = Trace(table=table, meta=meta)
            row = {"spans": table.num_rows, "ours": bench_ours(trace, args.repeat)}
            if n <= args.px_max:
                row["px"] = bench_px(trace, args.repeat)
                last_px = (table.num_rows, row["px"])
            else:  # linear in the number of bars, from the largest size measured
                m, p = last_px
                k = table.num_rows / m
                row["px"] = {"build_s": p["build_s"] * k, "json_s": p["json_s"] * k, "total_s": p["total_s"] * k,
                             "json_bytes": int(p["json_bytes"] * k), "bars": int(p["bars"] * k), "extrapolated": True}
            if driver is not None:  # best of a few: software WebGL timings on a shared machine are noisy
                row["browser_ours_s"] = _best(browser_render_s(driver, row["ours"]["full"]["_json"], tmp, 120)
                                              for _ in range(args.repeat))
                if not row["px"]["extrapolated"] and n <= args.browser_px_max:
                    row["browser_px_s"] = _best(browser_render_s(driver, row["px"]["_json"], tmp, 120)
                                                for _ in range(args.repeat if n <= 10_000 else 1))
            for part in (row["ours"]["full"], row["ours"]["zoom5pct"], row["px"]):
                part.pop("_json", None)
            res["sizes"].append(row)
            print(f"{row['spans']:>9,} spans: ours {row['ours']['full']['total_s']:.3f} s "
                  f"({row['ours']['full']['json_bytes'] / 1e6:.2f} MB), px.timeline {row['px']['total_s']:.3f} s"
                  f"{' (extrapolated)' if row['px']['extrapolated'] else ''} ({row['px']['json_bytes'] / 1e6:.2f} MB)",
                  flush=True)
        if driver is not None:
            big = res["sizes"][-1]["spans"]
            folder = tmp / "one"
            table, meta = synthesize(args.sizes[-1], num_sms=132, seed=0)
            write_trace(folder / "big.arrow", table, meta)
            driver.quit()  # first paint in a browser that has drawn nothing yet (the px figures above are heavy)
            driver = _driver()
            res["first_paint"] = {"spans": big, **first_paint_s(driver, folder),
                                  "server_load_s": server_load_s(folder)}
            print(f"first paint at {big:,} spans: {res['first_paint']['cold']['total_s']:.2f} s cold, "
                  f"{res['first_paint']['warm']['total_s']:.2f} s warm", flush=True)
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(tmp, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(res, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
