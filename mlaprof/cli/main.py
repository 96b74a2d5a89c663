"""The ``mlaprof`` command: one module per sub-command (``cmd_<name>.py``), each with ``register`` and ``run``.

Errors a user can cause (``mlaprof.errors.UserError``) print one line and exit 2, and so does a file-system
error on a named path (an ``--out`` in a folder that cannot be written, say); nothing else is caught.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from mlaprof.errors import UserError

# name -> module under mlaprof.cli; imported lazily so `mlaprof info` never pays for torch or dash
COMMANDS = {
    "schedule": "cmd_schedule",
    "simulate": "cmd_simulate",
    "run": "cmd_run",
    "info": "cmd_info",
    "calibrate": "cmd_calibrate",
    "diff": "cmd_diff",
    "export": "cmd_export",
    "dash": "cmd_dash",
    "bench": "cmd_bench",
}


def _load(name: str):
    return importlib.import_module(f"mlaprof.cli.{COMMANDS[name]}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlaprof",
        description="Schedule, run, trace and visualise an MLA-decode megakernel.",
        epilog="Run `mlaprof COMMAND --help` for a command's options and an example.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        if only is not None and name != only:
            sub.add_parser(name, help=f"see `mlaprof {name} --help`", add_help=False)
            continue
        try:
            module = _load(name)
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith("mlaprof.cli.cmd_"):
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv and argv[0] in COMMANDS else None
    parser = build_parser(only=command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(_load(args.command).run(args) or 0)
    except UserError as e:
        print(f"mlaprof {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader went away (`mlaprof info F | head`): stop quietly, as Unix tools do on SIGPIPE; pointing
        # stdout at /dev/null keeps Python's exit-time flush from printing a second error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as e:
        if e.filename is None:
            raise
        print(f"mlaprof {args.command}: error: cannot use {e.filename}: {e.strerror or e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
