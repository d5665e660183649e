"""The ``probe`` command line (contract: other tools call it exactly so).

Each subcommand lives in ``probe/commands/<name>.py`` with ``add_parser`` and
``run``. A user mistake prints ``probe: error: <one line>`` and exits 2; an
analysis that failed inside a run exits 1; ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence

from probe.errors import ProbeError

#: Subcommand modules, in help order.
COMMANDS = ("plugins", "architectures", "datasets", "analyses", "train", "run", "report",
            "dash", "demo", "new_plugin")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available subcommand."""
    parser = argparse.ArgumentParser(prog="probe", description="Look inside convolutional "
                                     "networks: architectures, data sets and analyses as plugins.")
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
    args = parser.parse_args(args_list)
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


if __name__ == "__main__":
    sys.exit(main())
