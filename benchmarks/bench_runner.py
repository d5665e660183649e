"""Cost of an analysis pass relative to the bare forward pass, measured side by side.

    python benchmarks/bench_runner.py [--arch lenet5] [--dataset digits] [--device cpu]

Prints images/s of (a) the model's forward pass alone over the data set, (b) the
same loop with capture hooks on every layer, and (c) a full ``probe.analyze``
run of ``unit-stats`` (data loading, capture, accumulators, tables on disk), each
the best of ``--repeat`` runs, and the ratios (b)/(a) and (c)/(a).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable

import torch
from torch.utils.data import DataLoader

import probe
from probe.capture import Capture
from probe.device import resolve_device


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    """Smallest wall time of ``repeat`` calls (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    """Run the benchmark and print a table of images/s and ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="lenet5")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--size", type=int, default=0, help="images (0 = whole split)")
    parser.add_argument("--split", default="all")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = probe.load_dataset(args.dataset, size=args.size, split=args.split)
    model = probe.load_model(args.arch, dataset=data).to(device).eval()
    layers = probe.layer_map(model)
    normalize = model.probe_preprocessing.normalize  # what a run applies, whatever the data
    loader = DataLoader(data, batch_size=args.batch_size)

    def forward(capture: bool) -> None:
        with torch.no_grad():
            if capture:
                with Capture(model, layers) as cap:
                    for sample in loader:
                        model(normalize(sample["image"].to(device)))
                        cap.take()
            else:
                for sample in loader:
                    model(normalize(sample["image"].to(device)))

    def full_run() -> None:
        with tempfile.TemporaryDirectory() as out:
            probe.analyze(model, data, ["unit-stats"], out=out + "/run",
                          layers=list(layers), batch_size=args.batch_size,
                          device=str(device))

    bare = best_of(args.repeat, lambda: forward(False))
    hooked = best_of(args.repeat, lambda: forward(True))
    analysed = best_of(args.repeat, full_run)
    n = len(data)
    print(f"{args.arch} on {args.dataset}: {n} images, batch {args.batch_size}, device {device}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'pass':<28}{'images/s':>12}{'x forward':>12}")
    for label, seconds in (("bare forward", bare), ("forward + capture hooks", hooked),
                           ("probe.analyze(unit-stats)", analysed)):
        print(f"{label:<28}{n / seconds:>12.0f}{seconds / bare:>12.2f}")


if __name__ == "__main__":
    main()
