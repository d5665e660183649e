"""Bilinear upsampling (``align_corners=False``) and its strict threshold, dense or sparse.

Both paths evaluate the same formula, so they agree bit for bit: for an output
pixel ``(y, x)`` with source coordinates ``s = (y + 0.5)·h/H − 0.5`` clamped at 0
(likewise for ``x``), rows ``y0 = min(floor(s), h − 1)``, ``y1 = min(y0 + 1, h − 1)``
and weights ``1 − λ``, ``λ`` (``λ = s − y0`` clipped to [0, 1]),

    v = wy0·(wx0·a[y0,x0] + wx1·a[y0,x1]) + wy1·(wx0·a[y1,x0] + wx1·a[y1,x1])

in float64 from the float32 activations, then clipped to the largest of the four
source values (so rounding can never lift a pixel above every source: a map
whose raw maximum is ``<= T`` has no pixel ``> T``, REFERENCE §1). This is
``F.interpolate(mode="bilinear", align_corners=False)`` (and PIL's bilinear
resize) up to their float32 rounding (~1e-7 relative); unlike those kernels it
gives identical results on every device.

The sparse path (:func:`active_pixels`) never materialises a full upsampled map.
Every output pixel has one *owner* per axis, the unclamped ``floor(s)`` in
``-1 .. h-1``; owner ``o`` reads samples ``clamp(o)`` and ``clamp(o + 1)``, which
are exactly the clamped ``y0``, ``y1`` above (where ``s < 0`` the second is
``a[0]`` instead of ``a[1]``, but its weight is 0, so the value is the same bit
for bit). A pixel can only exceed ``T`` when one of its owner's four samples
does (so a map whose raw maximum is ``<= T`` is never touched), and only the
owners next to a raw value above ``T`` are expanded, each into a block of the
same shape (padded with NaN weights, never active): one vectorised evaluation
per layer and batch, work proportional to the active region, not to the map size.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

#: Largest number of candidate output pixels evaluated at once (bounds transient memory;
#: small enough that the temporaries are reused from the heap instead of fresh pages).
CHUNK_CANDIDATES = 2**17

#: Relative bound on what float64 rounding can add to a convex combination of two
#: values in the bilinear formula (a few units in the last place, 2⁻⁵² ≈ 2.2e-16, with
#: a wide safety factor): a block column is skipped only when its larger row value
#: plus this share of its magnitude is still ``<= T``.
MARGIN = 1e-12


@dataclass(frozen=True)
class AxisPlan:
    """Upsampling of one axis from ``n_in`` to ``n_out`` samples.

    Attributes:
        lower, upper: ``Tensor[n_out]`` source indices of each output sample.
        w_lower, w_upper: ``Tensor[n_out + 1]`` float64 weights; the extra last
            entry is NaN, the weight of padding.
        block: ``Tensor[n_in + 1, R]`` output indices owned by each owner ``o``
            (row ``o + 1``; owner ``o`` is the unclamped ``floor(s)``, ``-1 .. n_in - 1``),
            padded with ``n_out`` (NaN weights: never active).
        block_lower, block_upper: ``Tensor[n_in + 1, R]`` float64 weights of the
            outputs in ``block`` (``w_lower[block]``, ``w_upper[block]``; NaN for padding).
        owner_lower, owner_upper: ``Tensor[n_in + 1]`` the two source samples owner
            ``o`` reads, ``clamp(o)`` and ``clamp(o + 1)`` (row ``o + 1``).
    """

    lower: torch.Tensor
    upper: torch.Tensor
    w_lower: torch.Tensor
    w_upper: torch.Tensor
    block: torch.Tensor
    block_lower: torch.Tensor
    block_upper: torch.Tensor
    owner_lower: torch.Tensor
    owner_upper: torch.Tensor

    @classmethod
    def build(cls, n_in: int, n_out: int, device: torch.device) -> AxisPlan:
        """The plan for ``n_in → n_out`` (``align_corners=False``)."""
        if n_in < 1 or n_out < 1:
            raise ValueError(f"axis sizes must be >= 1, got {n_in} -> {n_out}")
        dst = torch.arange(n_out, dtype=torch.float64)
        unclamped = (dst + 0.5) * (n_in / n_out) - 0.5
        source = unclamped.clamp(min=0)
        lower = source.floor().long().clamp(max=n_in - 1)
        lam = (source - lower).clamp(0.0, 1.0)
        upper = (lower + 1).clamp(max=n_in - 1)
        owner = unclamped.floor().long().clamp(-1, n_in - 1) + 1  # padded row of the owner
        counts = torch.bincount(owner, minlength=n_in + 1)
        width = int(counts.max())
        start = torch.cumsum(counts, 0) - counts
        offset = torch.arange(width).view(1, -1)
        block = start.view(-1, 1) + offset
        block = torch.where(offset < counts.view(-1, 1), block, torch.full_like(block, n_out))
        nan = torch.tensor([float("nan")], dtype=torch.float64)
        w_lower, w_upper = torch.cat([1 - lam, nan]), torch.cat([lam, nan])
        return cls(lower.to(device), upper.to(device), w_lower.to(device), w_upper.to(device),
                   block.to(device), w_lower[block].to(device),
                   w_upper[block].to(device),
                   torch.arange(-1, n_in).clamp(0, n_in - 1).to(device),
                   torch.arange(0, n_in + 1).clamp(0, n_in - 1).to(device))


@functools.lru_cache(maxsize=64)
def plan(n_in: int, n_out: int, device: torch.device) -> AxisPlan:
    """Cached :meth:`AxisPlan.build`."""
    return AxisPlan.build(n_in, n_out, device)


def _combine(a00: torch.Tensor, a01: torch.Tensor, a10: torch.Tensor, a11: torch.Tensor,
             wy0: torch.Tensor, wy1: torch.Tensor, wx0: torch.Tensor,
             wx1: torch.Tensor) -> torch.Tensor:
    """The clipped bilinear value (float64); all arguments broadcast."""
    a00, a01, a10, a11 = (t.double() for t in (a00, a01, a10, a11))
    value = wy0 * (wx0 * a00 + wx1 * a01) + wy1 * (wx0 * a10 + wx1 * a11)
    top = torch.maximum(torch.maximum(a00, a01), torch.maximum(a10, a11))
    return torch.minimum(value, top)


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Dense bilinear upsampling of ``Tensor[P, h, w]`` maps to ``Tensor[P, H, W]`` (float64)."""
    h, w = maps.shape[-2:]
    rows = plan(h, size[0], maps.device)
    cols = plan(w, size[1], maps.device)
    top, bottom = maps[:, rows.lower], maps[:, rows.upper]
    return _combine(top[:, :, cols.lower], top[:, :, cols.upper],
                    bottom[:, :, cols.lower], bottom[:, :, cols.upper],
                    rows.w_lower[:-1].view(-1, 1), rows.w_upper[:-1].view(-1, 1),
                    cols.w_lower[:-1].view(1, -1), cols.w_upper[:-1].view(1, -1))


def active_pixels(act: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int],
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every output pixel whose upsampled value is strictly above its unit's threshold.

    Args:
        act: ``Tensor[B, K, h, w]`` raw activations.
        thresholds: ``Tensor[K]``.
        size: Output (mask) resolution ``(H, W)``.

    Returns:
        ``(image, unit, pixel)``: ``Tensor[n]`` each, ``pixel = y·W + x``.
    """
    batch, units, h, w = act.shape
    height, width = size
    device = act.device
    thr = thresholds.to(device=device, dtype=act.dtype)
    raw = act > thr.view(1, -1, 1, 1)  # [B, K, h, w]
    if (h, w) == (height, width):  # same size: the formula returns the raw value itself
        found, pixel = _flat_nonzero(raw, h * w)
        return found // units, found % units, pixel
    rows, cols = plan(h, height, device), plan(w, width, device)
    owner_map, owner_cell = _flat_nonzero(_owners(raw.reshape(batch * units, h, w)),
                                          (h + 1) * (w + 1))
    oi, oj = owner_cell // (w + 1), owner_cell % (w + 1)
    flat = act.reshape(-1)
    thr64 = thr.double()
    step = max(1, CHUNK_CANDIDATES // (rows.block.shape[1] * cols.block.shape[1]))
    out_map, out_pixel = [], []
    for begin in range(0, owner_map.numel(), step):  # chunks bound memory only
        chunk = slice(begin, begin + step)
        found_map, y, x = _expand_owners(flat, thr64, units, (h, w), rows, cols,
                                         owner_map[chunk], oi[chunk], oj[chunk])
        out_map.append(found_map)
        out_pixel.append(y * width + x)
    if not out_map:
        empty = torch.zeros(0, dtype=torch.int64, device=device)
        return empty, empty, empty
    found = torch.cat(out_map)
    return found // units, found % units, torch.cat(out_pixel)


def _flat_nonzero(mask: torch.Tensor, cells: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(map, cell)`` of the true entries of ``mask [M, ...]`` with ``cells`` entries per map.

    One flat ``nonzero`` (a single index column) is cheaper than one per dimension.
    """
    flat = mask.reshape(-1).nonzero().squeeze(1)
    return flat // cells, flat % cells


def _owners(raw: torch.Tensor) -> torch.Tensor:
    """``Tensor[M, h + 1, w + 1]`` bool: owners with a sample above ``T`` (borders replicated).

    Owner ``(p, q)`` reads rows ``p - 1, p`` and columns ``q - 1, q`` of ``raw [M, h, w]``,
    each clamped to the map.
    """
    maps, h, w = raw.shape
    by_rows = torch.empty((maps, h + 1, w), dtype=torch.bool, device=raw.device)
    by_rows[:, 0], by_rows[:, h] = raw[:, 0], raw[:, h - 1]
    torch.logical_or(raw[:, :-1], raw[:, 1:], out=by_rows[:, 1:h])
    owner = torch.empty((maps, h + 1, w + 1), dtype=torch.bool, device=raw.device)
    owner[:, :, 0], owner[:, :, w] = by_rows[:, :, 0], by_rows[:, :, w - 1]
    torch.logical_or(by_rows[:, :, :-1], by_rows[:, :, 1:], out=owner[:, :, 1:w])
    return owner


def _expand_owners(flat: torch.Tensor, thr64: torch.Tensor, units: int, shape: tuple[int, int],
                   rows: AxisPlan, cols: AxisPlan, owner_map: torch.Tensor, oi: torch.Tensor,
                   oj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The output pixels ``> T`` in the blocks of the given owners: ``(map, y, x)``.

    Columns first: along a block column the value is a convex combination of the
    column's top and bottom row values, so a column whose larger row value is
    ``<= T`` (by more than float64 rounding can add, see ``MARGIN``) has no pixel
    ``> T`` and is never expanded into rows. The rest evaluate the exact formula.
    """
    h, w = shape
    base = owner_map * (h * w)
    r0, r1 = rows.owner_lower.index_select(0, oi) * w, rows.owner_upper.index_select(0, oi) * w
    c0, c1 = cols.owner_lower.index_select(0, oj), cols.owner_upper.index_select(0, oj)
    a00, a01, a10, a11 = (flat.index_select(0, base + r + c).double().view(-1, 1)
                          for r, c in ((r0, c0), (r0, c1), (r1, c0), (r1, c1)))
    wx0, wx1 = cols.block_lower.index_select(0, oj), cols.block_upper.index_select(0, oj)
    top = wx0 * a00 + wx1 * a01  # [n, C]
    bottom = wx0 * a10 + wx1 * a11
    owner_thr = thr64.index_select(0, owner_map % units)
    high = torch.maximum(top, bottom)
    slack = MARGIN * torch.maximum(top.abs(), bottom.abs())
    column = ((high + slack) > owner_thr.view(-1, 1)).view(-1).nonzero().squeeze(1)
    n_cols = cols.block.shape[1]
    owner, col = column // n_cols, column % n_cols
    row_owner = oi.index_select(0, owner)
    value = (rows.block_lower.index_select(0, row_owner) * top.view(-1, 1).index_select(0, column)
             + rows.block_upper.index_select(0, row_owner)
             * bottom.view(-1, 1).index_select(0, column))  # [m, R]
    hit, r = (value > owner_thr.index_select(0, owner).view(-1, 1)).nonzero(as_tuple=True)
    owner, n_rows = owner.index_select(0, hit), rows.block.shape[1]
    y = rows.block.view(-1).index_select(0, row_owner.index_select(0, hit) * n_rows + r)
    x = cols.block.view(-1).index_select(0, oj.index_select(0, owner) * n_cols
                                         + col.index_select(0, hit))
    return owner_map.index_select(0, owner), y, x
