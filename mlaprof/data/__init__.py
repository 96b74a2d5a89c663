"""Package data: the cost model fitted to measured H100 traces (``cost_h100.json``; see its ``source``)."""
