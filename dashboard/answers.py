"""What the page shows for given widget values: the bodies of the main callbacks, as plain functions.

They live here, not in callbacks.py, because the first page is built from the same answers: the layout
carries the trace list, the filter widgets and the first trace's Gantt already filled in, so the Gantt is
drawn with the page instead of after three callback round trips (trace list, then filter widgets, then the
figure), and the summary charts below it load afterwards (``callbacks.summary``).
"""

from __future__ import annotations

import dataclasses

from dash import no_update

from dashboard import figures, panels
from dashboard.data import BAR_KINDS
from dashboard.store import TraceStore
from dashboard.view import view_of
from mlaprof.errors import UserError

EMPTY_FIGURE = {"data": [], "layout": {"height": 300, "xaxis": {"visible": False}, "yaxis": {"visible": False}}}
DEFAULT_WIDGETS = {"kinds": list(BAR_KINDS), "opcodes": ["partial", "reduction"], "sms": None, "seqs": [],
                   "options": ["boundaries", "critical"]}


def browse(store: TraceStore, current: str | None, clicked: str | None = None):
    """Trace table rows, the load-error card, the A and B dropdown options and the trace picked."""
    rows = store.catalogue()
    paths = [r.path for r in rows]
    pick = current if current in paths else next((r.path for r in rows if r.ok), paths[0] if paths else None)
    if clicked:
        pick = clicked
    return panels.records(rows), panels.load_errors(rows), panels.options(rows), panels.options(rows), pick


def filter_widgets(store: TraceStore, rel: str | None, sms_max, seqs):
    """SM slider max and value, sequence options and value for trace ``rel`` (no_update where unchanged:
    setting an unchanged value would re-run the Gantt)."""
    keep_seqs = no_update if not seqs else []
    try:
        ld = store.load(rel) if rel else None
    except UserError:
        ld = None
    if ld is None:
        return no_update, no_update, [], keep_seqs
    last = ld.gantt.sm_count - 1
    same = sms_max == last
    return no_update if same else last, no_update if same else [0, last], ld.gantt.sequences, keep_seqs


def gantt(store: TraceStore, rel: str | None, kinds, opcodes, sms, seqs, flags, stored_view):
    """The Gantt figure and its status line (an empty figure when the trace cannot be read: the summary's
    answer carries the error card)."""
    try:
        ld = store.load(rel) if rel else None
    except UserError:
        ld = None
    if ld is None:  # (uirevision names the trace: the summary waits for the Gantt of this trace, see callbacks)
        return {"data": [], "layout": {**EMPTY_FIGURE["layout"], "uirevision": f"{rel}|none"}}, ""
    fig, info = figures.gantt_figure(ld.gantt, panels.filters(kinds, opcodes, sms, seqs, flags),
                                     view_of(stored_view, rel))
    return fig, f"{rel}: {figures.describe(info)}"


@dataclasses.dataclass
class FirstPage:
    """Initial values of the page's components (ids as in layout.IDS)."""

    table: list
    errors: list
    options: list
    pick: str | None
    sms_max: int
    sms: list
    seq_options: list
    figure: dict
    status: str


def first_page(store: TraceStore) -> FirstPage:
    table, errors, options, _, pick = browse(store, None)
    sms_max, sms, seq_options, _ = filter_widgets(store, pick, None, [])
    if sms_max is no_update:  # the first trace cannot be read: its error card comes with the summary
        sms_max, sms, seq_options = 131, [0, 131], []
    w = DEFAULT_WIDGETS
    figure, status = gantt(store, pick, w["kinds"], w["opcodes"], sms, w["seqs"], w["options"], {})
    return FirstPage(table=table, errors=errors, options=options, pick=pick, sms_max=sms_max, sms=sms,
                     seq_options=seq_options, figure=figure, status=status)
