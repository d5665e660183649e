"""``probe train NAME --dataset NAME --out FILE``: train and write safetensors + JSON sidecar."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from probe.errors import ProbeError
from probe.options import parse_assignments


def add_parser(sub: Any) -> None:
    """Register the subcommand."""
    p = sub.add_parser("train", help="train an architecture on a data set",
                       description="Train with the architecture's recipe; writes a safetensors "
                       "checkpoint and a JSON sidecar with the metrics.")
    p.add_argument("arch", help="architecture name")
    p.add_argument("--dataset", help="data set (default: the architecture's recipe)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint file (.safetensors)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--device")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init", type=Path, metavar="CHECKPOINT",
                   help="start from these weights (fine-tuning; a VGG checkpoint also "
                        "initialises the deformable VGG of its configuration)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="arch.OPTION, dataset.OPTION or train.OPTION (lr, batch_size, ...)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handle ``probe train``."""
    from probe.training import check_destination, sidecar_path, train

    settings = parse_assignments(args.set)
    stray = sorted(set(settings) - {"arch", "dataset", "train"})
    if stray:
        raise ProbeError(f"--set {stray[0]}.…: use arch., dataset. or train. options")
    check_destination(args.out)  # before any training: a result is never lost to a bad --out
    record = train(args.arch, args.out, dataset=args.dataset,
                   dataset_options=settings.get("dataset"), arch_options=settings.get("arch"),
                   train_options=settings.get("train"), epochs=args.epochs, device=args.device,
                   seed=args.seed, progress=not args.quiet, init=args.init)
    print(json.dumps({"checkpoint": str(args.out), "sidecar": str(sidecar_path(args.out)),
                      "metrics": record["metrics"], "train_seconds": record["train_seconds"]}))
    return 0
