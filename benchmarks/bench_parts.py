"""Generation speed and cache size of the ``parts`` data set.

Run: ``python benchmarks/bench_parts.py [--images 2048] [--threads 2]``

Prints, side by side in one run: images/s of generation at 32, 64 and 128 px
(full annotations: image, 5 mask layers, scene, target), at 64 px with
half-resolution masks, the cache file size per 1,000 images, and the speed of
loading the cache against regenerating (ratio). Each timing is the best of
``--repeat`` runs. Next to the wall-clock rate it prints images per CPU-second
(summed over threads), which stays meaningful on a machine shared with other
jobs: on an idle machine the wall rate lies between it and ``threads`` × it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch


def _best(fn, repeat: int) -> tuple[float, float]:
    """Best wall-clock seconds and best CPU seconds (all threads) of ``repeat`` runs."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from probe.plugins.datasets import parts

    n = args.images
    print(f"parts generation, {n} images, {args.threads} thread(s), best of {args.repeat}")
    parts.generate(256, 64, 64, 0, "train", 3, 2)  # warm-up
    for size, mask in ((32, 32), (64, 64), (64, 32), (128, 128)):
        wall, cpu = _best(lambda s=size, m=mask: parts.generate(n, s, m, 0, "train", 3, 2),
                          args.repeat)
        print(f"  image {size:>3} px, masks {mask:>3} px: {n / wall:8.0f} images/s wall, "
              f"{n / cpu:8.0f} images per CPU-second")

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PROBE_CACHE_DIR"] = tmp
        options = {"split": "train", "image_size": 64, "size": n, "seed": 0}
        parts.PartsDataset(**options, cache=True)  # writes the cache
        files = list(Path(tmp).rglob("*.pt"))
        size_bytes = sum(f.stat().st_size for f in files)
        load = _best(lambda: parts.PartsDataset(**options, cache=True), args.repeat)[0]
        regen = _best(lambda: parts.PartsDataset(**options, cache=False), args.repeat)[0]
    print(f"cache at 64 px: {size_bytes / 2**20:.1f} MiB for {n} images = "
          f"{size_bytes / n * 1000 / 2**20:.1f} MiB per 1,000 images ({len(files)} file)")
    print(f"load from cache {n / load:8.0f} images/s vs regenerate {n / regen:8.0f} images/s: "
          f"cache is {regen / load:.1f}x faster")


if __name__ == "__main__":
    main()
