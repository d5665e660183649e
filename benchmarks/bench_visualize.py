"""Feature visualisation: units per second, a layer's units in one batch vs one unit at a time.

Both call the ``visualize`` analysis's own ``optimise`` (Fourier image, colour
decorrelation, jitter/scale/rotation, Adam, redirected ReLU, forward stopped at the
layer) with the same settings: ``batched`` optimises K images for K units in one
batch (what the analysis does), ``one at a time`` calls it K times with one unit
each — the same code with K = 1, nothing added. The two are interleaved and the best
of ``--repeats`` kept (a shared machine is noisy). Prints units per second and the
ratio per layer, and the step time split into the parts that scale with the batch.
With ``--memory`` it also prints, per layer, the peak memory one batched call holds
allocated beyond what was live before it (CUDA: ``max_memory_allocated``; CPU: the
running total PyTorch's allocator reports in the profiler's allocation events), for
all K units and for one: the bound is one layer's batch, growing linearly with K.

    python benchmarks/bench_visualize.py [--arch vgg11_bn] [--layers conv2_1,conv3_1]
        [--units 32] [--steps 16] [--size 64] [--device cpu|cuda] [--threads 2] [--memory]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch


def peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes ``fn()`` holds allocated at once beyond what was live before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch._C._profiler import _EventType  # benchmarks only: the allocator's totals
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.tag == _EventType.Allocation:
            extra = node.extra_fields
            events.append((node.start_time_ns, extra.total_allocated, extra.alloc_size))
    if not events:
        return 0
    events.sort()
    before = events[0][1] - events[0][2]
    return max(total for _, total, _ in events) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="vgg11_bn")
    parser.add_argument("--layers", default="conv1_1,conv2_1,conv3_1,conv4_1")
    parser.add_argument("--width", type=float, default=0.125)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--units", type=int, default=32, help="at most the layer's width")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="best of N, interleaved")
    parser.add_argument("--redirect-relu", type=int, default=1)
    parser.add_argument("--memory", action="store_true", help="also peak memory per call")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import probe
    from probe.plugins.analyses.visualize import Visualize
    from probe.plugins.analyses.visualize.analysis import optimise

    device = torch.device(args.device)
    model = probe.load_model(args.arch, seed=0, width=args.width, input_size=args.size,
                             fc_width=64).to(device).eval()
    handle = probe.ModelHandle(model, probe.layer_map(model), model.probe_preprocessing)
    settings = dict(Visualize(steps=args.steps, size=args.size,
                              redirect_relu=bool(args.redirect_relu)).settings)
    shape = (3, args.size, args.size)

    def timed(fn: Callable[[], object]) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    load = os.getloadavg()[0]
    print(f"{args.arch} width {args.width} at {args.size} px, {args.steps} steps, "
          f"{args.device}, {args.threads} threads, redirect_relu {bool(args.redirect_relu)}, "
          f"load {load:.2f} at start")
    for layer in args.layers.split(","):
        with torch.no_grad():
            width = handle.capture(torch.zeros((1, *shape), device=device), [layer])[1][
                layer].shape[1]
        units = torch.arange(min(args.units, width))
        optimise(handle, layer, shape, units[:2], settings)  # warm-up
        def together(layer: str = layer, units: torch.Tensor = units) -> None:
            optimise(handle, layer, shape, units, settings)

        def apart(layer: str = layer, units: torch.Tensor = units) -> None:
            for u in range(len(units)):
                optimise(handle, layer, shape, units[u:u + 1], settings)

        batched = single = float("inf")
        for _ in range(args.repeats):
            batched = min(batched, timed(together))
            single = min(single, timed(apart))
        k = len(units)
        print(f"{layer:8s} {k:3d} units   batched {k / batched:8.2f} units/s   one at a time "
              f"{k / single:7.2f} units/s   ratio {single / batched:5.2f}×   "
              f"(step: K={k} {1000 * batched / args.steps:6.1f} ms, K=1 "
              f"{1000 * single / k / args.steps:5.2f} ms)")
        if args.memory:
            many = peak_bytes(together, device)
            one = peak_bytes(lambda layer=layer, units=units: optimise(
                handle, layer, shape, units[:1], settings), device)
            print(f"{'':8s} peak memory: K={k} {many / 2 ** 20:7.1f} MiB, K=1 "
                  f"{one / 2 ** 20:6.2f} MiB, per unit {many / k / 2 ** 20:6.2f} MiB")
    print(f"load {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
