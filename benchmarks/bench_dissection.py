"""Benchmark of ``dissection``: its passes vs the bare forward pass vs a reference-style loop.

All measured side by side in one run on the parts world (VGG11 by default,
untrained at a chosen width, or trained weights with ``--checkpoint``):

* bare forward pass with the same capture hooks (images/s);
* dissection pass 1 (forward + thresholds) and pass 2 (forward + IoU tallies), and
  the tally step alone (pass 2 minus its forward), images/s and ratios;
* the reference-style tally (``tests/dissection_reference.py``: numpy, a Python loop over
  images × units on the CPU, PIL bilinear resize, as the original tools do) on
  the first ``--reference-images`` images, and the agreement of its counts with
  the device tallies on the same images.

Batches are prepared on the device first, so data loading is not timed.

    python benchmarks/bench_dissection.py                 # CPU
    python benchmarks/bench_dissection.py --device cuda   # GPU, unchanged
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

import probe
from probe import Batch
from probe.capture import Capture
from probe.distributed import Shard
from probe.plan import plan_run
from probe.plugins.analyses.dissection import Dissection
from probe.plugins.analyses.dissection.labels import BatchLabels
from probe.plugins.analyses.dissection.tally import LayerTally
from probe.runner import build_context

# the numpy reference loop is a test helper (tests/dissection_reference.py), not plugin code
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from dissection_reference import ReferenceTally


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--arch", default="vgg11", help="architecture (vgg11, vgg11_bn, ...)")
    parser.add_argument("--width", type=float, default=0.25, help="width multiplier (untrained)")
    parser.add_argument("--checkpoint", default=None, help="trained weights (optional)")
    parser.add_argument("--reference-images", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats (best kept)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    data = probe.load_dataset("parts", size=args.images)
    options = {} if args.checkpoint else {"width": args.width}
    model = probe.load_model(args.arch, args.checkpoint, dataset=data, **options)
    analysis = Dissection(hierarchy=False)
    plan = plan_run(model, data, [analysis], batch_size=args.batch_size)
    context = build_context(plan, device, Shard(0, 1))  # the dry forward: layer shapes
    model, handle, layers = context.model, context.handle, context.layers
    chosen = analysis.select_layers(context)
    capture_map = {name: layers[name] for name in chosen}

    loader = torch.utils.data.DataLoader(data, batch_size=args.batch_size)
    samples = [{k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in s.items()}
               for s in loader]

    def forward_batches(pass_index: int):
        with torch.no_grad(), Capture(model, capture_map) as capture:
            for s in samples:
                images = s["image"].float()
                inputs = handle.normalize(images)
                outputs = model(inputs)
                yield Batch(images=images, inputs=inputs, indices=s["index"],
                            labels=s["label"], outputs=outputs, activations=capture.take(),
                            masks=s["masks"], image_concepts=s["scalars"],
                            pass_index=pass_index)

    cpu_seconds: list[float] = []  # process CPU time of each timed() call, in call order

    def timed(fn) -> float:
        """Best wall time of ``repeats`` runs (its process CPU time goes to ``cpu_seconds``)."""
        best, best_cpu = float("inf"), 0.0
        for _ in range(args.repeats):
            sync(device)
            start, cpu = time.perf_counter(), time.process_time()
            fn()
            sync(device)
            wall = time.perf_counter() - start
            if wall < best:
                best, best_cpu = wall, time.process_time() - cpu
        cpu_seconds.append(best_cpu)
        return best

    n = len(data)
    for _ in forward_batches(0):  # warm-up
        pass
    t_forward = timed(lambda: [None for _ in forward_batches(0)])

    acc = analysis.accumulator(context)

    def pass_one() -> None:
        nonlocal acc
        acc = analysis.accumulator(context)  # fresh state (allocation is part of the pass)
        for batch in forward_batches(0):
            acc.update(batch)
        acc.end_pass(0, context)

    t_pass1 = timed(pass_one)
    thresholded = acc  # pass 1 done: thresholds fixed, its buffers released

    def pass_two() -> None:
        nonlocal acc
        acc = copy.deepcopy(thresholded)  # empty tallies, the same thresholds
        for batch in forward_batches(1):
            acc.update(batch)

    t_pass2 = timed(pass_two)
    stored = list(forward_batches(1))

    def tally_only() -> None:
        nonlocal acc
        acc = copy.deepcopy(thresholded)
        for batch in stored:
            acc.update(batch)

    t_tally = timed(tally_only)
    tables = acc.finalize(context)

    # reference-style loop on the first images, and the same images on the device
    ref_n = min(args.reference_images, n)
    space = acc.space
    ref_batches, done = [], 0
    for batch in stored:
        take = min(len(batch.images), ref_n - done)
        if take <= 0:
            break
        ref_batches.append((
            {k: v[:take].cpu().numpy() for k, v in batch.activations.items() if k in chosen},
            batch.masks[:take].cpu().numpy(), batch.image_concepts[:take].cpu().numpy()))
        done += take
    thresholds = {k: v.cpu().numpy() for k, v in acc.thresholds.items()}
    reference = {k: ReferenceTally.zeros(len(thresholds[k]), space) for k in acc.quantiles}

    def reference_loop() -> None:
        for key in reference:
            reference[key] = ReferenceTally.zeros(len(thresholds[key]), space)
        for acts, masks, scalars in ref_batches:
            for layer in reference:
                reference[layer].add(acts[layer], thresholds[layer], masks, scalars, space)

    t_reference = timed(reference_loop)
    fast = {k: LayerTally(len(thresholds[k]), space, device) for k in acc.quantiles}
    for acts, masks, scalars in ref_batches:
        labels = BatchLabels.build(space, torch.from_numpy(masks).to(device),
                                   torch.from_numpy(scalars).to(device), masks.shape[-2:],
                                   len(masks), device)
        for layer, tally in fast.items():
            tally.update(torch.from_numpy(acts[layer]).to(device), acc.thresholds[layer],
                         labels)
    diff = total = 0
    for layer in fast:
        mine = fast[layer].intersection.cpu().numpy()
        theirs = reference[layer].intersection
        mine[:, 0] = theirs[:, 0] = 0
        diff += int(np.abs(mine - theirs).sum())
        total += int(theirs.sum())

    units = sum(acc.shapes[k][0] for k in acc.quantiles)
    upsampled = int(tables["layers"]["upsampled"].sum())
    maps = int(tables["layers"]["maps"].sum())
    rate = {name: n / t for name, t in (("forward", t_forward), ("pass1", t_pass1),
                                        ("pass2", t_pass2), ("tally", t_tally))}
    ref_rate = ref_n / t_reference
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    weights = args.checkpoint or f"untrained, width {args.width}"
    print(f"device {device} ({name}, {args.threads} threads), {args.arch} ({weights}), "
          f"parts {n} images {data.image_size}px, masks {data.mask_size}px, "
          f"batch {args.batch_size}")
    print(f"layers {len(acc.quantiles)}, units {units}, maps with raw max > T: "
          f"{upsampled}/{maps} ({upsampled / maps:.1%})")
    print(f"bare forward (with capture)     {rate['forward']:10.1f} img/s")
    print(f"dissection pass 1 (thresholds)  {rate['pass1']:10.1f} img/s  "
          f"= {t_pass1 / t_forward:.2f}x forward time")
    print(f"dissection pass 2 (IoU tallies) {rate['pass2']:10.1f} img/s  "
          f"= {t_pass2 / t_forward:.2f}x forward time")
    print(f"both passes                     {n / (t_pass1 + t_pass2):10.1f} img/s  "
          f"= {(t_pass1 + t_pass2) / t_forward:.2f}x forward time")
    print(f"tally step alone (device)       {rate['tally']:10.1f} img/s")
    print(f"reference-style numpy loop      {ref_rate:10.1f} img/s  (tally step, "
          f"{ref_n} images)")
    print(f"speed-up of the tally step vs reference loop: {rate['tally'] / ref_rate:8.1f}x")
    cpu = cpu_seconds  # forward, pass 1, pass 2, tally, reference
    print(f"process CPU time per image (robust to a shared machine; all threads summed): "
          f"forward {cpu[0] / n * 1e3:.2f} ms, pass 1 {cpu[1] / n * 1e3:.2f} ms, "
          f"pass 2 {cpu[2] / n * 1e3:.2f} ms, tally {cpu[3] / n * 1e3:.2f} ms, "
          f"reference {cpu[4] / ref_n * 1e3:.2f} ms -> tally speed-up "
          f"{(cpu[4] / ref_n) / (cpu[3] / n):.1f}x, pass 2 / forward {cpu[2] / cpu[0]:.2f}x")
    print(f"speed-up of pass 2 (forward incl.) vs reference tally alone: "
          f"{rate['pass2'] / ref_rate:8.1f}x")
    print(f"intersection counts: device vs reference (PIL) differ by {diff} of {total} "
          f"({diff / max(total, 1):.2e})")


if __name__ == "__main__":
    main()
