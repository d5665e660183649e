"""Images per second of the classic models (HMAX, the Neocognitron, natural_v1, LeNet of
1989) beside LeNet-5: batched forward vs one image at a time, and the Neocognitron's
unsupervised learning, measured side by side in one run.

Every model runs as a torch module on ``--device``; nothing loops over positions or
prototypes in Python. The op count of one forward (``torch.profiler``, aten operators)
is printed for two prototype / plane counts to show it: it does not grow with them.

    python benchmarks/bench_classic.py [--device cpu|cuda] [--batch 64] [--threads 2]
        [--repeats 3] [--images 256]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

#: (label, architecture, options, input side, channels).
MODELS: tuple[tuple[str, str, dict, int, int], ...] = (
    ("hmax (recipe: 2 bands, 200 prototypes, 32 px)", "hmax",
     {"bands": 2, "patch_sizes": (4,), "prototypes": 200, "input_size": 32}, 32, 1),
    ("hmax (paper: 8 bands, 4×250 prototypes, 64 px)", "hmax", {}, 64, 1),
    ("neocognitron (16, 32, 32 planes, 32 px)", "neocognitron", {}, 32, 1),
    ("natural_v1 (64 ICA filters 12×12, 32 px)", "natural_v1", {}, 32, 1),
    ("lenet1989 (16 px)", "lenet1989", {}, 16, 1),
    ("lenet5 (32 px)", "lenet5", {}, 32, 1),
)


def best_of(repeats: int, work: Callable[[], None], sync: Callable[[], None]) -> float:
    """The fastest of ``repeats`` timed calls of ``work`` (seconds)."""
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        work()
        sync()
        times.append(time.perf_counter() - start)
    return min(times)


def aten_ops(model: torch.nn.Module, x: torch.Tensor) -> int:
    """How many aten operators (views aside) one forward of ``x`` runs."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        model(x)
    views = {"aten::as_strided", "aten::select", "aten::slice", "aten::view", "aten::expand",
             "aten::unsqueeze", "aten::squeeze", "aten::reshape", "aten::alias", "aten::t",
             "aten::transpose", "aten::permute", "aten::narrow"}
    return sum(e.count for e in prof.key_averages()
               if e.key.startswith("aten::") and e.key not in views)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--images", type=int, default=256, help="images per timed pass")
    parser.add_argument("--single", type=int, default=32,
                        help="images per timed pass one at a time")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import probe
    from probe.plugins.architectures.neocognitron import competitive_learning

    device = torch.device(args.device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    print(f"device {device}, {args.threads} threads, batch {args.batch}, best of "
          f"{args.repeats}")
    print(f"{'model':<50} {'batched img/s':>14} {'one at a time':>14} {'ratio':>7}")
    for label, arch, options, side, channels in MODELS:
        model = probe.load_model(arch, seed=0, **options).to(device).eval()
        gen = torch.Generator().manual_seed(0)
        images = torch.rand((args.images, channels, side, side), generator=gen).to(device)
        with torch.no_grad():
            model(images[:2])  # warm up

            def batched(m=model, x=images) -> None:
                for start in range(0, len(x), args.batch):
                    m(x[start:start + args.batch])

            def single(m=model, x=images[:args.single]) -> None:
                for k in range(len(x)):
                    m(x[k:k + 1])

            fast = args.images / best_of(args.repeats, batched, sync)
            slow = args.single / best_of(args.repeats, single, sync)
        print(f"{label:<50} {fast:>14.1f} {slow:>14.1f} {fast / slow:>6.1f}×")

    # the Neocognitron's learning: 3 stages over the same images, chunks of 8
    model = probe.load_model("neocognitron", seed=0).to(device)
    data = torch.rand((400, 1, 32, 32), generator=torch.Generator().manual_seed(1))
    batches = [data[k:k + 64].to(device) for k in range(0, 400, 64)]

    def learn() -> None:
        for _ in competitive_learning(model, iter(batches), torch.Generator()):
            pass

    seconds = best_of(1, learn, sync)
    print(f"{'neocognitron learning (400 images × 3 stages)':<50} "
          f"{400 * 3 / seconds:>14.1f} image-stages/s ({seconds:.2f} s)")

    print("\naten operators in one forward (1 image): they do not grow with the count")
    for arch, key, counts, fixed in (("hmax", "prototypes", (20, 200),
                                      {"bands": 2, "patch_sizes": (4,), "input_size": 32}),
                                     ("neocognitron", "planes", ((4, 4, 4), (32, 64, 64)), {})):
        ops = []
        for value in counts:
            model = probe.load_model(arch, seed=0, **{**fixed, key: value}).eval()
            ops.append(aten_ops(model, torch.rand(1, 1, fixed.get("input_size", 32),
                                                  fixed.get("input_size", 32))))
        print(f"  {arch} {key} {counts[0]} → {counts[1]}: {ops[0]} → {ops[1]} ops")


if __name__ == "__main__":
    main()
