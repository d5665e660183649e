"""Compiled CPU kernels of the tally: active pixels found and counted in one pass.

On the CPU the tally's cost is not arithmetic but the temporaries of a
vectorised pipeline (owner lists, candidate blocks, gathered label rows, one
``bincount`` each). These kernels (numba, compiled on first use and cached on
disk) walk the same cells in the same order and evaluate the same float64
expressions as :func:`.active._expand_owners` (no fast-math, so no fused
multiply-add: bit for bit the same values), and add each active pixel to the
counts as soon as it is found, so nothing proportional to the active region is
ever allocated.

* :func:`count_pixels`: the counting half alone, for pixels another path found;
* :func:`count_maps`: maps that grow to the masks, keep their size or shrink, found
  and counted together.

The tests check both against the vectorised torch path that other devices run
(``active.NUMPY = False``), count for count.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import torch

from .active import MARGIN
from .upsample import plan, shrinks, taps

#: Use the compiled kernels on the CPU when numba imports (tests switch it off to check
#: the vectorised numpy path against them).
ENABLED = True


@functools.cache
def _kernels() -> SimpleNamespace:
    """The compiled kernels, by name (numba is imported only when tallying)."""
    import numba

    jit = numba.njit(cache=True, nogil=True, fastmath=False, boundscheck=False)

    @jit
    def add_pixel(counts, inter, hit_bits, table, pair, row, unit, n_labels, n_layers):
        counts[pair] += 1
        base = unit * n_labels
        for layer in range(n_layers):
            inter[base + table[row, layer]] += 1
        hit_bits[pair] |= table[row, n_layers]

    @jit
    def map_unit(pair, units, thr32, pixels_per_image):
        """Map ``pair``'s unit, float32 threshold and first label-table row."""
        image = pair // units
        unit = pair - image * units
        return unit, thr32[unit], image * pixels_per_image

    @jit
    def mark_hot_rows(maps, pair, t32, hot_rows):
        """``hot_rows[i]``: raw row ``i`` of map ``pair`` has a value above ``t32`` (most
        rows of a map above threshold have none)."""
        for i in range(maps.shape[1]):
            hot = False
            for j in range(maps.shape[2]):
                hot |= maps[pair, i, j] > t32
            hot_rows[i] = hot

    @jit
    def count_pixels(counts, inter, hit_bits, table, pairs, pixels, units, n_labels,
                     pixels_per_image):
        n_layers = table.shape[1] - 1
        for k in range(pairs.shape[0]):
            pair = pairs[k]
            image = pair // units
            add_pixel(counts, inter, hit_bits, table, pair,
                      image * pixels_per_image + pixels[k], pair - image * units,
                      n_labels, n_layers)

    @jit
    def count_upsampled(maps, thr32, chosen, units, width, pixels_per_image,
                        row_lower, row_upper, row_block, row_wl, row_wu,
                        col_lower, col_upper, col_block, col_wl, col_wu, margin,
                        table, n_labels, counts, inter, hit_bits):
        h, w = maps.shape[1], maps.shape[2]
        n_layers = table.shape[1] - 1
        n_rows, n_cols = row_block.shape[1], col_block.shape[1]
        height = row_wl.shape[0] - 1  # padding outputs carry NaN weights: never active
        wide = col_wl.shape[0] - 1
        hot_rows = np.zeros(h, dtype=np.bool_)
        for k in range(chosen.shape[0]):
            pair = chosen[k]
            unit, t32, row_base = map_unit(pair, units, thr32, pixels_per_image)
            mark_hot_rows(maps, pair, t32, hot_rows)
            t64 = np.float64(t32)
            for p in range(h + 1):
                r0, r1 = row_lower[p], row_upper[p]
                if not (hot_rows[r0] or hot_rows[r1]):
                    continue
                for q in range(w + 1):
                    c0, c1 = col_lower[q], col_upper[q]
                    s00, s01 = maps[pair, r0, c0], maps[pair, r0, c1]
                    s10, s11 = maps[pair, r1, c0], maps[pair, r1, c1]
                    if not (s00 > t32 or s01 > t32 or s10 > t32 or s11 > t32):
                        continue
                    a00, a01 = np.float64(s00), np.float64(s01)
                    a10, a11 = np.float64(s10), np.float64(s11)
                    big = max(max(abs(a00), abs(a01)), max(abs(a10), abs(a11)))
                    reach = t64 - margin * big
                    for c in range(n_cols):
                        x = col_block[q, c]
                        if x >= wide:
                            continue
                        wx0, wx1 = col_wl[x], col_wu[x]
                        top = wx0 * a00 + wx1 * a01
                        bottom = wx0 * a10 + wx1 * a11
                        if not max(top, bottom) > reach:
                            continue
                        for r in range(n_rows):
                            y = row_block[p, r]
                            if y >= height:
                                continue
                            value = row_wl[y] * top + row_wu[y] * bottom
                            if value > t64:
                                add_pixel(counts, inter, hit_bits, table, pair,
                                          row_base + y * width + x, unit, n_labels,
                                          n_layers)

    @jit
    def count_same(maps, thr32, chosen, units, pixels_per_image, table, n_labels, counts,
                   inter, hit_bits):
        n_layers = table.shape[1] - 1
        cells = maps.shape[1] * maps.shape[2]
        flat = maps.reshape(maps.shape[0], cells)
        for k in range(chosen.shape[0]):
            pair = chosen[k]
            unit, t32, row_base = map_unit(pair, units, thr32, pixels_per_image)
            for cell in range(cells):
                if flat[pair, cell] > t32:
                    add_pixel(counts, inter, hit_bits, table, pair, row_base + cell, unit,
                              n_labels, n_layers)

    @jit
    def count_shrunk(maps, thr32, chosen, units, width, pixels_per_image, row_index,
                     row_weight, col_index, col_weight, table, n_labels, counts, inter,
                     hit_bits):
        h, w = maps.shape[1], maps.shape[2]
        n_layers = table.shape[1] - 1
        height, n_ty = row_index.shape
        n_out, n_tx = col_index.shape
        hot_rows = np.zeros(h, dtype=np.bool_)
        along = np.zeros(w, dtype=np.float64)
        top_along = np.zeros(w, dtype=np.float64)
        for k in range(chosen.shape[0]):
            pair = chosen[k]
            unit, t32, row_base = map_unit(pair, units, thr32, pixels_per_image)
            mark_hot_rows(maps, pair, t32, hot_rows)
            t64 = np.float64(t32)
            for y in range(height):
                reached = False
                for u in range(n_ty):
                    reached |= hot_rows[row_index[y, u]]
                if not reached:  # every tap <= T: the clipped value is too
                    continue
                for j in range(w):  # the rows' pass, in tap order (as _resample_taps)
                    a = np.float64(maps[pair, row_index[y, 0], j])
                    total = row_weight[y, 0] * a
                    peak = a
                    for u in range(1, n_ty):
                        a = np.float64(maps[pair, row_index[y, u], j])
                        total = total + row_weight[y, u] * a
                        peak = max(peak, a)
                    along[j], top_along[j] = total, peak
                for x in range(n_out):
                    peak = top_along[col_index[x, 0]]
                    for t in range(1, n_tx):
                        peak = max(peak, top_along[col_index[x, t]])
                    if not peak > t64:
                        continue
                    value = col_weight[x, 0] * along[col_index[x, 0]]
                    for t in range(1, n_tx):
                        value = value + col_weight[x, t] * along[col_index[x, t]]
                    if min(value, peak) > t64:
                        add_pixel(counts, inter, hit_bits, table, pair,
                                  row_base + y * width + x, unit, n_labels, n_layers)

    return SimpleNamespace(count_pixels=count_pixels, count_upsampled=count_upsampled,
                           count_same=count_same, count_shrunk=count_shrunk)


def available() -> bool:
    """Whether the compiled kernels are on and numba imports here (else the vectorised
    numpy path is used)."""
    return ENABLED and _imports()


@functools.cache
def _imports() -> bool:
    """Whether the kernels compile here (tried once per process)."""
    try:
        _kernels()
    except ImportError:
        return False
    return True


def count_pixels(counts: torch.Tensor, inter: torch.Tensor, hit_bits: torch.Tensor,
                 table: torch.Tensor, pair: torch.Tensor, pixel: torch.Tensor, units: int,
                 n_labels: int, pixels_per_image: int) -> None:
    """Add active pixels ``(pair, pixel)`` to the counts, in place (CPU tensors).

    ``counts[pair] += 1`` (|M_k|), ``inter[unit·n_labels + label] += 1`` for the label
    of each mask layer at the pixel (I; label 0 lands in column 0), and
    ``hit_bits[pair] |= category bits`` (the lite rule).
    """
    _kernels().count_pixels(counts.numpy(), inter.numpy(), hit_bits.numpy(), table.numpy(),
                  pair.numpy(), pixel.numpy(), units, n_labels, pixels_per_image)


def count_maps(act: torch.Tensor, thresholds: torch.Tensor, peak: torch.Tensor,
               size: tuple[int, int], table: torch.Tensor, n_labels: int,
               counts: torch.Tensor, inter: torch.Tensor, hit_bits: torch.Tensor,
               downsample: str = "antialias") -> None:
    """Find and count the active pixels of ``act [B, K, h, w]`` (float32, CPU) resized to
    ``size`` (rule ``downsample`` where an axis shrinks), in place.

    Only maps whose raw maximum ``peak [B, K]`` is above the threshold are read. The
    same pixels as :func:`.active.active_pixel_chunks`: where the map has the mask's
    size, every raw value above the float32 threshold; where it grows, each owner cell
    with a sample above the threshold (only in rows that hold one), each block column
    that can reach it (:data:`.active.MARGIN`), each pixel whose float64 value is
    strictly above it; where an axis shrinks (antialiased), each output row whose taps
    reach a raw row with a value above the threshold, with
    :func:`.upsample._resample_taps`'s sums in its order (rows' pass, then columns'),
    clipped to the largest raw value. Counted as :func:`count_pixels`.
    """
    batch, units, h, w = act.shape
    thr = thresholds.to(act.dtype)
    chosen = np.flatnonzero((peak > thr.to(peak.dtype).view(1, -1)).numpy())  # image·K + unit
    maps = act.reshape(batch * units, h, w).contiguous().numpy()
    thr32 = thr.to(torch.float32).contiguous().numpy()
    given = (maps, thr32, chosen, units)
    outputs = (table.numpy(), n_labels, counts.numpy(), inter.numpy(), hit_bits.numpy())
    kernels = _kernels()
    if (h, w) == tuple(size):
        kernels.count_same(*given, h * w, *outputs)
        return
    cpu = torch.device("cpu")
    if shrinks((h, w), size, downsample):
        rows, cols = taps(h, size[0], downsample, cpu), taps(w, size[1], downsample, cpu)
        kernels.count_shrunk(*given, size[1], size[0] * size[1], rows.index.numpy(),
                             rows.weight.numpy(), cols.index.numpy(), cols.weight.numpy(),
                             *outputs)
        return
    rows, cols = plan(h, size[0], cpu), plan(w, size[1], cpu)

    def arrays(axis):
        return (axis.owner_lower.numpy(), axis.owner_upper.numpy(), axis.block.numpy(),
                axis.w_lower.numpy(), axis.w_upper.numpy())

    kernels.count_upsampled(*given, size[1], size[0] * size[1], *arrays(rows),
                            *arrays(cols), MARGIN, *outputs)
