"""The mlaprof Gantt dashboard (Dash + Plotly): browse traces, draw per-SM Gantts, summaries and diffs.

It imports the library (``mlaprof.trace``, ``mlaprof.analysis``, ``mlaprof.diff``); the library never imports it.
"""
