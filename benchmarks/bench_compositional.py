"""Beam search of ``compositional``: batched scoring vs a per-formula loop, and memory.

Run: ``python benchmarks/bench_compositional.py [--images 64] [--units 64] [--threads 2]``

On the parts world (``--images`` images at 32 px with 32 px masks; 52 concepts)
the concept masks are packed exactly as the analysis packs them; the unit masks
are planted formulas of those concepts (``(a OR b) AND NOT c``, 5 % of pixels
flipped) so the search has something to find. Prints, side by side in one run:

* formulas per second (best of 3 runs) of the batched search (:func:`search.beam_search`: every
  candidate of a beam step, for every unit, in one pass of ANDs and popcounts)
  and of a straightforward loop that builds and scores each candidate formula
  on the same packed masks (the same beam search, one formula at a time, on
  ``--loop-units`` units), and their ratio; the two must find the same IoUs;
  formulas per CPU-second (all threads) stay comparable on a shared machine;
* peak memory growth (resident set, Linux) of the search and the packed masks'
  size at 1× and 10× the images, next to what one ``bool`` per pixel would take.
"""

from __future__ import annotations

import argparse
import ctypes
import time
from pathlib import Path

import torch


def _rss(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def peak_growth(fn):
    """Resident-set growth at the peak of ``fn`` (run once before; mmap threshold fixed)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD: big tensors from mmap, freed at once
    fn()
    libc.malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    base = _rss("VmRSS")
    out = fn()
    return _rss("VmHWM") - base, out


def _timed(fn, repeat: int = 3):
    """``((best wall seconds, best CPU seconds of all threads), result)`` of ``repeat`` calls."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn()
        wall = min(wall, time.perf_counter() - start)
        cpu = min(cpu, time.process_time() - start_cpu)
    return (wall, cpu), out


def packed_masks(images: int, units: int, seed: int = 0):
    """``(units [K, N], concepts [C, N], allowed [C], planted)`` packed, from the parts world."""
    import probe
    from probe.plugins.analyses.compositional.bits import pack_bits, unpack_bits
    from probe.plugins.analyses.compositional.masks import concept_bits
    from probe.plugins.analyses.dissection.labels import LabelSpace

    data = probe.load_dataset("parts", split="val", size=images, image_size=32, mask_size=32,
                              seed=seed)
    space = LabelSpace.from_concepts(data.concepts, data.mask_categories,
                                     data.scalar_categories)
    masks = torch.stack([data[i]["masks"] for i in range(images)])
    scalars = torch.stack([data[i]["scalars"] for i in range(images)])
    concepts = concept_bits(masks, scalars, space.num_labels, (32, 32), images)
    concepts = concepts.reshape(space.num_labels, -1)
    allowed = concepts.ne(0).any(1)
    allowed[0] = False
    present = allowed.nonzero().flatten()
    gen = torch.Generator().manual_seed(seed)
    dense = unpack_bits(concepts.view(space.num_labels, images, -1), 1024)  # [C, S, P]
    picks = present[torch.randint(0, len(present), (units, 3), generator=gen)]
    unit = (dense[picks[:, 0]] | dense[picks[:, 1]]) & ~dense[picks[:, 2]]
    unit ^= torch.rand(unit.shape, generator=gen) < 0.05
    return pack_bits(unit).reshape(units, -1), concepts, allowed, picks


def loop_search(units, concepts, allowed, beam: int, length: int):
    """The same beam search, each candidate formula built and scored on its own."""
    from probe.plugins.analyses.compositional.bits import count

    ops = (lambda a, b: a | b, lambda a, b: a & b, lambda a, b: a & ~b)
    ids = allowed.nonzero().flatten().tolist()
    best, scored = [], 0
    for u in units:
        u_count = int(count(u))

        def iou(mask, u=u, u_count=u_count):
            inter = int(count(mask & u))
            union = int(count(mask)) + u_count - inter
            return inter / union if union else 0.0
        singles = [(iou(concepts[c]), (c,), concepts[c]) for c in ids]
        scored += len(singles)
        pool = sorted([s for s in singles if s[0] > 0], key=lambda s: -s[0])[:beam]
        fresh = pool
        per_length = [pool[0][0] if pool else float("nan")]
        for _ in range(1, length):
            cands = []
            for _score, terms, mask in fresh:
                for c in ids:
                    if c in terms:
                        continue
                    for op in ops:
                        m = op(mask, concepts[c])
                        cands.append((iou(m), (*terms, c), m))
                        scored += 1
            good = [x for x in cands if x[0] > 0]
            per_length.append(max((x[0] for x in good), default=float("nan")))
            merged = sorted(pool + good, key=lambda s: -s[0])[:beam]
            fresh = [x for x in merged if not any(x is p for p in pool)]
            pool = merged
        best.append(per_length)
    return best, scored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--loop-units", type=int, default=4)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--length", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from probe.plugins.analyses.compositional.search import beam_search

    units, concepts, allowed, _ = packed_masks(args.images, args.units)
    print(f"compositional beam search on the parts world: {args.images} images at 32 px, "
          f"{int(allowed.sum())} concepts, {args.units} units, beam {args.beam}, "
          f"length {args.length}, {args.threads} thread(s)")
    beam_search(units[:2], concepts, allowed, args.beam, args.length)  # warm-up
    (batched_s, batched_cpu), result = _timed(
        lambda: beam_search(units, concepts, allowed, args.beam, args.length))
    n = args.loop_units
    (loop_s, loop_cpu), (loop_best, loop_scored) = _timed(
        lambda: loop_search(units[:n], concepts, allowed, args.beam, args.length))
    same = torch.allclose(result.iou[:n], torch.tensor(loop_best, dtype=torch.float64),
                          equal_nan=True)
    for name, scored, wall, cpu, note in (
            ("batched", result.scored, batched_s, batched_cpu, f"({args.units} units)"),
            ("loop", loop_scored, loop_s, loop_cpu, f"({n} units)")):
        print(f"  {name:<8} {scored:>9} formulas in {wall:7.3f} s: {scored / wall:10.0f} "
              f"formulas/s wall, {scored / cpu:10.0f} per CPU-second  {note}")
    print(f"  ratio batched / loop: {(result.scored / batched_s) / (loop_scored / loop_s):.1f}x "
          f"wall, {(result.scored / batched_cpu) / (loop_scored / loop_cpu):.1f}x CPU   "
          f"same best IoU per length: {same}")

    print("memory (resident-set growth at the peak of the search; packed masks):")
    rows = []
    for factor in (1, 10):
        images = args.images * factor
        u, c, a, _ = packed_masks(images, args.units, seed=1)
        grown, _ = peak_growth(lambda u=u, c=c, a=a: beam_search(u, c, a, args.beam,
                                                                 args.length))
        packed = (u.numel() + c.numel()) * 8
        rows.append((factor, images, grown, packed))
        print(f"  {factor:>2}x = {images:>5} images: search peak {grown / 2**20:8.1f} MiB, "
              f"packed masks {packed / 2**20:8.2f} MiB (one bool per pixel: "
              f"{packed * 8 / 2**20:8.1f} MiB)")
    (_, _, g1, p1), (_, _, g10, p10) = rows
    print(f"  ratio 10x / 1x: search peak {g10 / max(g1, 1):.1f}x, packed masks "
          f"{p10 / p1:.1f}x")


if __name__ == "__main__":
    main()
