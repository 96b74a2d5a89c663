"""Which trace files the dashboard may open: ``*.arrow`` files under DIR, and nothing else.

The browser sends a path relative to DIR; ``TraceDir.resolve`` is the one gate between that string and the
file system.  It refuses absolute paths, ``..`` components, anything but ``.arrow`` files, and any path
whose real location (after following symlinks) is outside DIR, so a link planted in DIR that points at
``/etc`` or at a trace elsewhere cannot be read through the app.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

from mlaprof.errors import UserError

SUFFIX = ".arrow"


class UnsafePathError(UserError):
    """A requested path that is not a trace file inside the served directory."""


class TraceDir:
    def __init__(self, root: str | os.PathLike):
        path = Path(root).expanduser()
        if not path.is_dir():
            raise UserError(f"{root}: not a directory; give the folder that holds the .arrow traces")
        self.root = path.resolve()

    def discover(self) -> list[str]:
        """Relative POSIX paths of the traces under DIR (recursively), sorted; links leaving DIR are skipped."""
        found = []
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for name in filenames:
                if not name.endswith(SUFFIX) or name.startswith("."):
                    continue  # dot-files include write_trace's temporaries
                rel = Path(dirpath, name).relative_to(self.root).as_posix()
                try:
                    self.resolve(rel)
                except UnsafePathError:
                    continue
                found.append(rel)
        return sorted(found)

    def resolve(self, rel: str) -> Path:
        """The real path of ``rel`` (relative to DIR), or UnsafePathError saying why it is refused."""
        if not isinstance(rel, str) or not rel or "\x00" in rel:
            raise UnsafePathError("no trace path given")
        if "\\" in rel or PureWindowsPath(rel).drive or PurePosixPath(rel).is_absolute():
            raise UnsafePathError(f"{rel!r}: only paths relative to the served directory are allowed")
        parts = PurePosixPath(rel).parts
        if ".." in parts:
            raise UnsafePathError(f"{rel!r}: '..' is not allowed in a trace path")
        if not rel.endswith(SUFFIX):
            raise UnsafePathError(f"{rel!r}: only {SUFFIX} trace files can be opened")
        real = (self.root / rel).resolve()
        if not real.is_relative_to(self.root):
            raise UnsafePathError(f"{rel!r}: it links outside the served directory")
        if not real.is_file():
            raise UnsafePathError(f"{rel!r}: no such trace file in the served directory")
        return real
