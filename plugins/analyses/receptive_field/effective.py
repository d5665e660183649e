"""The effective receptive field (Luo et al. 2016): gradient maps, their radial mass and radius.

For a layer, the centre cell ``(h // 2, w // 2)`` of its map sits on input pixel
``c = (cy, cx)`` (:meth:`probe.receptive_field.Field.centre`). Each input pixel
lies at Chebyshev distance ``max(|y − cy|, |x − cx|)`` from it; distances are
binned by half pixels (bin ``ceil(2·d)``), so the mass inside the square of
half-width ``bin / 2`` around ``c`` is a cumulative sum over bins. The effective
radius is the smallest half-width whose square holds ``share`` of the total
gradient mass; the effective size ``2·radius + 1`` is comparable to the
theoretical size (for a centre on a pixel, the square spans that many pixels).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from probe.receptive_field import Field


def centre_cell(field: Field) -> tuple[int, int]:
    """The cell whose gradient is measured: ``(h // 2, w // 2)`` (``(0, 0)`` without a grid)."""
    h, w = field.grid.size
    return (h // 2, w // 2) if field.spatial else (0, 0)


def distance_bins(field: Field, device: torch.device) -> torch.Tensor:
    """``Tensor[H, W]`` int64: each input pixel's half-pixel distance bin from the centre cell."""
    cy, cx = field.centre(*centre_cell(field)) if field.spatial else field.start
    height, width = field.grid.input_size
    ys = (torch.arange(height, dtype=torch.float64, device=device) - cy).abs()
    xs = (torch.arange(width, dtype=torch.float64, device=device) - cx).abs()
    distance = torch.maximum(ys[:, None], xs[None, :])
    return torch.ceil(2 * distance - 1e-9).clamp(min=0).long()


def radial_mass(maps: torch.Tensor, bins: torch.Tensor, count: int) -> torch.Tensor:
    """``Tensor[N, count]``: the mass of each of ``N`` maps ``[N, H, W]`` in each distance bin."""
    flat = maps.reshape(maps.shape[0], -1)
    out = torch.zeros((maps.shape[0], count), dtype=flat.dtype, device=flat.device)
    return out.index_add_(1, bins.reshape(-1), flat)


def radius(profile: np.ndarray, share: float) -> np.ndarray:
    """Half-width (pixels) of the smallest square holding ``share`` of each row's mass.

    Args:
        profile: ``[N, bins]`` mass per half-pixel distance bin.
        share: In (0, 1].

    Returns:
        ``[N]`` radii in pixels; NaN where a row has no mass (a unit with zero gradient).
    """
    profile = np.asarray(profile, dtype=np.float64)
    total = profile.sum(axis=1)
    cumulative = np.cumsum(profile, axis=1)
    reached = cumulative >= share * total[:, None] * (1 - 1e-12)
    first = reached.argmax(axis=1).astype(np.float64)
    return np.where(total > 0, first / 2, math.nan)


__all__ = ["centre_cell", "distance_bins", "radial_mass", "radius"]
