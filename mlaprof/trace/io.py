"""Atomic writing and lazy (memory-mapped) reading of Arrow IPC trace files."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

from mlaprof.errors import UserError
from mlaprof.trace.schema import COLUMN_NAMES, META_KEY, SCHEMA_NO_META, SCHEMA_VERSION, TraceMeta


class TraceError(UserError):
    """A trace file that cannot be used; str() is one line saying what is wrong and what to do."""


@dataclasses.dataclass
class Trace:
    table: pa.Table  # columns of trace.schema.COLUMNS, memory-mapped when read from a file
    meta: TraceMeta
    path: Path | None = None

    def __len__(self) -> int:
        return self.table.num_rows

    def col(self, name: str) -> np.ndarray:
        """A column as numpy: integers zero-copy; dictionary columns as their string per row."""
        c = self.table.column(name)
        if pa.types.is_dictionary(c.type):
            c = c.combine_chunks() if c.num_chunks != 1 else c.chunk(0)
            return np.asarray(c.dictionary.to_pylist(), dtype=object)[c.indices.to_numpy(zero_copy_only=False)]
        return c.to_numpy()

    def codes(self, name: str, names: list[str]) -> np.ndarray:
        """A dictionary column as int codes into ``names`` (e.g. schema.KIND_NAMES): fast for filtering."""
        return dictionary_codes(self.table.column(name), names)

    @property
    def makespan_ns(self) -> int:
        if self.table.num_rows == 0:
            return 0
        return int(self.col("end_ns").max() - min(0, int(self.col("start_ns").min())))


def dictionary_codes(column: pa.ChunkedArray, names: list[str]) -> np.ndarray:
    """A dictionary-encoded column as int codes into ``names`` (-1 for a value not in ``names``)."""
    c = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    lut = np.array([names.index(s) if s in names else -1 for s in c.dictionary.to_pylist()], dtype=np.int16)
    return lut[c.indices.to_numpy(zero_copy_only=False)] if len(lut) else np.zeros(len(c), np.int16)


def build_table(columns: dict[str, np.ndarray | list]) -> pa.Table:
    """Columns (numpy arrays, or lists of str for dictionary columns) -> a table in the trace schema."""
    missing = [n for n in COLUMN_NAMES if n not in columns]
    if missing:
        raise TraceError(f"cannot build a trace: columns {missing} are missing")
    arrays = []
    for field in SCHEMA_NO_META:
        v = columns[field.name]
        if pa.types.is_dictionary(field.type):
            arrays.append(pa.array(v, type=pa.string()).dictionary_encode().cast(field.type))
        else:
            arrays.append(pa.array(np.asarray(v), type=field.type))
    return pa.Table.from_arrays(arrays, schema=SCHEMA_NO_META)


def write_trace(path: str | os.PathLike, table: pa.Table, meta: TraceMeta) -> Path:
    """Write atomically: a temporary file in the same folder, fsync, then rename over ``path``.

    A failure at any point leaves an existing file at ``path`` untouched.
    """
    from mlaprof.trace.validate import validate_table

    path = Path(path)
    validate_table(table, meta, where=str(path))
    schema = table.schema.with_metadata({META_KEY: meta.to_bytes()})
    table = table.replace_schema_metadata(schema.metadata)
    if path.is_dir():
        raise TraceError(f"cannot write {path}: it is a folder; give a file name (.arrow)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except (FileExistsError, NotADirectoryError):
        raise TraceError(f"cannot write {path}: a part of its folder path is a file, not a folder") from None
    except OSError as e:  # a read-only or special folder, no permission
        raise TraceError(f"cannot write {path}: {e.strerror or e}") from None
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a trace is an ordinary file for others to read
    try:
        with os.fdopen(fd, "wb") as f:
            with pa.ipc.new_file(f, schema) as w:
                w.write_table(table, max_chunksize=1 << 20)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(e, OSError):  # disk full, quota: the old file (if any) is still there
            raise TraceError(f"cannot write {path}: {e.strerror or e}; nothing was changed there") from None
        raise
    return path


def read_trace(path: str | os.PathLike, validate: bool = True) -> Trace:
    """Open a trace memory-mapped (columns are paged in only when used) and check it."""
    from mlaprof.trace.validate import validate_table

    path = Path(path)
    if path.is_dir():
        raise TraceError(f"{path}: a folder, not a trace file (the dashboard takes folders: mlaprof dash {path})")
    if not path.is_file():
        raise TraceError(f"{path}: no such trace file")
    try:
        source = pa.memory_map(str(path), "r")
        reader = pa.ipc.open_file(source)
        table = reader.read_all()
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise TraceError(f"{path}: not a readable Arrow trace file (truncated or another format: {first})") from None
    raw = (table.schema.metadata or {}).get(META_KEY)
    if raw is None:
        raise TraceError(f"{path}: Arrow file without mlaprof metadata; it was not written by mlaprof")
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError:
        raise TraceError(f"{path}: mlaprof metadata is not valid JSON; the file is damaged") from None
    version = str(obj.get("schema_version", "?"))
    if version.split(".")[0] != SCHEMA_VERSION.split(".")[0]:
        raise TraceError(
            f"{path}: trace schema version {version} is not supported by this mlaprof "
            f"(reads {SCHEMA_VERSION.split('.')[0]}.x); upgrade mlaprof or re-record the trace"
        )
    try:
        meta = TraceMeta.from_dict(obj)
    except TypeError as e:
        raise TraceError(f"{path}: mlaprof metadata is incomplete ({e})") from None
    if validate:
        validate_table(table, meta, where=str(path))
    return Trace(table=table, meta=meta, path=path)
