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

The sparse path (:func:`active_pixels`) never materialises a full upsampled map:
every output pixel has one *owner*, its top-left source ``(y0, x0)``, and can
only exceed ``T`` when one of the owner's four sources does. So only the owners
next to a raw value above ``T`` are expanded, each into its fixed block of
output pixels. Work is proportional to the active region, not to the map size.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

#: Largest number of candidate output pixels evaluated at once (bounds transient memory).
CHUNK_CANDIDATES = 2**22


@dataclass(frozen=True)
class AxisPlan:
    """Upsampling of one axis from ``n_in`` to ``n_out`` samples.

    Attributes:
        lower, upper: ``Tensor[n_out]`` source indices of each output sample.
        w_lower, w_upper: ``Tensor[n_out + 1]`` float64 weights; the extra last
            entry is NaN, the weight of padding.
        block: ``Tensor[n_in, R]`` output indices owned by each source index
            (``lower == i``), padded with ``n_out`` (NaN weights: never active).
        length: ``Tensor[n_in]`` number of output indices each source index owns.
    """

    lower: torch.Tensor
    upper: torch.Tensor
    w_lower: torch.Tensor
    w_upper: torch.Tensor
    block: torch.Tensor
    length: torch.Tensor

    @classmethod
    def build(cls, n_in: int, n_out: int, device: torch.device) -> AxisPlan:
        """The plan for ``n_in → n_out`` (``align_corners=False``)."""
        if n_in < 1 or n_out < 1:
            raise ValueError(f"axis sizes must be >= 1, got {n_in} -> {n_out}")
        dst = torch.arange(n_out, dtype=torch.float64)
        source = ((dst + 0.5) * (n_in / n_out) - 0.5).clamp(min=0)
        lower = source.floor().long().clamp(max=n_in - 1)
        lam = (source - lower).clamp(0.0, 1.0)
        upper = (lower + 1).clamp(max=n_in - 1)
        counts = torch.bincount(lower, minlength=n_in)
        width = int(counts.max())
        start = torch.cumsum(counts, 0) - counts
        offset = torch.arange(width).view(1, -1)
        block = start.view(-1, 1) + offset
        block = torch.where(offset < counts.view(-1, 1), block, torch.full_like(block, n_out))
        nan = torch.tensor([float("nan")], dtype=torch.float64)
        return cls(lower.to(device), upper.to(device), torch.cat([1 - lam, nan]).to(device),
                   torch.cat([lam, nan]).to(device), block.to(device), counts.to(device))


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
                  peak: torch.Tensor | None = None,
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every output pixel whose upsampled value is strictly above its unit's threshold.

    Args:
        act: ``Tensor[B, K, h, w]`` raw activations.
        thresholds: ``Tensor[K]``.
        size: Output (mask) resolution ``(H, W)``.
        peak: ``Tensor[B, K]`` raw maximum of each map, if already known.

    Returns:
        ``(image, unit, pixel)``: ``Tensor[n]`` each, ``pixel = y·W + x``.
    """
    h, w = act.shape[2:]
    height, width = size
    device = act.device
    thr = thresholds.to(device=device, dtype=act.dtype)
    if (h, w) == (height, width):  # same size: the formula returns the raw value itself
        b, k, y, x = (act > thr.view(1, -1, 1, 1)).nonzero(as_tuple=True)
        return b, k, y * width + x
    # maps whose raw maximum is <= T cannot have an upsampled pixel > T: skip them
    if peak is None:
        peak = act.flatten(2).amax(2)
    image, unit = (peak > thr.view(1, -1)).nonzero(as_tuple=True)
    empty = torch.zeros(0, dtype=torch.int64, device=device)
    if image.numel() == 0:
        return empty, empty, empty
    maps = act.flatten(0, 1).index_select(0, image * act.shape[1] + unit)  # [P, h, w]
    raw = maps > thr[unit].view(-1, 1, 1)
    owner = raw.clone()  # owner (i, j) reads (i|i+1, j|j+1)
    owner[:, :-1] |= raw[:, 1:]
    owner[:, :, :-1] |= raw[:, :, 1:]
    owner[:, :-1, :-1] |= raw[:, 1:, 1:]
    m, i, j = owner.nonzero(as_tuple=True)
    rows = plan(h, height, device)
    cols = plan(w, width, device)
    # Owners have one of a few block shapes (clamped borders differ): evaluate each
    # shape without padding. Every evaluated owner has a source > T, so the clip of
    # the dense formula to the largest source cannot change "> T" here and is skipped.
    shape_key = rows.length[i] * (int(cols.length.max()) + 1) + cols.length[j]
    flat = maps.reshape(-1)
    thr64 = thr.double()
    out_b, out_k, out_p = [], [], []
    for key in torch.unique(shape_key).tolist():  # a handful of block shapes
        chosen = (shape_key == key).nonzero(as_tuple=True)[0]
        r_len, c_len = divmod(key, int(cols.length.max()) + 1)
        if r_len * c_len == 0:  # (downsampling) a source that owns no output pixel
            continue
        step = max(1, CHUNK_CANDIDATES // (r_len * c_len))
        for start in range(0, chosen.numel(), step):  # chunks bound memory only
            sel = chosen[start:start + step]
            om, oi, oj = m[sel], i[sel], j[sel]
            i1, j1 = (oi + 1).clamp(max=h - 1), (oj + 1).clamp(max=w - 1)
            base = om * (h * w)
            a00, a01 = flat[base + oi * w + oj].double(), flat[base + oi * w + j1].double()
            a10, a11 = flat[base + i1 * w + oj].double(), flat[base + i1 * w + j1].double()
            ys, xs = rows.block[oi, :r_len], cols.block[oj, :c_len]  # [n, R], [n, C]
            wx0, wx1 = cols.w_lower[xs], cols.w_upper[xs]
            top_row = wx0 * a00.view(-1, 1) + wx1 * a01.view(-1, 1)  # [n, C]
            bottom_row = wx0 * a10.view(-1, 1) + wx1 * a11.view(-1, 1)
            value = (rows.w_lower[ys].unsqueeze(2) * top_row.unsqueeze(1)
                     + rows.w_upper[ys].unsqueeze(2) * bottom_row.unsqueeze(1))  # [n, R, C]
            n, r, c = (value > thr64[unit[om]].view(-1, 1, 1)).nonzero(as_tuple=True)
            out_b.append(image[om[n]])
            out_k.append(unit[om[n]])
            out_p.append(ys[n, r] * width + xs[n, c])
    return torch.cat(out_b), torch.cat(out_k), torch.cat(out_p)
