"""Plotly figures as plain dicts: the Gantt, the diff (two Gantts on one time axis) and the summary charts.

Why dicts and not ``go.Figure``: the Gantt's arrays are written as Plotly typed arrays (base64 ``bdata``)
directly, which skips Plotly's per-property validation and keeps the JSON small (1 to 4 bytes a number).
Zoomed in (raw spans): one ``scattergl`` (WebGL) trace per kind holds every bar of that kind as a line
segment (x0, x1, NaN), so the browser draws any number of bars in one call; shapes (one per bar) or
``px.timeline`` (one SVG path per bar) stall long before 100k bars.  WebGL hover picks points, not segments:
a raw span's details live on an invisible marker trace with points along the bar.
Zoomed out (aggregated, see lod.py and pyramid.py): one heatmap, a cell per row and pixel-wide bucket
coloured by the kind visible longest there, whose hover says it is an aggregate and how much of the cell
that kind fills.
"""

from __future__ import annotations

import base64
import math

import numpy as np

from dashboard import lod, prepared
from dashboard.data import BAR_KINDS, CriticalPath, Filters, GanttData, row_to_y
from dashboard.view import View
from mlaprof.trace.schema import KIND_NAMES, OPCODE_NAMES, ROLE_NAMES

# Okabe-Ito: distinguishable under the common colour-vision deficiencies
PALETTE = {
    "setup": "#E69F00",  # orange
    "load": "#56B4E9",  # sky blue
    "compute": "#009E73",  # bluish green
    "wait": "#D55E00",  # vermillion
    "store": "#CC79A7",  # reddish purple
}
BOUNDARY_COLOR = "rgba(0,0,0,0.55)"
CRITICAL_COLOR = "#000000"  # black: every Okabe-Ito colour is a kind's already
SM_STATE_COLORS = {"busy": "#0072B2", "wait": "#D55E00", "idle": "#BBBBBB"}
# painter's order, bottom to top, where spans of two roles overlap in one row: waits only show where nothing
# else runs (analysis counts wait the same way), computes over the loads they overlap, short setup/store on top
DRAW_ORDER = ["wait", "load", "compute", "store", "setup"]
KIND_LABEL = {"setup": "setup", "load": "load", "compute": "compute", "wait": "wait (semaphore)", "store": "store"}
HOVER_POINTS_PER_VIEW = 24  # a bar as wide as the view gets this many hover points (about 55 px apart)
HOVER_DISTANCE_PX = 30  # so a point is in reach anywhere along a bar
MAX_HOVER_POINTS_PER_BAR = 40

_DTYPES = {np.dtype(np.float32): "f4", np.dtype(np.float64): "f8", np.dtype(np.int32): "i4",
           np.dtype(np.int16): "i2", np.dtype(np.int8): "i1", np.dtype(np.uint8): "u1"}


def typed(a: np.ndarray) -> dict:
    """A numpy array as a Plotly typed array (what plotly.py itself writes for numpy input)."""
    a = np.ascontiguousarray(a)
    out = {"dtype": _DTYPES[a.dtype], "bdata": base64.b64encode(a.tobytes()).decode("ascii")}
    if a.ndim == 2:
        out["shape"] = f"{a.shape[0]}, {a.shape[1]}"
    return out


def _segments(x0: np.ndarray, x1: np.ndarray, y: np.ndarray):
    """Horizontal segments (x0,y)-(x1,y) separated by NaN: one polyline for any number of bars."""
    nan = np.full(len(x0), np.nan, np.float32)
    xs = np.stack([x0.astype(np.float32), x1.astype(np.float32), nan], axis=1).ravel()
    ys = np.stack([y, y, nan], axis=1).astype(np.float32).ravel()
    return xs, ys


def _hover_points(x0: np.ndarray, x1: np.ndarray, view_width: float) -> tuple[np.ndarray, np.ndarray]:
    """(bar index, x) of hover points: one at each bar's middle, more along bars that are wide on screen."""
    n = np.clip(np.ceil((x1 - x0) / (view_width / HOVER_POINTS_PER_VIEW)), 1, MAX_HOVER_POINTS_PER_BAR)
    n = n.astype(np.int64)
    bar = np.repeat(np.arange(len(x0)), n)
    first = np.repeat(np.cumsum(n) - n, n)
    j = np.arange(len(bar)) - first
    return bar, x0[bar] + (j + 0.5) / n[bar] * (x1[bar] - x0[bar])


_RAW_TEMPLATE = (
    "<b>{kind}</b> · SM %{{y:.0f}} · {role}<br>"
    "instruction %{{customdata[0]}} ({op})<br>"
    "sequence %{{customdata[1]}} · query tokens %{{customdata[2]}}–%{{customdata[3]}}<br>"
    "KV [%{{customdata[4]}}, %{{customdata[5]}}) · {aux} %{{customdata[6]}}<br>"
    "start %{{customdata[7]:.3f}} µs · duration %{{customdata[8]:.3f}} µs<extra></extra>"
)  # the SM is the point's y (rounded: role sub-rows sit at +-0.3), so it costs no customdata column
def _raw_hover(data: GanttData, bars: lod.Bars, sel: np.ndarray, y: np.ndarray, kind: str, view_width: float,
               axes: dict) -> list[dict]:
    """Hover traces for raw bars of one kind, one per (opcode, role) so the template can name them."""
    sp = data.spans
    out = []
    span = bars.index[sel]
    for op_code in np.unique(sp.opcode[span]):
        for role_code in np.unique(sp.role[span]):
            m = (sp.opcode[span] == op_code) & (sp.role[span] == role_code)
            if not m.any():
                continue
            s = span[m]
            bar, x = _hover_points(data.start_us[s], data.end_us[s], view_width)
            s_pts = s[bar]
            cd = np.stack([
                sp.instr[s_pts], sp.seq[s_pts], sp.q_start[s_pts],
                sp.q_start[s_pts] + np.maximum(sp.q_count[s_pts], 1) - 1, sp.kv_start[s_pts], sp.kv_end[s_pts],
                sp.aux[s_pts], data.start_us[s_pts], data.end_us[s_pts] - data.start_us[s_pts],
            ], axis=1).astype(np.float32)
            aux = "input" if kind == "wait" or OPCODE_NAMES[op_code] == "reduction" else "tile"
            template = _RAW_TEMPLATE.format(kind=KIND_LABEL[kind], role=_name(ROLE_NAMES, role_code),
                                            op=_name(OPCODE_NAMES, op_code), aux=aux)
            out.append(_hover_trace(kind, x, y[m][bar], cd, template, axes))
    return out


def _hover_trace(kind: str, x, y, customdata, template: str, axes: dict) -> dict:
    trace = {
        "type": "scattergl", "mode": "markers", "x": typed(np.asarray(x, np.float32)),
        "y": typed(np.asarray(y, np.float32)), "hovertemplate": template,
        "marker": {"size": 6, "color": "rgba(0,0,0,0)"}, "showlegend": False, "legendgroup": kind,
        "name": f"{kind} details", "hoverlabel": {"bgcolor": PALETTE[kind]}, **axes,
    }
    if customdata is not None:
        trace["customdata"] = typed(customdata)
    return trace


def _name(names: list[str], code) -> str:
    code = int(code)
    return names[code] if 0 <= code < len(names) else "unknown"


def _visible_rows(data: GanttData, f: Filters, view: View) -> tuple[int, int]:
    lo, hi = f.sm_range if f.sm_range is not None else (0, data.sm_count - 1)
    if view.y is not None:
        lo, hi = max(lo, math.floor(view.y[0])), min(hi, math.ceil(view.y[1]))
    return lo, max(lo, hi)


def gantt_traces(data: GanttData, f: Filters, view: View, plot_px: float, axes: dict | None = None,
                 legend: bool = True, raw_limit: int = lod.RAW_LIMIT, buckets: int = lod.BUCKETS) -> tuple[list, dict]:
    """Traces of one Gantt panel, and facts about what was drawn (for the status line and tests)."""
    axes = axes or {}
    full = View(x=view.x or (0.0, max(data.makespan_us, 1e-3)), y=view.y)
    window = lod.Window(*full.x)
    sm_lo, sm_hi = _visible_rows(data, f, view)
    shown = [k for k in DRAW_ORDER if k in f.kinds]
    sel = prepared.for_filters(data, f, shown).select(window, (sm_lo, sm_hi), raw_limit, buckets)
    per_sm = len(ROLE_NAMES) if f.split_roles else 1
    if sel.drawn.raw:
        traces, kinds_drawn, sms_drawn = _raw_traces(data, f, sel.drawn, shown, window, plot_px, sm_lo, sm_hi,
                                                     axes, legend)
    else:
        traces, kinds_drawn, sms_drawn = _grid_traces(f, sel.drawn, shown, axes, legend)
    if f.boundaries:
        traces.append(_boundary_trace(sel.mark_sm, sel.mark_x, sel.drawn.raw, axes, legend))
    critical = data.critical if f.critical and data.critical is not None and len(data.critical.sm) else None
    if critical is not None:
        traces += _critical_traces(critical, sel.drawn.raw, axes, legend)
    info = {
        "raw": sel.drawn.raw, "visible_spans": sel.drawn.visible_spans, "bars": len(sel.drawn),
        "bucket_us": 0.0 if sel.drawn.raw else sel.drawn.bucket_us, "boundaries": len(sel.mark_x),
        "rows": (sm_lo, sm_hi), "window": full.x, "kinds_drawn": kinds_drawn,
        "sms_drawn": sorted({int(r) // per_sm for r in sms_drawn}),
        "critical_steps": 0 if critical is None else len(critical.sm),
    }
    return traces, info


def _raw_traces(data, f, bars: lod.Bars, shown, window, plot_px, sm_lo, sm_hi, axes, legend):
    """One WebGL line trace per kind (every bar of the kind in one polyline), hover details on markers."""
    y_all = row_to_y(bars.row, f.split_roles)
    row_px = plot_px / max(1, sm_hi - sm_lo + 1)
    width = max(1.0, row_px * (0.27 if f.split_roles else 0.7))
    traces, hover = [], []
    for kind in shown:
        sel = np.flatnonzero(bars.kind == KIND_NAMES.index(kind))
        xs, ys = _segments(bars.x0[sel], bars.x1[sel], y_all[sel])
        traces.append({
            "type": "scattergl", "mode": "lines", "name": KIND_LABEL[kind], "legendgroup": kind,
            "legendrank": 1000 + BAR_KINDS.index(kind),  # legend in pipeline order, not painter's order
            "x": typed(xs), "y": typed(ys), "line": {"color": PALETTE[kind], "width": round(width, 2)},
            "showlegend": legend, "connectgaps": False, "hoverinfo": "skip", **axes,
        })
        if len(sel):
            hover += _raw_hover(data, bars, sel, y_all[sel], kind, window.width, axes)
    kinds = sorted({KIND_NAMES[k] for k in np.unique(bars.kind)})
    return traces + hover, kinds, np.unique(bars.row)


GRID_KINDS = ["idle"] + BAR_KINDS  # heatmap cell value -> what it shows (0: nothing drawn)
_GRID_TEMPLATE = (
    "<b>aggregated</b> · SM %{{y:.0f}} · %{{x:.2f}} µs ± {half:.3g}<br>"
    "shown: kind %{{z}} ({legend}), the one visible longest here: %{{customdata}}% of this {w:.3g} µs cell<br>"
    "<i>zoom in for each span's instruction</i><extra></extra>"
)  # one template for the whole grid: no per-cell strings, the kind is named through its number


def _grid_traces(f: Filters, grid: lod.Grid, shown, axes, legend):
    """Zoomed out: the grid as one heatmap image (a cell per row and pixel-wide bucket, coloured by the kind
    drawn there), plus an empty line trace per kind for the legend.

    Why an image: its cost is bounded by rows x buckets whatever the span count, and plotly draws it on a 2D
    canvas in one pass; a WebGL trace costs ~1 s to set up under software WebGL even for a few hundred bars.
    """
    lut = np.asarray([0] + [BAR_KINDS.index(KIND_NAMES[c]) + 1 for c in grid.priority], np.uint8)
    code = lut[grid.level + 1]  # cell value: 0 nothing, else 1 + the kind's place in BAR_KINDS
    # percent of the cell where the drawn kind is the visible one (>= 1 wherever something is drawn)
    share = np.minimum(np.ceil(grid.visible_us * np.float32(100 / grid.bucket_us)), 100).astype(np.uint8)
    n = len(GRID_KINDS)
    scale = [[0.0, "rgba(0,0,0,0)"], [1 / n, "rgba(0,0,0,0)"]]  # value 0 (nothing drawn) is transparent
    for i, k in enumerate(BAR_KINDS, start=1):
        scale += [[i / n, PALETTE[k]], [(i + 1) / n, PALETTE[k]]]
    rows = grid.first_row + np.arange(code.shape[0])
    legend_text = ", ".join(f"{i} {KIND_LABEL.get(k, k)}" for i, k in enumerate(GRID_KINDS))
    heat = {
        "type": "heatmap", "name": "aggregated", "z": typed(code), "customdata": typed(share),
        "x0": grid.x0 + grid.bucket_us / 2, "dx": grid.bucket_us, "y": typed(row_to_y(rows, f.split_roles)),
        "zmin": -0.5, "zmax": n - 0.5, "colorscale": scale, "showscale": False,  # (ygap: 3x slower to draw)
        "hovertemplate": _GRID_TEMPLATE.format(half=grid.bucket_us / 2, w=grid.bucket_us, legend=legend_text),
        "meta": {"kinds": GRID_KINDS}, "showlegend": False, **axes,
    }
    # one white line between rows keeps SMs apart (cheaper than the heatmap's ygap); one NaN point per kind
    # for its legend entry (plotly lists no trace without points)
    edges = (grid.first_row + np.arange(code.shape[0] + 1) - 0.5) / (len(ROLE_NAMES) if f.split_roles else 1)
    edges = np.unique(np.round(edges * 2) / 2)  # SM borders only, also when roles are sub-rows
    nan = np.full(len(edges), np.nan, np.float32)
    sep = {"type": "scatter", "mode": "lines", "x": typed(np.stack([np.full(len(edges), grid.x0, np.float32),
                                                                  np.full(len(edges), grid.x0 + grid.bucket_us *
                                                                          code.shape[1], np.float32), nan], 1).ravel()),
           "y": typed(np.stack([edges.astype(np.float32)] * 2 + [nan], 1).ravel()),
           "line": {"color": "white", "width": 1},
           "hoverinfo": "skip", "showlegend": False, "connectgaps": False, **axes}
    proxies = [{"type": "scatter", "mode": "lines", "x": [None], "y": [None], "name": KIND_LABEL[k], "legendgroup": k,
                "legendrank": 1000 + BAR_KINDS.index(k), "line": {"color": PALETTE[k], "width": 6},
                "showlegend": legend, "hoverinfo": "skip", **axes} for k in shown]
    counts = np.bincount(code.ravel(), minlength=n)
    kinds = sorted(GRID_KINDS[i] for i in np.flatnonzero(counts[1:]) + 1)
    return [heat, sep] + proxies, kinds, grid.first_row + np.flatnonzero(code.any(axis=1))


def _boundary_trace(sm, x, raw: bool, axes: dict, legend: bool) -> dict:
    """Instruction boundaries as short vertical ticks, one polyline.  Zoomed out they ride on SVG, not WebGL,
    so an aggregated view needs no WebGL at all (see ``_grid_traces``)."""
    xb = np.asarray(x, np.float32)
    yb = np.asarray(sm, np.float32)
    nan = np.full(len(xb), np.nan, np.float32)
    return {
        "type": "scattergl" if raw else "scatter", "mode": "lines", "name": "instruction boundary",
        "legendgroup": "boundary", "x": typed(np.stack([xb, xb, nan], 1).ravel()),
        "y": typed(np.stack([yb - 0.45, yb + 0.45, nan], 1).ravel()),
        "line": {"color": BOUNDARY_COLOR, "width": 1}, "hoverinfo": "skip", "showlegend": legend,
        "legendrank": 2000, "connectgaps": False, **axes,
    }


def _critical_traces(cp: CriticalPath, raw: bool, axes: dict, legend: bool) -> list[dict]:
    """The critical path over the bars: each step a thick line on its SM's row from when it was on the path
    to its end, with a marker at each end that names it on hover, and each semaphore hand-off a dotted line
    from the release on the awaited SM to the waiting step. Like the boundaries: WebGL over raw bars (plotly
    paints its WebGL canvas above SVG traces, so an SVG line would hide under them), SVG over the
    aggregated heatmap (no WebGL set-up there)."""
    kind = "scattergl" if raw else "scatter"
    nan = np.full(len(cp.sm), np.nan, np.float32)
    steps = {
        "type": kind, "mode": "lines+markers", "name": "critical path", "legendgroup": "critical",
        "legendrank": 2001, "x": typed(np.stack([cp.begin_us, cp.end_us, nan], 1).ravel()),
        "y": typed(np.stack([cp.sm, cp.sm, nan], 1).ravel()), "text": [t for t in cp.text for _ in range(3)],
        "hovertemplate": "%{text}<extra></extra>", "line": {"color": CRITICAL_COLOR, "width": 3},
        "marker": {"color": CRITICAL_COLOR, "size": 6}, "showlegend": legend, "connectgaps": False, **axes,
    }
    out = [steps]
    waits = np.flatnonzero(cp.from_sm >= 0)
    if len(waits):
        hand = np.full(len(waits), np.nan, np.float32)
        out.append({
            "type": kind, "mode": "lines", "name": "critical path: semaphore hand-off",
            "legendgroup": "critical", "showlegend": False,
            "x": typed(np.stack([cp.release_us[waits], cp.begin_us[waits], hand], 1).ravel()),
            "y": typed(np.stack([cp.from_sm[waits], cp.sm[waits], hand], 1).ravel()),
            "line": {"color": CRITICAL_COLOR, "width": 1.5, "dash": "dot"}, "hoverinfo": "skip",
            "connectgaps": False, **axes,
        })
    return out


def warm(data: GanttData) -> None:
    """Build what the default view of this trace needs (all kinds, no filter), once, when it is loaded."""
    p = prepared.for_filters(data, Filters(), [k for k in DRAW_ORDER if k in Filters().kinds])
    if len(p.idx) > lod.RAW_LIMIT:
        p.pyramid()


def describe(info: dict) -> str:
    """One status line for what a Gantt panel drew."""
    if info["raw"]:
        return f"{info['visible_spans']:,} spans drawn one by one (hover shows each span's instruction)"
    return (f"{info['visible_spans']:,} spans aggregated into {info['bars']:,} cells of {info['bucket_us']:.3g} µs "
            f"(the kind visible longest in each); zoom in below {lod.RAW_LIMIT:,} spans for per-span details")


def _height(data: GanttData, f: Filters, rows: tuple[int, int] | None = None) -> int:
    lo, hi = rows or (f.sm_range or (0, data.sm_count - 1))
    per_sm = 9 if f.split_roles else 6
    return int(min(1400, max(420, per_sm * (hi - lo + 1) + 110)))


def _y_axis(lo: int, hi: int, view_y, split: bool, title: str) -> dict:
    pad = 0.5
    rng = view_y if view_y else (lo - pad, hi + pad)
    return {"title": {"text": title}, "range": [rng[1], rng[0]], "zeroline": False, "tickformat": "d",
            "showgrid": False, "fixedrange": False}


def gantt_figure(data: GanttData, f: Filters, view: View, **lod_args) -> tuple[dict, dict]:
    """The Gantt of one trace: y = SM (roles as sub-rows when split), x = µs from kernel start."""
    height = _height(data, f)
    plot_px = height - 110
    traces, info = gantt_traces(data, f, view, plot_px, **lod_args)
    lo, hi = f.sm_range or (0, data.sm_count - 1)
    x = info["window"]
    layout = {
        "height": height, "margin": {"l": 60, "r": 20, "t": 40, "b": 50},
        "xaxis": {"title": {"text": "time from kernel start (µs)"}, "range": list(x), "zeroline": False,
                  "showgrid": True, "gridcolor": "#eeeeee"},
        "yaxis": _y_axis(lo, hi, view.y, f.split_roles, "SM" + (" (rows: controller, producer, consumer)"
                                                                  if f.split_roles else "")),
        # aggregated, a legend click could only hide an empty legend entry, not the kind's cells: the kind
        # checkboxes above the Gantt filter kinds in both modes
        "legend": {"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0,
                   "itemclick": "toggle" if info["raw"] else False,
                   "itemdoubleclick": "toggleothers" if info["raw"] else False},
        "hovermode": "closest", "hoverdistance": HOVER_DISTANCE_PX, "plot_bgcolor": "white", "dragmode": "zoom",
        "uirevision": f"{data.label}|{f.split_roles}|{f.sm_range}",
    }
    return {"data": traces, "layout": layout}, info


def diff_figure(a: GanttData, b: GanttData, f: Filters, view: View, **lod_args) -> tuple[dict, dict, dict]:
    """A above B on one shared time axis (zooming either zooms both); same filters on both."""
    end = max(a.makespan_us, b.makespan_us, 1e-3)
    v = View(x=view.x or (0.0, end))
    panel_h = max(_height(a, f), _height(b, f)) - 110
    top = gantt_traces(a, f, v, panel_h * 0.9, axes={"xaxis": "x", "yaxis": "y"}, legend=True, **lod_args)
    bottom = gantt_traces(b, f, v, panel_h * 0.9, axes={"xaxis": "x2", "yaxis": "y2"}, legend=False, **lod_args)
    lo_a, hi_a = f.sm_range or (0, a.sm_count - 1)
    lo_b, hi_b = f.sm_range or (0, b.sm_count - 1)
    height = int(min(1800, 2 * panel_h + 160))
    layout = {
        "height": height, "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
        "xaxis": {"anchor": "y", "matches": "x2", "showticklabels": True, "range": list(v.x),
                  "gridcolor": "#eeeeee"},
        "xaxis2": {"anchor": "y2", "title": {"text": "time from kernel start (µs), shared by A and B"},
                   "range": list(v.x), "gridcolor": "#eeeeee"},
        "yaxis": {**_y_axis(lo_a, hi_a, None, f.split_roles, "A: SM"), "domain": [0.53, 1.0]},
        "yaxis2": {**_y_axis(lo_b, hi_b, None, f.split_roles, "B: SM"), "domain": [0.0, 0.47]},
        "annotations": [
            {"text": f"<b>A</b>: {a.label} (makespan {a.makespan_us:.2f} µs)", "xref": "paper", "yref": "paper",
             "x": 0, "y": 1.0, "yanchor": "bottom", "showarrow": False, "yshift": 4},
            {"text": f"<b>B</b>: {b.label} (makespan {b.makespan_us:.2f} µs)", "xref": "paper", "yref": "paper",
             "x": 0, "y": 0.47, "yanchor": "bottom", "showarrow": False, "yshift": 4},
        ],
        "legend": {"orientation": "h", "y": 1.06, "yanchor": "bottom", "x": 0.5,  # (see gantt_figure)
                   **({} if top[1]["raw"] and bottom[1]["raw"] else {"itemclick": False, "itemdoubleclick": False})},
        "hovermode": "closest", "hoverdistance": HOVER_DISTANCE_PX, "plot_bgcolor": "white",
        "uirevision": f"{a.label}|{b.label}|{f.split_roles}|{f.sm_range}",
    }
    return {"data": top[0] + bottom[0], "layout": layout}, top[1], bottom[1]


# ---- summary charts: every number comes from mlaprof.analysis.Analysis -------------------------------------

def _small_layout(title: str, x: str, y: str, **extra) -> dict:
    return {"title": {"text": title, "font": {"size": 14}}, "height": 300, "margin": {"l": 55, "r": 10, "t": 40, "b": 45},
            "xaxis": {"title": {"text": x}}, "yaxis": {"title": {"text": y}}, "plot_bgcolor": "white",
            "legend": {"orientation": "h", "y": -0.25}, **extra}


def sm_states_figure(an) -> dict:
    """Per SM: busy, wait and idle µs stacked (they sum to the makespan)."""
    sms = np.arange(len(an.sm_busy_us))
    data = [{"type": "bar", "name": name, "x": typed(sms.astype(np.int32)), "y": typed(np.asarray(v, np.float32)),
             "marker": {"color": SM_STATE_COLORS[name]},
             "hovertemplate": f"SM %{{x}}: {name} %{{y:.3f}} µs<extra></extra>"}
            for name, v in (("busy", an.sm_busy_us), ("wait", an.sm_wait_us), ("idle", an.sm_idle_us))]
    return {"data": data, "layout": _small_layout(f"Per SM: busy / wait / idle (makespan {an.makespan_us:.2f} µs)",
                                                  "SM", "µs", barmode="stack", bargap=0.05)}


def kind_totals_figure(an) -> dict:
    kinds = [k for k in BAR_KINDS if k in an.by_kind_us]
    return {"data": [{"type": "bar", "x": [KIND_LABEL[k] for k in kinds], "y": [an.by_kind_us[k] for k in kinds],
                      "marker": {"color": [PALETTE[k] for k in kinds]},
                      "hovertemplate": "%{x}: %{y:.3f} µs summed over SMs<extra></extra>"}],
            "layout": _small_layout("Time by kind (sum over all SMs and roles)", "kind", "µs")}


def duration_histogram_figure(an) -> dict:
    """Instruction durations per opcode, from the library's instruction table."""
    ins = an.instructions
    data = []
    colors = {"partial": "#0072B2", "reduction": "#E69F00"}
    if ins is not None and len(ins):
        dur = (ins.end - ins.start) / 1000.0
        for code in np.unique(ins.opcode):
            name = _name(OPCODE_NAMES, code)
            data.append({"type": "histogram", "name": name, "x": typed(dur[ins.opcode == code].astype(np.float32)),
                         "opacity": 0.75, "marker": {"color": colors.get(name, "#999999")},
                         "hovertemplate": f"{name}: %{{y}} instructions of %{{x}} µs<extra></extra>"})
    return {"data": data, "layout": _small_layout("Instruction durations per opcode", "µs", "instructions",
                                                  barmode="overlay")}
