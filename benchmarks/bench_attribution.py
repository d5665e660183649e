"""Attribution images per second: exemplars of many units per Captum call vs one unit per call.

Both compute the same attributions (the neuron selector picks each sample's own unit
and peak cell): ``batched`` sends ``--batch`` exemplars (of many units) per call, as the
``attribution`` analysis does; ``per-unit`` sends one unit's ``--top-k`` exemplars per
call (a Captum neuron index per call, the usual way). Prints images per second per
method (best of ``--repeats``, the two ways interleaved) and the ratio, measured side
by side in one run, and the largest difference.

    python benchmarks/bench_attribution.py [--arch vgg11_bn] [--units 32] [--top-k 4]
        [--batch 64] [--steps 16] [--device cpu|cuda] [--threads 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vgg11_bn")
    parser.add_argument("--layer", default="conv3_1")
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--methods", default="deconvnet,guided-backprop,integrated-gradients")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="best of N, interleaved")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import probe
    from probe.plugins.analyses.attribution.methods import UnitSelector, attribute

    device = torch.device(args.device)
    model = probe.load_model(args.arch, seed=0, width=args.width, input_size=args.size,
                             fc_width=64).to(device).eval()
    layers = probe.layer_map(model)
    module = dict(model.named_modules())[layers[args.layer]]
    gen = torch.Generator().manual_seed(0)
    n = args.units * args.top_k
    inputs = torch.rand((n, 3, args.size, args.size), generator=gen).to(device)
    baseline = torch.zeros_like(inputs[:1])
    handle = probe.ModelHandle(model, layers, probe.Preprocessing())
    with torch.no_grad():
        _, act = handle.capture(inputs[:1], [args.layer])
    h, w = act[args.layer].shape[-2:]
    units = torch.arange(args.units).repeat_interleave(args.top_k)
    rows = torch.randint(0, h, (n,), generator=gen)
    cols = torch.randint(0, w, (n,), generator=gen)

    def run(chunk: int, method: str) -> tuple[float, torch.Tensor]:
        out = []
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for first in range(0, n, chunk):
            part = slice(first, first + chunk)
            selector = UnitSelector(units[part], rows[part], cols[part])
            out.append(attribute(model, module, inputs[part], selector, method, baseline,
                                 args.steps).detach())
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start, torch.cat(out)

    print(f"{args.arch} width {args.width} at {args.size} px, layer {args.layer}, "
          f"{args.units} units × {args.top_k} exemplars = {n} images, {args.device}, "
          f"{args.threads} threads, IG steps {args.steps}")
    for method in args.methods.split(","):
        run(args.top_k, method)  # warm-up
        batched_s = single_s = float("inf")
        for _ in range(args.repeats):  # interleaved, best of N: a shared machine is noisy
            seconds, batched = run(args.batch, method)
            batched_s = min(batched_s, seconds)
            seconds, single = run(args.top_k, method)
            single_s = min(single_s, seconds)
        diff = float((batched - single).abs().max() / single.abs().max().clamp(min=1e-30))
        print(f"{method:22s} batched {n / batched_s:8.1f} img/s   one unit per call "
              f"{n / single_s:8.1f} img/s   ratio {single_s / batched_s:5.2f}×   "
              f"max rel. diff {diff:.1e}")


if __name__ == "__main__":
    main()
