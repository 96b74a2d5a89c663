"""Which code made a trace: the git revision recorded in every trace's metadata (measured or simulated).

``MLAPROF_GIT_REV`` overrides it, for runs in a copy of the tree whose git history is not the one the code
came from (the device machine gets the working tree with a stale .git). Otherwise ``git rev-parse`` of this
checkout, with ``+dirty`` when tracked files differ from that revision, so a trace never names a commit
that is not what ran.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def git_revision() -> str:
    if os.environ.get("MLAPROF_GIT_REV"):
        return os.environ["MLAPROF_GIT_REV"].strip()
    try:
        rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=ROOT)
        if rev.returncode != 0:
            return ""
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "mlaprof", "csrc"],
                               capture_output=True, text=True, timeout=5, cwd=ROOT)
        return rev.stdout.strip() + ("+dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return ""
