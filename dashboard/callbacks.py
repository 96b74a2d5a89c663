"""Dash callbacks: read widget values, call the store/figures/panels, return what they give. No logic here."""

from __future__ import annotations

from dash import Input, Output, State, ctx, no_update

from dashboard import figures, panels
from dashboard.layout import IDS
from dashboard.store import TraceStore
from dashboard.view import View, update_view
from mlaprof.errors import UserError

_EMPTY = {"data": [], "layout": {"height": 300, "xaxis": {"visible": False}, "yaxis": {"visible": False}}}
_FILTERS = [Input(IDS[k], "value") for k in ("kinds", "opcodes", "sms", "seqs", "options")]


def register(app, store: TraceStore) -> None:
    @app.callback(
        Output(IDS["table"], "data"), Output(IDS["errors"], "children"), Output(IDS["a"], "options"),
        Output(IDS["b"], "options"), Output(IDS["a"], "value"),
        Input(IDS["refresh"], "n_clicks"), Input(IDS["table"], "active_cell"),
        State(IDS["a"], "value"), State(IDS["table"], "derived_viewport_data"),
    )
    def browse(_clicks, cell, current, viewport):
        rows = store.catalogue()
        paths = [r.path for r in rows]
        pick = current if current in paths else next((r.path for r in rows if r.ok), paths[0] if paths else None)
        if ctx.triggered_id == IDS["table"] and cell and viewport and 0 <= cell.get("row", -1) < len(viewport):
            pick = viewport[cell["row"]].get("path", pick)
        return panels.records(rows), panels.load_errors(rows), panels.options(rows), panels.options(rows), pick

    @app.callback(
        Output(IDS["sms"], "max"), Output(IDS["sms"], "value"), Output(IDS["seqs"], "options"),
        Output(IDS["seqs"], "value"), Output(IDS["cards"], "children"), Output(IDS["sm_states"], "figure"),
        Output(IDS["kind_totals"], "figure"), Output(IDS["durations"], "figure"), Output(IDS["gantt_error"], "children"),
        Input(IDS["a"], "value"), State(IDS["sms"], "max"), State(IDS["seqs"], "value"),
    )
    def summary(rel, sms_max, seqs):
        # filters are only reset when they must be: setting them re-runs the Gantt, which already runs now
        keep_seqs = no_update if not seqs else []
        if not rel:
            return no_update, no_update, [], keep_seqs, [], _EMPTY, _EMPTY, _EMPTY, []
        try:
            ld = store.load(rel)
        except UserError as e:
            return no_update, no_update, [], keep_seqs, [], _EMPTY, _EMPTY, _EMPTY, [panels.error_card(str(e))]
        last = ld.gantt.sm_count - 1
        an = ld.analysis
        same = sms_max == last
        return (no_update if same else last, no_update if same else [0, last], ld.gantt.sequences, keep_seqs,
                panels.summary_cards(an), figures.sm_states_figure(an), figures.kind_totals_figure(an),
                figures.duration_histogram_figure(an), [])

    # zoom/pan -> view store -> figure: a relayout that changes nothing (plotly's {"autosize": true} after each
    # draw) must not re-run the figure callback, since Dash drops the answer of a call overtaken by another
    @app.callback(
        Output(IDS["gantt_view"], "data"),
        Input(IDS["a"], "value"), Input(IDS["gantt"], "relayoutData"), State(IDS["gantt_view"], "data"),
    )
    def gantt_view(_rel, relayout, view_json):
        old = View.from_json(view_json)
        new = View() if ctx.triggered_id == IDS["a"] else update_view(old, relayout, ("xaxis",), ("yaxis",))
        return no_update if new == old and view_json else new.to_json()

    @app.callback(
        Output(IDS["gantt"], "figure"), Output(IDS["gantt_status"], "children"),
        Input(IDS["a"], "value"), *_FILTERS, Input(IDS["gantt_view"], "data"),
    )
    def gantt(rel, kinds, opcodes, sms, seqs, flags, view_json):
        try:
            ld = store.load(rel) if rel else None
        except UserError:
            ld = None  # the summary callback shows the error card
        if ld is None:
            return _EMPTY, ""
        fig, info = figures.gantt_figure(ld.gantt, panels.filters(kinds, opcodes, sms, seqs, flags),
                                         View.from_json(view_json))
        return fig, f"{rel}: {figures.describe(info)}"

    @app.callback(
        Output(IDS["diff_view"], "data"),
        Input(IDS["a"], "value"), Input(IDS["b"], "value"), Input(IDS["diff"], "relayoutData"),
        State(IDS["diff_view"], "data"),
    )
    def diff_view(_a, _b, relayout, view_json):
        old = View.from_json(view_json)
        new = update_view(old, relayout, ("xaxis", "xaxis2"), ()) if ctx.triggered_id == IDS["diff"] else View()
        return no_update if new == old and view_json else new.to_json()

    @app.callback(
        Output(IDS["diff"], "figure"), Output(IDS["diff_status"], "children"), Output(IDS["diff_error"], "children"),
        Output(IDS["diff_tables"], "children"),
        Input(IDS["tabs"], "value"), Input(IDS["a"], "value"), Input(IDS["b"], "value"), *_FILTERS,
        Input(IDS["diff_view"], "data"),
    )
    def diff(tab, rel_a, rel_b, kinds, opcodes, sms, seqs, flags, view_json):
        if tab != "diff":
            return no_update, no_update, no_update, no_update
        if not rel_a or not rel_b:
            return _EMPTY, "Pick trace A and a trace B to compare (the two dropdowns above).", [], []
        try:
            a, b = store.load(rel_a), store.load(rel_b)
            d = store.diff(rel_a, rel_b)
        except UserError as e:
            return _EMPTY, "", [panels.error_card(str(e), "This comparison cannot be shown")], []
        fig, info_a, info_b = figures.diff_figure(a.gantt, b.gantt, panels.filters(kinds, opcodes, sms, seqs, flags),
                                                  View.from_json(view_json))
        status = f"A: {figures.describe(info_a)} | B: {figures.describe(info_b)}"
        return fig, status, [], panels.diff_tables(d)
