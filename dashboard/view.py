"""The visible part of a Gantt (x and y ranges), updated from Plotly's ``relayoutData`` events.

Plotly reports a zoom as ``{"xaxis.range[0]": a, "xaxis.range[1]": b}`` (or ``"xaxis.range": [a, b]``), a
reset as ``{"xaxis.autorange": true}``, and in the diff figure the second axis as ``xaxis2``.  Each event only
names what changed, so the view keeps the previous value of whatever the event leaves out.
"""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class View:
    x: tuple[float, float] | None = None  # µs; None = the whole trace
    y: tuple[float, float] | None = None  # SM rows (low, high); None = every row

    def to_json(self) -> dict:
        return {"x": list(self.x) if self.x else None, "y": list(self.y) if self.y else None}

    @classmethod
    def from_json(cls, obj) -> "View":
        if not isinstance(obj, dict):
            return cls()
        return cls(x=_pair(obj.get("x")), y=_pair(obj.get("y")))


def _pair(v) -> tuple[float, float] | None:
    try:
        a, b = (float(v[0]), float(v[1]))
    except (TypeError, ValueError, IndexError, KeyError):
        return None
    if not (math.isfinite(a) and math.isfinite(b)) or a == b:
        return None
    return (min(a, b), max(a, b))


def _axis_range(relayout: dict, axis: str, current):
    if relayout.get(f"{axis}.autorange"):
        return None
    if f"{axis}.range" in relayout:
        return _pair(relayout[f"{axis}.range"])
    if f"{axis}.range[0]" in relayout and f"{axis}.range[1]" in relayout:
        return _pair((relayout[f"{axis}.range[0]"], relayout[f"{axis}.range[1]"]))
    return current


def update_view(view: View, relayout, x_axes=("xaxis", "xaxis2"), y_axes=("yaxis",)) -> View:
    """The view after one relayout event; axes listed later win when an event names several."""
    if not isinstance(relayout, dict):
        return view
    x, y = view.x, view.y
    for axis in x_axes:
        if any(k.startswith(axis + ".") for k in relayout):
            x = _axis_range(relayout, axis, x)
    for axis in y_axes:
        if any(k.startswith(axis + ".") for k in relayout):
            y = _axis_range(relayout, axis, y)
    return View(x=x, y=y)


def view_of(stored, key: str) -> View:
    """The view kept in a ``dcc.Store`` for ``key`` (the trace, or the pair diffed); the whole trace otherwise.

    Storing the key with the view is what lets a newly picked trace start unzoomed without a callback that
    resets the store first (one callback fewer between a pick and the figure).
    """
    if isinstance(stored, dict) and stored.get("key") == key:
        return View.from_json(stored)
    return View()


def after_relayout(stored, key: str, relayout, x_axes=("xaxis",), y_axes=("yaxis",)) -> dict | None:
    """The store's new content after a relayout event, or None when the visible range did not change."""
    old = view_of(stored, key)
    new = update_view(old, relayout, x_axes, y_axes)
    return None if new == old else {"key": key, **new.to_json()}
