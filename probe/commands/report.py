"""``probe report RUN [RUN ...] -o report.html [--pdf]``: a self-contained HTML (and PDF) report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("report", help="write an HTML (and PDF) report of runs",
                       description="One self-contained HTML file (plotly.js and images "
                       "embedded, no external URL) with a section per analysis; with several "
                       "runs, a comparison section. --pdf prints it with headless Chromium.")
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN",
                   help="run directories (or folders of run directories)")
    p.add_argument("-o", "--out", type=Path, default=Path("report.html"),
                   help="HTML file to write (default: report.html)")
    p.add_argument("--pdf", action="store_true",
                   help="also print the report to PDF beside the HTML (needs Chromium)")
    p.add_argument("--title", help="report title")
    p.set_defaults(handler=run)


def expand_runs(paths: list[Path]) -> list[Path]:
    """Run directories from the arguments: a folder of runs stands for every run in it."""
    from probe.errors import ProbeError
    from probe.store import MANIFEST, list_runs

    out: list[Path] = []
    for path in paths:
        if (path / MANIFEST).is_file():
            out.append(path)
            continue
        found = list_runs(path) if path.is_dir() else []
        if not found:
            raise ProbeError(f"{path} is not a probe run directory and holds none (no "
                             f"{MANIFEST})")
        out.extend(r.path for r in found)
    return out


def run(args: argparse.Namespace) -> int:
    """Handle ``probe report``."""
    from probe.checkpoint import check_writable
    from probe.errors import ProbeError
    from probe.report import build_report, print_pdf

    check_writable(args.out, "report", ProbeError)  # before reading any run
    if args.pdf:
        check_writable(args.out.with_suffix(".pdf"), "PDF report", ProbeError)
    html = build_report(expand_runs(args.runs), args.out, title=args.title)
    print(f"report: {html}")
    if args.pdf:
        pdf = print_pdf(html, html.with_suffix(".pdf"))
        print(f"pdf: {pdf}")
    sys.stdout.flush()
    return 0
