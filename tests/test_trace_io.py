"""The shared trace reader, writer and validator: round trip, atomic writes, and one clear line per bad file."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from mlaprof.cli.main import main
from mlaprof.trace.io import TraceError, read_trace, write_trace
from mlaprof.trace.schema import META_KEY, SCHEMA_VERSION
from tests.golden import two_sm

GOLDEN_FILE = Path(__file__).parent / "golden" / "two_sm_v1.arrow"


def _golden(tmp_path, **meta) -> Path:
    b = two_sm.build_a(**meta)
    return write_trace(tmp_path / "a.arrow", b.table(), b.meta)


def _raw_write(path: Path, table: pa.Table, meta_obj: dict) -> Path:
    """Write an Arrow file directly, bypassing write_trace's validation, to make files a reader must refuse."""
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta_obj).encode()})
    with pa.ipc.new_file(str(path), table.schema) as w:
        w.write_table(table)
    return path


def _meta_obj(**changes) -> dict:
    return {**dataclasses.asdict(two_sm.build_a().meta), **changes}


def test_round_trip(tmp_path):
    b = two_sm.build_a(gpu_name="NVIDIA H100 80GB HBM3", kernel_time_us=1.5, run_id="r1", repetition=2)
    path = write_trace(tmp_path / "t.arrow", b.table(), b.meta)
    t = read_trace(path)
    assert t.table.equals(b.table())
    assert t.meta == b.meta
    assert t.makespan_ns == 300
    assert list(t.col("kind")[:2]) == ["instruction", "setup"]
    assert t.path == path


def test_checked_in_golden_file_still_reads():
    """tests/golden/two_sm_v1.arrow was written by schema 1.0: every 1.x reader must read it unchanged."""
    if SCHEMA_VERSION.split(".")[0] != "1":
        with pytest.raises(TraceError, match="schema version"):
            read_trace(GOLDEN_FILE)
        return
    t = read_trace(GOLDEN_FILE)
    expected = two_sm.build_a()
    assert t.table.equals(expected.table()), "a trace written by schema 1.0 no longer reads the same: bump the major"
    assert t.meta.tasks == expected.meta.tasks


def test_failed_validation_leaves_existing_file_byte_identical(tmp_path):
    path = _golden(tmp_path)
    before = path.read_bytes()
    b = two_sm.build_b()
    cols = b.columns()
    cols["end_ns"] = cols["end_ns"].copy()
    cols["end_ns"][3] = cols["start_ns"][3] - 1
    from mlaprof.trace.io import build_table

    with pytest.raises(TraceError, match="end before they start"):
        write_trace(path, build_table(cols), b.meta)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.arrow"]  # no temporary file left behind


def test_write_failing_midway_leaves_existing_file_byte_identical(tmp_path, monkeypatch):
    path = _golden(tmp_path)
    before = path.read_bytes()

    class Boom(OSError):
        pass

    real = pa.ipc.new_file

    def failing_new_file(sink, schema, **kw):
        writer = real(sink, schema, **kw)
        real_write = writer.write_table

        def write_table(table, **_):
            real_write(table.slice(0, 5))  # some bytes reach the temporary file, then the disk "fails"
            raise Boom("disk full")

        writer.write_table = write_table
        return writer

    monkeypatch.setattr(pa.ipc, "new_file", failing_new_file)
    b = two_sm.build_b()
    with pytest.raises(TraceError, match="cannot write .*a.arrow: disk full; nothing was changed there"):
        write_trace(path, b.table(), b.meta)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.arrow"]
    assert read_trace(path).meta.scheduler == "golden-a"


@pytest.mark.parametrize("where, phrase", [
    ("folder", "it is a folder"),
    ("under_a_file/t.arrow", "a part of its folder path is a file"),
    ("/proc/t.arrow", "cannot write /proc/t.arrow"),
])
def test_unwritable_paths_give_one_line(tmp_path, capsys, where, phrase):
    (tmp_path / "folder").mkdir()
    (tmp_path / "under_a_file").write_text("x")
    target = where if where.startswith("/") else str(tmp_path / where)
    b = two_sm.build_a()
    with pytest.raises(TraceError, match=phrase):
        write_trace(target, b.table(), b.meta)
    assert main(["simulate", "-w", "b1-65536-q1", "--out", target]) == 2
    err = capsys.readouterr().err.strip()
    assert phrase in err and len(err.splitlines()) == 1


def test_reading_a_folder_says_so(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 2
    assert "a folder, not a trace file" in capsys.readouterr().err


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a phrase its one-line error must contain)."""
    good = _golden(tmp_path)
    data = good.read_bytes()
    table = two_sm.build_a().table()
    out = {}
    p = tmp_path / "truncated.arrow"
    p.write_bytes(data[: len(data) // 2])
    out["truncated"] = (p, "not a readable Arrow trace")
    p = tmp_path / "notes.arrow"
    p.write_text("this is a text file, not Arrow\n" * 20)
    out["non-arrow"] = (p, "not a readable Arrow trace")
    out["empty"] = (tmp_path / "empty.arrow", "not a readable Arrow trace")
    out["empty"][0].write_bytes(b"")
    out["major"] = (_raw_write(tmp_path / "v9.arrow", table, _meta_obj(schema_version="9.0")), "schema version 9.0")
    out["missing-column"] = (_raw_write(tmp_path / "nocol.arrow", table.drop_columns(["wait_task"]), _meta_obj()),
                             "missing columns wait_task")
    end = table.column("end_ns").to_numpy().copy()
    end[5] = -1
    bad_end = table.set_column(table.schema.get_field_index("end_ns"), "end_ns", pa.array(end, pa.int64()))
    out["end<start"] = (_raw_write(tmp_path / "endstart.arrow", bad_end, _meta_obj()), "end before they start")
    out["overflow"] = (_raw_write(tmp_path / "overflow.arrow", table, _meta_obj(overflow_events=7, event_capacity=2048)),
                       "7 events were dropped")
    p = tmp_path / "plain.arrow"
    with pa.ipc.new_file(str(p), table.schema) as w:
        w.write_table(table)
    out["no-metadata"] = (p, "without mlaprof metadata")
    p = tmp_path / "badjson.arrow"
    t2 = table.replace_schema_metadata({META_KEY: b"{not json"})
    with pa.ipc.new_file(str(p), t2.schema) as w:
        w.write_table(t2)
    out["bad-json"] = (p, "not valid JSON")
    out["no-file"] = (tmp_path / "absent.arrow", "no such trace file")
    return out


BAD = ["truncated", "non-arrow", "empty", "major", "missing-column", "end<start", "overflow", "no-metadata",
       "bad-json", "no-file"]


@pytest.mark.parametrize("case", BAD)
def test_bad_file_gives_one_line_trace_error(tmp_path, case):
    path, phrase = _bad_files(tmp_path)[case]
    with pytest.raises(TraceError) as e:
        read_trace(path)
    msg = str(e.value)
    assert "\n" not in msg
    assert phrase in msg
    assert str(path) in msg


@pytest.mark.parametrize("command", ["info", "info --json", "export --out X", "diff GOOD", "diff2 GOOD"])
@pytest.mark.parametrize("case", BAD)
def test_cli_bad_file_exit_2_one_line(tmp_path, capsys, case, command):
    files = _bad_files(tmp_path)
    path, phrase = files[case]
    good = str(tmp_path / "a.arrow")
    argv = {
        "info": ["info", str(path)], "info --json": ["info", str(path), "--json"],
        "export --out X": ["export", str(path), "--out", str(tmp_path / "x.json")],
        "diff GOOD": ["diff", str(path), good], "diff2 GOOD": ["diff", good, str(path), "--json"],
    }[command]
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    assert err.count("\n") == 1 and phrase in err and "Traceback" not in err
    assert not (tmp_path / "x.json").exists()


def test_console_script_bad_file(tmp_path):
    """The real process: exit 2, one line on stderr, no traceback."""
    path, _ = _bad_files(tmp_path)["truncated"]
    r = subprocess.run([sys.executable, "-m", "mlaprof", "info", str(path)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert r.stderr.startswith("mlaprof info: error: ")


def test_int_columns_come_back_zero_copy(tmp_path):
    t = read_trace(_golden(tmp_path))
    assert t.col("start_ns").dtype == np.int64
    assert t.codes("kind", ["instruction", "setup", "load", "compute", "wait", "store"]).max() == 5
