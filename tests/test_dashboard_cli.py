"""`mlaprof dash` and `python -m dashboard`: help with an example, one-line errors for bad input."""

import socket
import subprocess
import sys

import pytest

from dashboard.app import DEFAULT_DIR, _is_loopback, create_app
from mlaprof.cli.main import main


def test_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["dash", "--help"])
    out = capsys.readouterr().out
    assert "example:" in out and "mlaprof dash traces/" in out and "127.0.0.1" in out


def test_bad_dir_is_one_line_exit_2(tmp_path, capsys):
    assert main(["dash", str(tmp_path / "missing"), "--no-browser"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlaprof dash: error:") and "not a directory" in err and "\n" not in err


def test_bad_port_is_one_line_exit_2(tmp_path, capsys):
    assert main(["dash", str(tmp_path), "--port", "70000", "--no-browser"]) == 2
    assert "--port must be 1..65535" in capsys.readouterr().err


def test_busy_port_is_one_line_exit_2(tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["dash", str(tmp_path), "--port", str(port), "--no-browser"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mlaprof dash: error: cannot serve on 127.0.0.1:") and "\n" not in err


def test_python_m_dashboard_is_the_same_command():
    r = subprocess.run([sys.executable, "-m", "dashboard", "--help"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "example:" in r.stdout


def test_defaults():
    assert DEFAULT_DIR.name == "traces" and DEFAULT_DIR.parent.joinpath("pyproject.toml").is_file()
    assert _is_loopback("127.0.0.1") and _is_loopback("localhost") and _is_loopback("::1")
    assert not _is_loopback("0.0.0.0")
    app = create_app(DEFAULT_DIR)
    assert app.title == "mlaprof dashboard"
