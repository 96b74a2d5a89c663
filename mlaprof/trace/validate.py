"""Checks that make a trace trustworthy; each failure is one line naming the file and the problem."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from mlaprof.trace.schema import COLUMN_NAMES, KIND_NAMES, ROLE_NAMES, OPCODE_NAMES, SCHEMA_NO_META, TraceMeta


def validate_table(table: pa.Table, meta: TraceMeta, where: str = "trace") -> None:
    from mlaprof.trace.io import TraceError

    missing = [n for n in COLUMN_NAMES if n not in table.column_names]
    if missing:
        raise TraceError(f"{where}: missing columns {', '.join(missing)}; it is not an mlaprof trace of this schema")
    for field in SCHEMA_NO_META:
        got = table.schema.field(field.name).type
        if got != field.type:
            raise TraceError(f"{where}: column {field.name!r} has type {got}, expected {field.type}")
    if meta.source not in ("measured", "simulated"):
        raise TraceError(f"{where}: metadata 'source' must be 'measured' or 'simulated', got {meta.source!r}")
    if meta.overflow_events:
        raise TraceError(
            f"{where}: {meta.overflow_events} events were dropped (per-SM buffer of {meta.event_capacity} overflowed); "
            "re-run with a larger --event-capacity"
        )
    if table.num_rows == 0:
        return
    start = table.column("start_ns").to_numpy()
    end = table.column("end_ns").to_numpy()
    bad = np.flatnonzero(end < start)
    if bad.size:
        i = int(bad[0])
        raise TraceError(f"{where}: {bad.size} spans end before they start (first: row {i}, {start[i]} > {end[i]} ns)")
    sm = table.column("sm").to_numpy()
    if sm.min() < 0 or sm.max() >= max(meta.sm_count, 1):
        raise TraceError(f"{where}: SM index {int(sm.max())} outside 0..{meta.sm_count - 1} (metadata sm_count)")
    for name, allowed in (("kind", KIND_NAMES), ("role", ROLE_NAMES), ("opcode", OPCODE_NAMES)):
        col = table.column(name)
        values = set()
        for chunk in col.chunks:
            values.update(chunk.dictionary.to_pylist())
        unknown = values - set(allowed)
        if unknown:
            raise TraceError(f"{where}: unknown {name} values {sorted(unknown)}; expected {allowed}")
