"""``probe dash``: serve the dashboard for a folder of runs (localhost by default)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from probe.errors import ProbeError


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("dash", help="explore runs in a web dashboard",
                       description="Serve the Dash dashboard for the runs under RUNS_DIR.")
    p.add_argument("runs_dir", nargs="?", type=Path, default=Path("runs"), metavar="RUNS_DIR",
                   help="folder of run directories, or one run (default: ./runs)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default 127.0.0.1; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``probe dash``."""
    if not 0 < args.port < 65536:
        raise ProbeError(f"port must be between 1 and 65535, got {args.port}")
    from probe.dashboards import create_app

    app = create_app(args.runs_dir)
    print(f"probe dash: serving {Path(args.runs_dir).resolve()} at "
          f"http://{args.host}:{args.port}/ (Ctrl-C to stop)")
    app.run(host=args.host, port=args.port, debug=False)
    return 0
