"""``probe run``: one run from flags, or every run of a TOML file.

Standard output keeps its machine-readable lines (``RUN: complete``; for a run
file one line per run and the sweep's count line), or with ``--json`` one JSON
document; the human summary (each analysis's status, seconds and tables, the
total time, and the commands to type next) goes to standard error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from probe.errors import ProbeError
from probe.options import parse_assignments
from probe.runfile import RunRequest, load_runfile


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("run", help="run analyses on a model and a data set",
                       description="Run analyses; writes RUN/manifest.json and parquet tables.")
    p.add_argument("file", nargs="?", type=Path, help="TOML file describing one or many runs")
    p.add_argument("--arch", help="architecture name (see `probe architectures`)")
    p.add_argument("--dataset", help="data set name (see `probe datasets`)")
    p.add_argument("--analysis", action="append", default=[], metavar="NAME",
                   help="analysis to run (repeatable; see `probe analyses`)")
    p.add_argument("--out", type=Path, help="run directory to write")
    p.add_argument("--checkpoint", type=Path, help="weights (safetensors or state_dict)")
    p.add_argument("--layers", help="comma-separated layer names (default: all)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0,
                   help="data-loader worker processes (0: a thread of this process reads "
                        "one batch ahead)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="option: arch.OPTION, dataset.OPTION or ANALYSIS.OPTION")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run directory")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true",
                   help="print the summary as JSON on standard output (instead of the "
                        "RUN: STATUS lines)")
    p.set_defaults(handler=run)


def _request_from_flags(args: argparse.Namespace) -> RunRequest:
    missing = [flag for flag, value in (("--arch", args.arch), ("--out", args.out))
               if not value]
    if missing:
        raise ProbeError(f"probe run needs {' and '.join(missing)} (or a run FILE.toml)")
    if not args.analysis:
        raise ProbeError("probe run needs at least one --analysis NAME (see `probe analyses`)")
    return RunRequest(
        arch=args.arch, analyses=list(args.analysis), out=args.out, dataset=args.dataset,
        checkpoint=args.checkpoint,
        layers=[x.strip() for x in (args.layers or "").split(",") if x.strip()],
        device=args.device, batch_size=args.batch_size, workers=args.workers, seed=args.seed,
        settings=parse_assignments(args.set), overwrite=args.overwrite,
    )


def execute_request(request: RunRequest, progress: bool) -> str:
    """Run one request; return its status (``complete``, ``partial`` or ``skipped``)."""
    from probe.sweep import run_one

    outcome = run_one(request, progress)
    if outcome.status == "partial":
        for line in outcome.detail.split("; "):
            print(f"probe: analysis {line}", file=sys.stderr)
    return outcome.status


def _is_main_process() -> bool:
    """Whether this process prints the summary (rank 0 under ``torchrun``)."""
    return os.environ.get("RANK", "0") == "0"


def run(args: argparse.Namespace) -> int:
    """Handle ``probe run``: one run, or every run and sweep grid of a TOML file."""
    started = time.perf_counter()
    if args.file is not None:
        if args.arch or args.analysis or args.out:
            raise ProbeError("give either a run FILE.toml or --arch/--analysis/--out, not both")
        requests = load_runfile(args.file)
    else:
        requests = [_request_from_flags(args)]
    # only now the libraries a run needs: a mistake in the flags is answered without them
    from probe.commands._run_summary import (
        format_summary,
        format_sweep_summary,
        summary_record,
    )
    from probe.sweep import run_sweep

    main = _is_main_process()
    if len(requests) == 1:
        status = execute_request(requests[0], progress=not args.quiet)
        record = summary_record(requests[0].out, status, time.perf_counter() - started)
        if main and args.json:
            print(json.dumps(record, indent=2, default=str))
        elif main:
            print(format_summary(record), file=sys.stderr, flush=True)
        if not args.json:
            print(f"{requests[0].out}: "
                  f"{'skipped (complete)' if status == 'skipped' else status}", flush=True)
        return 0 if status in ("complete", "skipped") else 1
    say = (lambda line: print(line, file=sys.stderr)) if args.json else None
    result = run_sweep(requests, progress=not args.quiet, echo=say)
    records = [summary_record(o.request.out, o.status, o.seconds) for o in result.outcomes
               if o.status != "failed"]
    if main and args.json:
        print(json.dumps({"summary": result.summary(), "runs": records,
                          "failed": [{"run": str(o.request.out), "label": o.request.label,
                                      "error": o.detail} for o in result.failed]},
                         indent=2, default=str))
    elif main:
        print(format_sweep_summary(records, time.perf_counter() - started), file=sys.stderr,
              flush=True)
    if not args.json:
        print(result.summary())
    for outcome in result.failed:
        print(f"probe: failed: {outcome.request.out} ({outcome.request.label}): "
              f"{outcome.detail}", file=sys.stderr)
    return 1 if result.failed else 0
