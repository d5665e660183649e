"""Resizing unit maps to the mask size (PIL's bilinear) and its strict threshold, dense or sparse.

The rule is PIL's ``Image.resize(..., BILINEAR)`` on a float map — what the
reference tools use (NetDissect-Lite's ``imresize(mode='F')``) — evaluated
exactly in float64, per axis:

* an axis that grows or keeps its size (``n_out >= n_in``): two-tap bilinear
  with ``align_corners=False`` (the formula below; PIL's triangle filter is
  exactly this when it does not shrink);
* an axis that shrinks by ``f = n_in / n_out > 1``: PIL's *antialiased*
  triangle filter stretched to half-width ``f``: output ``i`` has centre
  ``c = (i + 0.5)·f`` and weighs sample ``j`` by ``max(0, 1 − |j + 0.5 − c| / f)``,
  normalised over the samples in range (``downsample="antialias"``, the default);
  ``downsample="bilinear"`` uses the two-tap formula there too, as
  ``F.interpolate(mode="bilinear", align_corners=False, antialias=False)``
  (probe before issue 16).

Either way a resized value is a convex combination of raw values and is
clipped to the largest of them, so rounding can never lift a pixel above every
source: a map whose raw maximum is ``<= T`` has no pixel ``> T`` (REFERENCE §1),
and skipping it is exact.

Two-tap formula: for an output pixel ``(y, x)`` with source coordinates
``s = (y + 0.5)·h/H − 0.5`` clamped at 0 (likewise for ``x``), rows
``y0 = min(floor(s), h − 1)``, ``y1 = min(y0 + 1, h − 1)`` and weights ``1 − λ``,
``λ`` (``λ = s − y0`` clipped to [0, 1]),

    v = wy0·(wx0·a[y0,x0] + wx1·a[y0,x1]) + wy1·(wx0·a[y1,x0] + wx1·a[y1,x1])

in float64 from the float32 activations. This is
``F.interpolate(mode="bilinear", align_corners=False)`` (and PIL's bilinear
resize when no axis shrinks) up to their float32 rounding (~1e-7 relative);
unlike those kernels it gives identical results on every device.

The active pixels of a layer (sparse, in bounded chunks) are :mod:`.active`'s job.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

#: Resizing rules for an axis that shrinks (see the module docstring).
DOWNSAMPLE = ("antialias", "bilinear")

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


@dataclass(frozen=True)
class TapPlan:
    """Resampling of one axis as a tap table: ``out[i] = Σ_t weight[i, t]·a[index[i, t]]``.

    Attributes:
        index: ``Tensor[n_out, T]`` int64 source samples (padding repeats a real tap).
        weight: ``Tensor[n_out, T]`` float64 weights, summing to 1 per row (padding 0).
    """

    index: torch.Tensor
    weight: torch.Tensor

    @classmethod
    def build(cls, n_in: int, n_out: int, downsample: str, device: torch.device) -> TapPlan:
        """The taps of ``n_in → n_out``: PIL's triangle filter when the axis shrinks
        under ``"antialias"``, else the two-tap bilinear formula (:class:`AxisPlan`)."""
        if downsample not in DOWNSAMPLE:
            raise ValueError(f"downsample must be one of {list(DOWNSAMPLE)}, got {downsample!r}")
        if n_out >= n_in or downsample == "bilinear":
            axis = AxisPlan.build(n_in, n_out, torch.device("cpu"))
            index = torch.stack([axis.lower, axis.upper], 1)
            weight = torch.stack([axis.w_lower[:-1], axis.w_upper[:-1]], 1)
            return cls(index.to(device), weight.to(device))
        scale = n_in / n_out  # PIL's precompute_coeffs with the bilinear filter, support 1
        rows: list[list[tuple[int, float]]] = []
        for i in range(n_out):
            center = (i + 0.5) * scale
            low = max(int(center - scale + 0.5), 0)
            high = min(int(center + scale + 0.5), n_in)
            taps = [(j, max(0.0, 1.0 - abs((j - center + 0.5) / scale))) for j in range(low, high)]
            taps = [(j, wt) for j, wt in taps if wt > 0.0]
            total = sum(wt for _, wt in taps)
            rows.append([(j, wt / total) for j, wt in taps])
        width = max(len(r) for r in rows)
        index = torch.tensor([[j for j, _ in r] + [r[0][0]] * (width - len(r)) for r in rows])
        weight = torch.tensor([[wt for _, wt in r] + [0.0] * (width - len(r)) for r in rows],
                              dtype=torch.float64)
        return cls(index.to(device), weight.to(device))


@functools.lru_cache(maxsize=64)
def taps(n_in: int, n_out: int, downsample: str, device: torch.device) -> TapPlan:
    """Cached :meth:`TapPlan.build`."""
    return TapPlan.build(n_in, n_out, downsample, device)


def shrinks(shape: tuple[int, int], size: tuple[int, int], downsample: str) -> bool:
    """Whether ``shape → size`` needs the tap path (an axis shrinks, antialiased)."""
    if downsample not in DOWNSAMPLE:
        raise ValueError(f"downsample must be one of {list(DOWNSAMPLE)}, got {downsample!r}")
    return downsample == "antialias" and (size[0] < shape[0] or size[1] < shape[1])


def _resample_taps(maps: torch.Tensor, size: tuple[int, int],
                   downsample: str) -> torch.Tensor:
    """Separable tap resampling of ``Tensor[P, h, w]`` → ``Tensor[P, H, W]`` float64, each
    value clipped to the largest raw value it combines.

    Rows first, then columns, each a sum over taps in tap order (``w0·a0 + w1·a1 + …``);
    the sparse path (:func:`_shrink_chunks`) evaluates the same sums in the same order,
    so the two agree bit for bit.
    """
    h, w = maps.shape[1:]
    rows = taps(h, size[0], downsample, maps.device)
    cols = taps(w, size[1], downsample, maps.device)
    src = maps.double()
    along_y = top_y = None
    for t in range(rows.index.shape[1]):
        picked = src.index_select(1, rows.index[:, t])  # [P, H, w]
        term = rows.weight[:, t].view(1, -1, 1) * picked
        along_y = term if along_y is None else along_y + term
        top_y = picked if top_y is None else torch.maximum(top_y, picked)
    value = top = None
    for t in range(cols.index.shape[1]):
        picked = along_y.index_select(2, cols.index[:, t])  # [P, H, W]
        term = cols.weight[:, t].view(1, 1, -1) * picked
        value = term if value is None else value + term
        peak = top_y.index_select(2, cols.index[:, t])
        top = peak if top is None else torch.maximum(top, peak)
    return torch.minimum(value, top)


def _reverse_taps(plan: TapPlan, n_in: int) -> torch.Tensor:
    """``Tensor[n_in, R]`` the outputs whose taps include each input sample (padded -1)."""
    users: list[list[int]] = [[] for _ in range(n_in)]
    for out, row in enumerate(plan.index.cpu().tolist()):
        for j in dict.fromkeys(row):
            users[j].append(out)
    width = max(1, max(len(u) for u in users))
    table = torch.full((n_in, width), -1, dtype=torch.int64)
    for j, u in enumerate(users):
        table[j, :len(u)] = torch.tensor(u, dtype=torch.int64)
    return table.to(plan.index.device)


@functools.lru_cache(maxsize=64)
def _reverse(n_in: int, n_out: int, downsample: str, device: torch.device) -> torch.Tensor:
    return _reverse_taps(taps(n_in, n_out, downsample, device), n_in)


def upsample(maps: torch.Tensor, size: tuple[int, int],
             downsample: str = "antialias") -> torch.Tensor:
    """Dense resizing of ``Tensor[P, h, w]`` maps to ``Tensor[P, H, W]`` (float64).

    PIL's bilinear rule (module docstring): two-tap bilinear on axes that grow;
    on an axis that shrinks, PIL's antialiased filter (``downsample="antialias"``)
    or the two-tap formula (``"bilinear"``).
    """
    h, w = maps.shape[-2:]
    if shrinks((h, w), size, downsample):
        return _resample_taps(maps, size, downsample)
    rows = plan(h, size[0], maps.device)
    cols = plan(w, size[1], maps.device)
    top, bottom = maps[:, rows.lower], maps[:, rows.upper]
    return _combine(top[:, :, cols.lower], top[:, :, cols.upper],
                    bottom[:, :, cols.lower], bottom[:, :, cols.upper],
                    rows.w_lower[:-1].view(-1, 1), rows.w_upper[:-1].view(-1, 1),
                    cols.w_lower[:-1].view(1, -1), cols.w_upper[:-1].view(1, -1))
