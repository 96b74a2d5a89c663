"""The page: trace browser on top, then a Gantt tab (filters, Gantt, summary) and a Diff tab.

Component ids are the contract with callbacks.py and the browser tests; they are listed in ``IDS``.
``build_layout`` takes the first page's content (``answers.first_page``): the page then arrives with the
trace list, the filter widgets and the first trace's Gantt in it.
"""

from __future__ import annotations

from dash import dash_table, dcc, html

from dashboard.data import BAR_KINDS
from dashboard.figures import KIND_LABEL, PALETTE

IDS = {
    "refresh": "refresh", "root": "root-label", "errors": "load-errors", "table": "trace-table",
    "a": "trace-a", "b": "trace-b", "tabs": "tabs",
    "kinds": "filter-kinds", "opcodes": "filter-opcodes", "sms": "filter-sms", "seqs": "filter-seqs",
    "options": "filter-options",
    "gantt": "gantt", "gantt_view": "gantt-view", "gantt_drawn": "gantt-drawn", "summary_due": "summary-due",
    "gantt_status": "gantt-status", "gantt_error": "gantt-error",
    "cards": "summary-cards", "sm_states": "summary-sm-states", "kind_totals": "summary-kind-totals",
    "durations": "summary-durations",
    "diff": "diff-gantt", "diff_view": "diff-view", "diff_status": "diff-status", "diff_error": "diff-error",
    "diff_tables": "diff-tables",
}

TABLE_COLUMNS = [
    ("path", "file", "text"), ("workload", "workload", "text"), ("scheduler", "scheduler", "text"),
    ("gpu", "GPU", "text"), ("source", "measured / simulated", "text"), ("date", "date (UTC)", "text"),
    ("spans", "spans", "numeric"), ("makespan_us", "makespan µs", "numeric"), ("kernel_us", "kernel µs", "numeric"),
    ("busy_pct", "SM busy %", "numeric"), ("status", "status", "text"),
]

_CARD = {"border": "1px solid #ddd", "borderRadius": "6px", "padding": "8px 12px", "background": "#fafafa"}
_LABEL = {"fontWeight": "bold", "marginRight": "6px"}
_GRAPH_CONFIG = {"scrollZoom": True, "displaylogo": False, "doubleClick": "reset"}
_SMALL_CONFIG = {"displayModeBar": False}  # the summary charts are small: the mode bar would cover their titles


def _kind_option(kind: str) -> dict:
    swatch = html.Span(style={"display": "inline-block", "width": "12px", "height": "12px", "marginRight": "4px",
                              "background": PALETTE[kind], "verticalAlign": "middle"})
    return {"label": html.Span([swatch, KIND_LABEL[kind]], style={"marginRight": "12px"}), "value": kind}


def _filters(first) -> html.Div:
    return html.Div(style={**_CARD, "display": "flex", "flexWrap": "wrap", "gap": "18px", "alignItems": "center"},
                    children=[
        html.Div([html.Span("kinds", style=_LABEL),
                  dcc.Checklist(id=IDS["kinds"], options=[_kind_option(k) for k in BAR_KINDS], value=list(BAR_KINDS),
                                inline=True)]),
        html.Div([html.Span("opcodes", style=_LABEL),
                  dcc.Checklist(id=IDS["opcodes"], options=["partial", "reduction"], value=["partial", "reduction"],
                                inline=True, inputStyle={"marginLeft": "8px"})]),
        html.Div(style={"width": "340px"}, children=[
            html.Span("SMs", style=_LABEL),
            dcc.RangeSlider(id=IDS["sms"], min=0, max=first.sms_max if first else 131, step=1,
                            value=first.sms if first else [0, 131], marks=None,
                            tooltip={"placement": "bottom", "always_visible": False}, allowCross=False),
        ]),
        html.Div(style={"width": "260px"}, children=[
            dcc.Dropdown(id=IDS["seqs"], multi=True, placeholder="all sequences",
                         options=first.seq_options if first else [], value=[]),
        ]),
        dcc.Checklist(id=IDS["options"], inline=True, inputStyle={"marginLeft": "8px"},
                      value=["boundaries", "critical"],
                      options=[{"label": "roles as sub-rows", "value": "split"},
                               {"label": "instruction boundaries", "value": "boundaries"},
                               {"label": "critical path", "value": "critical"}]),
    ])


def _browser(first) -> html.Div:
    return html.Div([
        html.Div(style={"display": "flex", "gap": "12px", "alignItems": "center"}, children=[
            html.H3("Traces", style={"margin": "4px 0"}),
            html.Span(id=IDS["root"], style={"color": "#555"}),
            html.Button("rescan", id=IDS["refresh"], n_clicks=0),
        ]),
        html.Div(id=IDS["errors"], children=first.errors if first else []),
        dash_table.DataTable(
            id=IDS["table"], columns=[{"id": c, "name": n, "type": t} for c, n, t in TABLE_COLUMNS],
            data=first.table if first else [],
            sort_action="native", filter_action="native", page_size=12,
            style_table={"overflowX": "auto"}, style_cell={"fontFamily": "sans-serif", "fontSize": "13px",
                                                          "padding": "3px 8px", "textAlign": "left"},
            style_data_conditional=[{"if": {"filter_query": '{status} = "error"'}, "backgroundColor": "#fde8e4",
                                     "color": "#8a1f00"}],
            tooltip_duration=None,
        ),
        html.Div(style={"display": "flex", "gap": "16px", "marginTop": "8px"}, children=[
            html.Div(style={"flex": "1"}, children=[
                html.Span("trace (A)", style=_LABEL),
                dcc.Dropdown(id=IDS["a"], clearable=False, placeholder="pick a trace",
                             options=first.options if first else [], value=first.pick if first else None)]),
            html.Div(style={"flex": "1"}, children=[html.Span("compare with (B)", style=_LABEL),
                                                    dcc.Dropdown(id=IDS["b"], placeholder="pick a second trace to diff",
                                                                 options=first.options if first else [])]),
        ]),
    ])


def _gantt_tab(first) -> dcc.Tab:
    return dcc.Tab(label="Gantt", value="gantt", children=[
        html.Div(id=IDS["gantt_error"]),
        html.Div(id=IDS["gantt_status"], style={"color": "#555", "margin": "6px 0"},
                 children=first.status if first else ""),
        dcc.Loading(dcc.Graph(id=IDS["gantt"], config=_GRAPH_CONFIG,
                              figure=first.figure if first else {"data": [], "layout": {"height": 420}}),
                    delay_show=400),
        html.H3("Summary", style={"marginBottom": "4px"}),
        html.Div(id=IDS["cards"], style={"display": "flex", "gap": "10px", "flexWrap": "wrap"}),
        html.Div(style={"display": "grid", "gridTemplateColumns": "2fr 1fr 1fr", "gap": "8px"}, children=[
            dcc.Graph(id=IDS["sm_states"], config=_SMALL_CONFIG),
            dcc.Graph(id=IDS["kind_totals"], config=_SMALL_CONFIG),
            dcc.Graph(id=IDS["durations"], config=_SMALL_CONFIG),
        ]),
    ])


def _diff_tab() -> dcc.Tab:
    return dcc.Tab(label="Diff (A vs B)", value="diff", children=[
        html.Div(id=IDS["diff_error"]),
        html.Div(id=IDS["diff_status"], style={"color": "#555", "margin": "6px 0"}),
        dcc.Loading(dcc.Graph(id=IDS["diff"], config=_GRAPH_CONFIG, figure={"data": [], "layout": {"height": 420}}),
                    delay_show=400),
        html.Div(id=IDS["diff_tables"]),
    ])


def build_layout(root_label: str, first=None) -> html.Div:
    return html.Div(style={"fontFamily": "sans-serif", "margin": "10px 18px"}, children=[
        html.H2("mlaprof: per-SM timelines of the MLA-decode megakernel", style={"margin": "4px 0 8px"}),
        dcc.Store(id=IDS["gantt_view"], data={}),
        dcc.Store(id=IDS["diff_view"], data={}),
        # the trace whose Gantt was just drawn: its summary is next (on page load: the first page's trace)
        dcc.Store(id=IDS["gantt_drawn"], data=first.pick if first else None),
        dcc.Store(id=IDS["summary_due"], data=None),  # set in the browser once that Gantt is painted
        html.Div(root_label, id="root-dir", style={"display": "none"}),
        _browser(first),
        html.Div(_filters(first), style={"margin": "10px 0"}),
        dcc.Tabs(id=IDS["tabs"], value="gantt", children=[_gantt_tab(first), _diff_tab()]),
    ])
