"""The ``probe`` command line (contract: other tools call it exactly so).

Each subcommand lives in ``probe/commands/<name>.py`` with ``add_parser`` and
``run``. A user mistake (a bad argument too) prints ``probe: error: <one line>``
and exits 2; an analysis that failed inside a run exits 1; an unexpected error
is one line too and exits 1; ``--debug`` shows tracebacks.

Start-up is kept light: this module and the command modules import only the
standard library and :mod:`probe.errors` at the top; each command imports torch,
pandas or the dashboard when it runs (``probe --help`` and argument errors load
none of them; ``tests/test_cli.py`` checks it).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

from probe.errors import ProbeError, first_line

#: Subcommand modules, in help order.
COMMANDS = ("plugins", "architectures", "datasets", "analyses", "train", "run", "report",
            "dash", "demo", "new_plugin")


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line naming the help to read."""

    def error(self, message: str) -> NoReturn:
        """Print ``probe: error: MESSAGE (see `PROG --help`)`` and exit 2."""
        self.exit(2, f"probe: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available subcommand."""
    parser = Parser(prog="probe", description="Look inside convolutional networks: "
                    "architectures, data sets and analyses as plugins.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"probe.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"probe.commands.{name}":
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``probe`` script; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args_list
    parser = build_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help (0) or a bad argument (2, one line already printed)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        with warnings.catch_warnings():
            if not debug:
                warnings.filterwarnings("default")
            return int(args.handler(args) or 0)
    except ProbeError as exc:
        if debug:
            raise
        print(f"probe: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("probe: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # ``probe analyses | head``: the reader has gone, so be quiet
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # as Python's docs say
        return 0
    except Exception as exc:
        if debug:
            raise
        print(f"probe: error: unexpected {first_line(exc)} "
              "(run again with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
