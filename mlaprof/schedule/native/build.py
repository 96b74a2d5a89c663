"""Compiling the native scheduler core on first use: the system C compiler (``$CC``, else ``cc``, else
``gcc``), into a per-user cache directory, one file per hash of the sources and flags.

The package is often imported from a checkout on ``PYTHONPATH`` (no install step), so nothing is built
ahead of time.  Concurrent processes are safe: each compiles to a private temporary name and renames it
into place (atomic on one file system), so a reader sees either no library or a whole one.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

HERE = Path(__file__).parent
# -ffp-contract=off: no fused multiply-adds, so every double is rounded where Python rounds it (the
# results must be bit-identical to the Python planner's); no -ffast-math for the same reason
FLAGS = ("-O2", "-std=c11", "-shared", "-fPIC", "-ffp-contract=off")
LIB_NAME = "mlaprof_schedule"


def flags() -> tuple[str, ...]:
    """FLAGS, and any in ``$MLAPROF_NATIVE_CFLAGS`` (the tests add -DMLP_POISON, see core.h's ALLOC)."""
    return FLAGS + tuple(os.environ.get("MLAPROF_NATIVE_CFLAGS", "").split())


class BuildError(RuntimeError):
    """No compiler, or it failed: the schedulers plan in Python instead."""


def sources() -> list[Path]:
    return sorted(HERE.glob("*.c")) + sorted(HERE.glob("*.h"))


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/mlaprof/native`` (default ``~/.cache``); a per-user temporary directory where the
    home directory is not writable."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = Path(base) / "mlaprof" / "native"
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if os.access(path, os.W_OK):
            return path
    except OSError:
        pass
    import tempfile

    uid = os.getuid() if hasattr(os, "getuid") else os.getpid()
    path = Path(tempfile.gettempdir()) / f"mlaprof-native-{uid}"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def compiler() -> str | None:
    import shutil

    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")


def library_path() -> Path:
    """Where this version of the sources is (or will be) compiled: keyed by the sources, the flags and the
    platform (not by the compiler: any compiler's build of the same sources plans the same)."""
    h = hashlib.sha256()
    for src in sources():
        h.update(src.name.encode() + b"\0" + src.read_bytes() + b"\0")
    h.update(" ".join((*flags(), sys.platform, os.uname().machine if hasattr(os, "uname") else "")).encode())
    return cache_dir() / f"{LIB_NAME}-{h.hexdigest()[:20]}.so"


def build() -> Path:
    """The compiled library's path, compiling it first if this version of the sources has no library yet."""
    try:
        out = library_path()
    except OSError as e:
        raise BuildError(f"no writable cache directory ({e})") from None
    if out.exists():
        return out
    import subprocess

    cc = compiler()
    if cc is None:
        raise BuildError("no C compiler (set $CC, or install cc/gcc)")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    cmd = [cc, *flags(), "-o", str(tmp), *(str(s) for s in sources() if s.suffix == ".c"), "-lm"]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise BuildError(f"{cc} could not run ({e})") from None
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        first = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise BuildError(f"{cc} failed: {first}")
    os.replace(tmp, out)
    return out
