"""``probe demo [--out DIR]``: train, analyse and report the embedded models end to end."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("demo", help="the whole job end to end on the embedded data",
                       description="Train (or reuse cached checkpoints of) LeNet-5, the "
                       "Neocognitron, HMAX, an ICA first layer and LeNet of 1989 on digits "
                       "and a small VGG, its deformable variant and a DeconvNet on the parts "
                       "world, cheapest first; analyse each model with every built-in "
                       "analysis that applies as soon as it is trained and rewrite the HTML "
                       "report, so the first run can be explored while the next model "
                       "trains; at the end print the report to PDF and say how to open the "
                       "dashboard. Each step prints how far the demo is and about how long "
                       "it has left.")
    p.add_argument("--out", type=Path, default=Path("probe-demo"),
                   help="demo folder (default: ./probe-demo)")
    p.add_argument("--cache", type=Path,
                   help="checkpoint cache folder (default: OUT/checkpoints)")
    p.add_argument("--quick", action="store_true",
                   help="tiny training and runs: a first look in about a minute")
    p.add_argument("--no-pdf", action="store_true", help="do not print the report to PDF")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``probe demo``."""
    from probe.demo import print_summary, run_demo

    result = run_demo(args.out, cache=args.cache, fast=args.quick, pdf=not args.no_pdf,
                      device=args.device, progress=not args.quiet)
    print_summary(result)
    return 1 if result.failed else 0
