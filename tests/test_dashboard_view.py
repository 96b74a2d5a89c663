"""relayoutData events -> the visible range, keeping what an event leaves out."""

from dashboard.view import View, update_view


def test_zoom_reset_and_partial_events():
    v = update_view(View(), {"xaxis.range[0]": 10.0, "xaxis.range[1]": 5.0})
    assert v == View(x=(5.0, 10.0))
    v = update_view(v, {"yaxis.range": [40.5, 3.5]})
    assert v == View(x=(5.0, 10.0), y=(3.5, 40.5))
    assert update_view(v, {"autosize": True}) == v  # plotly's first event names no axis
    assert update_view(v, {"xaxis.autorange": True}) == View(x=None, y=(3.5, 40.5))
    assert update_view(v, {"xaxis2.range[0]": 1, "xaxis2.range[1]": 2}) == View(x=(1.0, 2.0), y=(3.5, 40.5))


def test_garbage_is_ignored():
    v = View(x=(1.0, 2.0))
    assert update_view(v, None) == v
    assert update_view(v, {"xaxis.range": "nonsense"}) == View()
    assert update_view(v, {"xaxis.range": [float("nan"), 3]}) == View()
    assert View.from_json({"x": [3, 1], "y": "bad"}) == View(x=(1.0, 3.0))
    assert View.from_json(View(x=(1.0, 2.0)).to_json()) == View(x=(1.0, 2.0))


def test_stored_view_belongs_to_one_trace():
    from dashboard.view import after_relayout, view_of

    stored = after_relayout({}, "a.arrow", {"xaxis.range": [1, 2]})
    assert stored == {"key": "a.arrow", "x": [1.0, 2.0], "y": None}
    assert view_of(stored, "a.arrow") == View(x=(1.0, 2.0))
    assert view_of(stored, "b.arrow") == View()  # another trace starts unzoomed
    assert after_relayout(stored, "a.arrow", {"autosize": True}) is None  # nothing changed: no update
    assert after_relayout(stored, "b.arrow", {"autosize": True}) is None  # b is already shown whole
    assert after_relayout(stored, "a.arrow", {"xaxis.autorange": True}) == {"key": "a.arrow", "x": None, "y": None}
