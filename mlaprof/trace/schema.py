"""Trace schema and metadata, defined once.

One row per span: an interval [start_ns, end_ns) of one kind on one SM and role, in ns from the kernel's
start (the earliest event of any SM).  Strings are dictionary-encoded; everything else is an integer.
Schema metadata holds one JSON object under the key ``mlaprof`` (see ``TraceMeta``).
"""

from __future__ import annotations

import dataclasses
import json

import pyarrow as pa

from mlaprof.format import Kind, Opcode, Role

SCHEMA_VERSION = "1.0"  # major.minor: a reader refuses another major, accepts a newer minor
META_KEY = b"mlaprof"

KIND_NAMES = [k.name.lower() for k in Kind]  # index == Kind value
ROLE_NAMES = [r.name.lower() for r in Role]
OPCODE_NAMES = [o.name.lower() for o in Opcode]

_dict = pa.dictionary(pa.int8(), pa.string())

# (name, type, meaning)
COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("sm", pa.int32(), "SM (block) index"),
    ("role", _dict, "controller | producer | consumer"),
    ("kind", _dict, "instruction | setup | load | compute | wait | store"),
    ("instr", pa.int32(), "instruction index in that SM's list"),
    ("task", pa.int32(), "task id in the schedule (metadata 'tasks'); -1 unknown"),
    ("opcode", _dict, "partial | reduction"),
    ("start_ns", pa.int64(), "ns from kernel start"),
    ("end_ns", pa.int64(), "ns from kernel start, >= start_ns"),
    ("seq", pa.int32(), "sequence index"),
    ("q_start", pa.int32(), "first query token covered"),
    ("q_count", pa.int32(), "query tokens covered"),
    ("kv_start", pa.int32(), "KV range start (token)"),
    ("kv_end", pa.int32(), "KV range end (token, exclusive)"),
    ("slot", pa.int32(), "scratch slot written; -1 for the final output"),
    ("aux", pa.int32(), "KV tile index (load, compute), input index (wait); -1 otherwise"),
    ("wait_task", pa.int32(), "for wait spans: the task id waited on; -1 otherwise"),
]
COLUMN_NAMES = [c[0] for c in COLUMNS]
SCHEMA_NO_META = pa.schema([pa.field(n, t, nullable=False) for n, t, _ in COLUMNS])
SCHEMA = SCHEMA_NO_META  # metadata is attached per file


@dataclasses.dataclass
class TraceMeta:
    source: str  # "measured" | "simulated"
    workload: dict  # Workload.to_json()
    scheduler: str
    sm_count: int
    scheduler_params: dict = dataclasses.field(default_factory=dict)
    tasks: list = dataclasses.field(default_factory=list)  # Schedule.to_json()
    schema_version: str = SCHEMA_VERSION
    mlaprof_version: str = ""
    git_rev: str = ""
    gpu_name: str = ""
    clocks: dict = dataclasses.field(default_factory=dict)  # e.g. {"sm_mhz": 1980, "mem_mhz": 2619}
    cuda_version: str = ""
    driver_version: str = ""
    timer_source: str = ""  # "globaltimer" | "cost-model"
    timer_resolution_ns: float | None = None
    start_skew_ns: float | None = None  # spread of SM start times
    kernel_time_us: float | None = None  # CUDA-event time of the launch (measured traces)
    run_id: str = ""
    repetition: int = 0
    created: str = ""  # ISO 8601, UTC
    event_capacity: int | None = None
    overflow_events: int = 0  # events dropped because an SM's buffer was full; > 0 makes the trace invalid
    extra: dict = dataclasses.field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return json.dumps(dataclasses.asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_dict(cls, obj: dict) -> "TraceMeta":
        names = {f.name for f in dataclasses.fields(cls)}
        known = {k: v for k, v in obj.items() if k in names}
        extra = dict(known.pop("extra", {}) or {})
        extra.update({k: v for k, v in obj.items() if k not in names})
        return cls(**known, extra=extra)
