"""A compiled CPU kernel for the quantile buffer: every unit's top values, in one read.

:class:`.quantile.TopQuantile` needs, per unit, the multiset of the ``size`` largest
activations seen so far. The vectorised path finds them with ``topk`` on a copy of
the first batch, then filters later batches by the buffer's floor and merges the
candidates with a ragged sort; on the CPU those temporaries cost more than reading
the values. This kernel (numba, compiled on first use and cached on disk) reads each
unit's values once, in place, into a buffer of ``2·size`` candidates: every value
while the unit has fewer than ``size``, later only one strictly greater than the
floor (the smallest of the kept top values; an equal one cannot change the
multiset). When the buffer is full, a partition (``np.partition``) keeps the
``size`` largest and raises the floor. Once there is a floor, a block of
:data:`BLOCK` values is first counted against it with a vectorised compare and
skipped when none is above, which is most blocks after the first batch.

The buffer holds exactly the multiset of the ``size`` largest values, so the
thresholds computed from it equal those of the vectorised path bit for bit
(tested against ``torch.quantile`` and against that path, for ascending,
descending, equal, signed-zero and random values).
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import torch

#: Values per block: once there is a floor, a block with nothing above it is skipped after
#: one vectorised count.
BLOCK = 64
#: Use the kernel on the CPU when numba imports (tests switch it off to check the
#: vectorised path against it).
ENABLED = True


@functools.cache
def _kernels() -> SimpleNamespace:
    """The compiled kernel (numba is imported only when thresholds are computed)."""
    import numba

    jit = numba.njit(cache=True, nogil=True, fastmath=False, boundscheck=False)

    @jit
    def push(maps, tops, filled, size, block):
        """Add ``maps [B, U, P]`` to ``tops [U, size]``, whose first ``filled`` entries are
        each unit's top values so far (any order); return the new fill."""
        batch, units, per_map = maps.shape
        limit = 2 * size  # partition when more are kept
        kept = np.empty(limit + block, dtype=np.float32)
        n = filled
        for unit in range(units):
            n = filled
            kept[:n] = tops[unit, :n]
            full = False  # whether kept[:size] are the top values and floor their minimum
            floor = np.float32(0.0)
            if n == size:
                floor, full = kept[:n].min(), True
            for image in range(batch):
                values = maps[image, unit]
                for start in range(0, per_map, block):
                    stop = min(start + block, per_map)
                    if full and stop - start == block:  # most blocks hold nothing above
                        window = values[start:start + block]
                        above = np.int32(0)
                        for q in range(block):  # a fixed trip count: vectorised
                            above += np.int32(window[q] > floor)
                        if above == 0:
                            continue
                    if full:
                        for q in range(start, stop):  # branch-free: write, keep if above
                            kept[n] = values[q]
                            n += np.int64(values[q] > floor)
                    else:
                        for q in range(start, stop):
                            kept[n] = values[q]
                            n += 1
                    if n > limit:  # keep the top `size`: the last ones after a partition
                        ordered = np.partition(kept[:n], n - size)
                        kept[:size] = ordered[n - size:]
                        n, floor, full = size, ordered[n - size], True
            if n > size:
                ordered = np.partition(kept[:n], n - size)
                kept[:size] = ordered[n - size:]
                n = size
            tops[unit, :n] = kept[:n]
        return n

    return SimpleNamespace(push=push)


def available() -> bool:
    """Whether the kernel runs here (``ENABLED`` and numba imports)."""
    if not ENABLED:
        return False
    try:
        _kernels()
    except ImportError:
        return False
    return True


def push_top(act: torch.Tensor, top: torch.Tensor, size: int) -> torch.Tensor:
    """Every unit's ``size`` largest values among ``top [U, m]`` (``m <= size``, any order)
    and the maps ``act [B, U, ...]`` (float32, CPU), as a new ``Tensor[U, min(size, m + n)]``
    (any order; ``n`` values per unit in ``act``)."""
    batch, units = act.shape[:2]
    maps = act.reshape(batch, units, -1).contiguous()
    tops = torch.empty((units, size), dtype=torch.float32)
    filled = top.shape[1]
    tops[:, :filled] = top
    filled = _kernels().push(maps.numpy(), tops.numpy(), filled, size, BLOCK)
    return tops[:, :filled]
