"""``probe dash``: serve the dashboard for a folder of runs (localhost by default).

The app is served by waitress, a production WSGI server with a pool of worker
threads (not Flask's development server), so concurrent clients are answered
side by side and a slow page does not hold up the others.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from probe.errors import ProbeError

#: Worker threads of the WSGI server unless ``--threads`` says otherwise.
DEFAULT_THREADS = 8


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("dash", help="explore runs in a web dashboard",
                       description="Serve the Dash dashboard for the runs under RUNS_DIR.")
    p.add_argument("runs_dir", nargs="?", type=Path, default=Path("runs"), metavar="RUNS_DIR",
                   help="folder of run directories, or one run (default: ./runs)")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind (default 127.0.0.1; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8050, help="port (default 8050)")
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                   help=f"worker threads of the server (default {DEFAULT_THREADS})")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``probe dash``."""
    if not 0 < args.port < 65536:
        raise ProbeError(f"port must be between 1 and 65535, got {args.port}")
    if not 1 <= args.threads <= 256:
        raise ProbeError(f"threads must be between 1 and 256, got {args.threads}")
    from probe.dashboards import create_app

    app = create_app(args.runs_dir)
    print(f"probe dash: serving {Path(args.runs_dir).resolve()} at "
          f"http://{args.host}:{args.port}/ with {args.threads} threads (Ctrl-C to stop)",
          flush=True)
    serve(app.server, host=args.host, port=args.port, threads=args.threads)
    return 0


def serve(wsgi_app: Any, *, host: str, port: int, threads: int) -> None:
    """Serve ``wsgi_app`` with waitress until interrupted."""
    import waitress

    try:
        waitress.serve(wsgi_app, host=host, port=port, threads=threads, ident="probe dash")
    except KeyboardInterrupt:
        print("probe dash: stopped", flush=True)
    except OSError as exc:  # the port is taken, the host is not an address of this machine
        raise ProbeError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
