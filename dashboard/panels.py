"""Page fragments built from library results: browser rows, error cards, summary cards, diff tables, filters.

Nothing here computes a statistic: every number is a field of ``mlaprof.analysis.Analysis`` or
``mlaprof.diff.Diff``, only formatted.
"""

from __future__ import annotations

from dash import html

from dashboard.data import BAR_KINDS, Filters
from dashboard.store import Row

ERROR_CARD_CLASS = "error-card"
_CARD = {"border": "1px solid #ddd", "borderRadius": "6px", "padding": "6px 12px", "background": "#fafafa",
         "minWidth": "120px"}
_ERROR = {"border": "1px solid #D55E00", "borderLeft": "6px solid #D55E00", "borderRadius": "6px",
          "padding": "8px 12px", "background": "#fdf1ec", "margin": "6px 0", "color": "#5a1a00"}


def error_card(message: str, title: str = "This trace cannot be shown") -> html.Div:
    return html.Div(className=ERROR_CARD_CLASS, style=_ERROR, children=[html.B(title), html.Div(message)])


def load_errors(rows: list[Row]) -> list:
    bad = [r for r in rows if not r.ok]
    if not bad:
        return []
    title = f"{len(bad)} of {len(rows)} files in this folder cannot be read (the others work)"
    return [html.Div(className=ERROR_CARD_CLASS, style=_ERROR, children=[
        html.B(title), html.Ul([html.Li(r.error) for r in bad], style={"margin": "4px 0"})])]


def records(rows: list[Row]) -> list[dict]:
    return [r.to_record() for r in rows]


def options(rows: list[Row]) -> list[dict]:
    """Dropdown entries; unreadable files stay pickable so their error card can be opened in place."""
    return [{"label": r.path if r.ok else f"{r.path} (error)", "value": r.path} for r in rows]


def filters(kinds, opcodes, sms, seqs, flags) -> Filters:
    """Widget values -> Filters (values from the browser are checked, unknown ones dropped)."""
    rng = None
    if isinstance(sms, (list, tuple)) and len(sms) == 2:
        try:
            rng = (int(min(sms)), int(max(sms)))
        except (TypeError, ValueError):
            rng = None
    flags = flags or []
    return Filters(
        kinds=tuple(k for k in (kinds or []) if k in BAR_KINDS),
        opcodes=tuple(o for o in (opcodes or []) if o in ("partial", "reduction")),
        sm_range=rng,
        seqs=tuple(int(s) for s in (seqs or []) if isinstance(s, (int, float, str)) and str(s).lstrip("-").isdigit()),
        split_roles="split" in flags,
        boundaries="boundaries" in flags,
        critical="critical" in flags,
    )


def _fmt(v, unit: str = "", digits: int = 2) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.{digits}f}{unit}"
    return f"{v}{unit}"


def _card(label: str, value: str) -> html.Div:
    return html.Div(style=_CARD, children=[html.Div(label, style={"fontSize": "12px", "color": "#666"}),
                                           html.Div(value, style={"fontSize": "18px", "fontWeight": "bold"})])


def summary_cards(an) -> list:
    crit = an.critical_summary
    return [
        _card("makespan", _fmt(an.makespan_us, " µs")),
        _card("kernel time (CUDA events)", _fmt(an.kernel_time_us, " µs")),
        _card("HBM floor", _fmt(an.hbm_floor_us, " µs")),
        _card("busy / wait / idle (SM·µs)", f"{an.busy_us:,.1f} / {an.wait_us:,.1f} / {an.idle_us:,.1f}"),
        _card("load imbalance (max / mean finish)", _fmt(an.load_imbalance, "", 3)),
        _card("achieved", f"{_fmt(an.tflops, ' TFLOPS')} · {_fmt(an.gbps, ' GB/s', 0)}"),
        _card("instructions / spans", f"{an.num_instructions:,} / {an.num_spans:,}"),
        _card("critical path", f"{crit['steps']} steps, {crit['waits']} waits, {crit['sms']} SMs"),
        _card("critical path time (µs): compute · load · store · semaphore", _path_time(an.critical_time_us)),
        _card("KV stream (middle): SMs · tile interval · rate", _stream(an.kv_stream)),
    ] + [html.Div(n, style={"color": "#8a1f00"}) for n in an.notes]


def _path_time(t: dict) -> str:
    if not t:
        return "n/a"
    return " · ".join(f"{t.get(k, 0.0):.2f}" for k in ("compute", "load", "store", "semaphore"))


def _stream(k: dict | None) -> str:
    if not k:
        return "n/a"
    if k["tile_interval_us"] is None:
        return f"{k['sms']} SMs · n/a · {_fmt(k['mean_tbps'], ' TB/s')} mean"
    return f"{k['streaming_sms']:.0f} SMs · {k['tile_interval_us']:.2f} µs · {_fmt(k['steady_tbps'], ' TB/s')}"


_TABLE = {"borderCollapse": "collapse", "margin": "6px 16px 6px 0", "fontSize": "13px"}
_TD = {"border": "1px solid #ddd", "padding": "2px 8px", "textAlign": "right"}


def _table(title: str, header: list[str], rows: list[list], table_id: str | None = None) -> html.Div:
    head = html.Tr([html.Th(h, style={**_TD, "background": "#f4f4f4"}) for h in header])
    body = [html.Tr([html.Td(c, style=_TD) for c in r]) for r in rows]
    table = html.Table([html.Thead(head), html.Tbody(body)], style=_TABLE)
    if table_id:
        table.id = table_id
    return html.Div([html.H4(title, style={"margin": "8px 0 2px"}), table])


def _abd(name: str, v: dict, digits: int = 3) -> list:
    sign = "+" if v["delta"] > 0 else ""
    return [name, _fmt(v["a"], "", digits), _fmt(v["b"], "", digits), f"{sign}{_fmt(v['delta'], '', digits)}"]


def diff_tables(d) -> html.Div:
    """The delta tables of an ``mlaprof.diff.Diff`` (B minus A)."""
    head = [["makespan (µs)", _fmt(d.makespan_a_us, "", 3), _fmt(d.makespan_b_us, "", 3),
             f"{'+' if d.makespan_delta_us > 0 else ''}{d.makespan_delta_us:,.3f}"]]
    head += [_abd(f"total {k.replace('_us', '')} (SM·µs)", v) for k, v in d.totals.items()]
    head += [_abd(k, v) for k, v in d.rates.items()]
    parts = [
        html.P([html.B(f"mode: {d.mode}. "), d.note]),
        html.Div(style={"display": "flex", "flexWrap": "wrap"}, children=[
            _table("Headline (B - A)", ["", "A", "B", "B - A"], head, table_id="diff-headline"),
            _table("Time by kind (µs, summed over SMs)", ["kind", "A", "B", "B - A"],
                   [_abd(k, v) for k, v in d.by_kind_us.items() if k in BAR_KINDS]),
            _table("Mean instruction duration (µs)", ["opcode", "A", "B", "B - A"],
                   [_abd(k, v) for k, v in d.opcode_mean_us.items()]),
            _table("Critical path time by part (µs)", ["part", "A", "B", "B - A"],
                   [_abd(k.replace("_", " "), v) for k, v in d.critical_time_us.items() if v["a"] or v["b"]],
                   table_id="diff-critical-time"),
        ]),
        _table("SMs that changed most", ["SM", "busy A", "busy B", "wait A", "wait B", "finish A", "finish B",
                                         "score µs"],
               [[s["sm"], *(_fmt(s[k][side], "", 3) for k in ("busy_us", "wait_us", "finish_us") for side in "ab"),
                 _fmt(s["score_us"], "", 3)] for s in d.sms]),
    ]
    if d.ops is not None:
        parts.append(_table(
            f"Matched instructions: {d.ops['matched']} matched, {d.ops['moved_sm']} moved SM; largest changes",
            ["opcode", "seq", "KV range", "SM A", "SM B", "dur A", "dur B", "Δ dur", "Δ start"],
            [[c.signature["opcode"], c.signature["seq"], f"[{c.signature['kv_start']}, {c.signature['kv_end']})",
              c.a["sm"], c.b["sm"], c.a["dur_us"], c.b["dur_us"], c.dur_delta_us, c.start_shift_us]
             for c in d.op_changes[:15]]))
    return html.Div(parts)
