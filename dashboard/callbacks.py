"""Dash callbacks: read widget values, call the store/figures/panels, return what they give. No logic here."""

from __future__ import annotations

from dash import Input, Output, State, ctx, no_update

from dashboard import answers, figures, panels
from dashboard.layout import IDS
from dashboard.store import TraceStore
from dashboard.view import after_relayout, view_of
from mlaprof.errors import UserError

_EMPTY = answers.EMPTY_FIGURE
_FILTERS = [Input(IDS[k], "value") for k in ("kinds", "opcodes", "sms", "seqs", "options")]


def register(app, store: TraceStore) -> None:
    # The first page arrives with the trace list, the filter widgets and the first Gantt filled in
    # (answers.first_page), so these three do not run on page load, only when the user acts.
    @app.callback(
        Output(IDS["table"], "data"), Output(IDS["errors"], "children"), Output(IDS["a"], "options"),
        Output(IDS["b"], "options"), Output(IDS["a"], "value"),
        Input(IDS["refresh"], "n_clicks"), Input(IDS["table"], "active_cell"),
        State(IDS["a"], "value"), State(IDS["table"], "derived_viewport_data"), prevent_initial_call=True,
    )
    def browse(_clicks, cell, current, viewport):
        clicked = None
        if ctx.triggered_id == IDS["table"] and cell and viewport and 0 <= cell.get("row", -1) < len(viewport):
            clicked = viewport[cell["row"]].get("path")
        return answers.browse(store, current, clicked)

    # Order of work after a pick: filter widgets (cheap), then the Gantt, then the summary charts (the Gantt
    # is what the user waits for, and a browser draws one thing at a time).  The Gantt depends on the filter
    # widgets only, never on the summary, so it does not wait for the summary's charts to be drawn.
    @app.callback(
        Output(IDS["sms"], "max"), Output(IDS["sms"], "value"), Output(IDS["seqs"], "options"),
        Output(IDS["seqs"], "value"),
        Input(IDS["a"], "value"), State(IDS["sms"], "max"), State(IDS["seqs"], "value"), prevent_initial_call=True,
    )
    def filter_options(rel, sms_max, seqs):
        return answers.filter_widgets(store, rel, sms_max, seqs)

    @app.callback(
        Output(IDS["gantt"], "figure"), Output(IDS["gantt_status"], "children"), Output(IDS["gantt_drawn"], "data"),
        Input(IDS["a"], "value"), *_FILTERS, Input(IDS["gantt_view"], "data"), prevent_initial_call=True,
    )
    def gantt(rel, kinds, opcodes, sms, seqs, flags, stored_view):
        drawn = rel if ctx.triggered_id in (None, IDS["a"]) else no_update  # a new trace: its summary is due
        fig, status = answers.gantt(store, rel, kinds, opcodes, sms, seqs, flags, stored_view)
        return fig, status, drawn

    # The summary charts wait until the browser has painted the Gantt of that trace (on page load too: the
    # first Gantt comes with the layout): drawn at the same time they would share the browser's one thread
    # with it (measured: about +1 s to the first paint of a 1M-span trace).
    app.clientside_callback(
        """async function (rel) {
            const painted = () => {
                const gd = document.querySelector('#%s .js-plotly-plot');
                return gd && gd._fullLayout && String(gd._fullLayout.uirevision || '').startsWith(rel + '|');
            };
            const t0 = Date.now();  // (the Gantt tab may be hidden: then give up waiting after 5 s)
            while (rel && !painted() && Date.now() - t0 < 5000) await new Promise(r => setTimeout(r, 30));
            await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
            return rel;
        }""" % IDS["gantt"],
        Output(IDS["summary_due"], "data"), Input(IDS["gantt_drawn"], "data"),
    )

    @app.callback(
        Output(IDS["cards"], "children"), Output(IDS["sm_states"], "figure"), Output(IDS["kind_totals"], "figure"),
        Output(IDS["durations"], "figure"), Output(IDS["gantt_error"], "children"),
        Input(IDS["summary_due"], "data"),
    )
    def summary(rel):
        if not rel:
            return [], _EMPTY, _EMPTY, _EMPTY, []
        try:
            an = store.load(rel).analysis
        except UserError as e:
            return [], _EMPTY, _EMPTY, _EMPTY, [panels.error_card(str(e))]
        return (panels.summary_cards(an), figures.sm_states_figure(an), figures.kind_totals_figure(an),
                figures.duration_histogram_figure(an), [])

    # zoom/pan -> view store -> figure.  A relayout that changes nothing (plotly's {"autosize": true} after a
    # draw) must not re-run the figure callback: Dash drops the answer of a call overtaken by a newer one.
    @app.callback(
        Output(IDS["gantt_view"], "data"),
        Input(IDS["gantt"], "relayoutData"), State(IDS["a"], "value"), State(IDS["gantt_view"], "data"),
        prevent_initial_call=True,
    )
    def gantt_view(relayout, rel, stored):
        new = after_relayout(stored, rel or "", relayout, ("xaxis",), ("yaxis",))
        return no_update if new is None else new

    @app.callback(
        Output(IDS["diff_view"], "data"),
        Input(IDS["diff"], "relayoutData"), State(IDS["a"], "value"), State(IDS["b"], "value"),
        State(IDS["diff_view"], "data"), prevent_initial_call=True,
    )
    def diff_view(relayout, rel_a, rel_b, stored):
        new = after_relayout(stored, f"{rel_a}|{rel_b}", relayout, ("xaxis", "xaxis2"), ())
        return no_update if new is None else new

    @app.callback(
        Output(IDS["diff"], "figure"), Output(IDS["diff_status"], "children"), Output(IDS["diff_error"], "children"),
        Output(IDS["diff_tables"], "children"),
        Input(IDS["tabs"], "value"), Input(IDS["a"], "value"), Input(IDS["b"], "value"), *_FILTERS,
        Input(IDS["diff_view"], "data"), prevent_initial_call=True,
    )
    def diff(tab, rel_a, rel_b, kinds, opcodes, sms, seqs, flags, stored_view):
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
                                                  view_of(stored_view, f"{rel_a}|{rel_b}"))
        status = f"A: {figures.describe(info_a)} | B: {figures.describe(info_b)}"
        return fig, status, [], panels.diff_tables(d)
