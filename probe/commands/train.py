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
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true",
                   help="print checkpoint, sidecar, metrics and seconds as JSON instead of "
                        "the summary line")
    p.set_defaults(handler=run)


def _duration(seconds: float) -> str:
    """``42 s`` or ``3 min 5 s``."""
    if seconds < 90:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def summary_line(record: dict[str, Any], out: Path, sidecar: Path) -> str:
    """The line ``probe train`` ends with, e.g. ``trained lenet5 on digits: 5 epochs,
    test accuracy 97.1 %, 42 s → ckpt.safetensors (+ ckpt.json sidecar)``.

    An architecture's own procedure comes first with its stages and time
    (``own procedure (s1, s2, s3) 9.4 s, 5 epochs, …``); the time at the end is the
    whole training.
    """
    metrics = record.get("metrics", {})
    results = []
    if "mean_iou" in metrics:
        results.append(f"test mean IoU {metrics['mean_iou']:.3f}")
    for key, name in (("accuracy", "test accuracy"), ("pixel_accuracy", "pixel accuracy")):
        if isinstance(metrics.get(key), (int, float)):
            results.append(f"{name} {100 * metrics[key]:.1f} %")
    epochs = record.get("recipe", {}).get("epochs")
    init = record.get("init") or {}
    prepared = record.get("prepare") or {}
    stages = ", ".join(prepared.get("stages") or {})
    own = (f"own procedure{f' ({stages})' if stages else ''} "
           f"{_duration(float(prepared.get('seconds', 0.0)))}" if prepared else None)
    backprop = f"{epochs} epoch{'s' if epochs != 1 else ''}" if epochs else None
    if own and not backprop:
        backprop = "no backprop"
    parts = [own, backprop,
             f"from {init['checkpoint']}" if init.get("checkpoint") else None, *results,
             _duration(float(record.get("train_seconds", 0.0))
                       + float(prepared.get("seconds", 0.0)))]
    dataset = (record.get("dataset") or {}).get("name")
    return (f"trained {record.get('arch')}{f' on {dataset}' if dataset else ''}: "
            f"{', '.join(p for p in parts if p)} → {out} (+ {sidecar.name} sidecar)")


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
    if args.json:
        print(json.dumps({"checkpoint": str(args.out), "sidecar": str(sidecar_path(args.out)),
                          "metrics": record["metrics"],
                          "train_seconds": record["train_seconds"]}))
    else:
        print(summary_line(record, args.out, sidecar_path(args.out)), flush=True)
    return 0
