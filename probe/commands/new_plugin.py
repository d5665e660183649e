"""``probe new-plugin NAME``: write a starter package for an analysis plugin."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("new-plugin", help="write a starter package for an analysis plugin",
                       description="Write probe-NAME/: pyproject.toml with the entry point, "
                                   "a working analysis, and a test that runs the "
                                   "conformance kit (probe.testing.check_analysis).")
    p.add_argument("name", help="analysis name, lower case with dashes (e.g. unit-peaks)")
    p.add_argument("--dir", type=Path, default=Path("."), help="where to write it")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``probe new-plugin``."""
    from probe.scaffold import scaffold

    root = scaffold(args.name, args.dir)
    print(f"wrote {root}: pip install -e {root} && python -m pytest {root / 'tests'}")
    return 0
