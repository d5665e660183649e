"""Comparison metrics: colour reduction, redundancy under rotations, one-to-one matching."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.nn import functional as F

#: Exact transforms of a square grid, as (name, function of Tensor[..., h, w]).
DIHEDRAL = (
    ("identity", lambda t: t),
    ("rot90", lambda t: torch.rot90(t, 1, (-2, -1))),
    ("rot180", lambda t: torch.rot90(t, 2, (-2, -1))),
    ("rot270", lambda t: torch.rot90(t, 3, (-2, -1))),
    ("flip", lambda t: torch.flip(t, (-1,))),
    ("flip_rot90", lambda t: torch.rot90(torch.flip(t, (-1,)), 1, (-2, -1))),
    ("flip_rot180", lambda t: torch.rot90(torch.flip(t, (-1,)), 2, (-2, -1))),
    ("flip_rot270", lambda t: torch.rot90(torch.flip(t, (-1,)), 3, (-2, -1))),
)


def reduce_channels(filters: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One signed spatial map per filter by SVD of its ``C × (h·w)`` matrix.

    The map is ``s₁·v₁`` with the sign chosen so that the colour vector ``u₁``
    sums to a positive value (a filter that responds to bright light in every
    channel keeps its sign). Never a per-pixel magnitude, which destroys phase.

    Args:
        filters: ``Tensor[N, C, h, w]``.

    Returns:
        ``(maps, separability)``: ``Tensor[N, h, w]`` and ``Tensor[N]`` with
        ``σ₁²/Σσ²`` (1 for single-channel filters; ``nan`` for all-zero ones).
    """
    n, c, h, w = filters.shape
    mats = filters.reshape(n, c, h * w).to(torch.float64)
    u, s, vh = torch.linalg.svd(mats, full_matrices=False)
    sign = torch.sign(u[:, :, 0].sum(dim=1))
    # A colour vector summing to zero (e.g. red minus green): fall back to its largest entry.
    largest = u[:, :, 0].gather(1, u[:, :, 0].abs().argmax(dim=1, keepdim=True)).squeeze(1)
    sign = torch.where(sign == 0, torch.sign(largest), sign)
    sign[sign == 0] = 1
    maps = (sign * s[:, 0])[:, None] * vh[:, 0]
    total = s.pow(2).sum(dim=1)
    sep = torch.where(total > 0, s[:, 0].pow(2) / total.clamp_min(1e-300),
                      torch.full_like(total, float("nan")))
    return maps.reshape(n, h, w), sep


def _rotate(filters: torch.Tensor, angle: float) -> torch.Tensor:
    """Bilinear rotation of ``Tensor[N, C, h, w]`` about the kernel centre (zeros outside)."""
    n, c, h, w = filters.shape
    cos, sin = math.cos(angle), math.sin(angle)
    theta = torch.tensor([[cos, -sin * h / w, 0.0], [sin * w / h, cos, 0.0]],
                         dtype=filters.dtype, device=filters.device)
    grid = F.affine_grid(theta.expand(n, 2, 3), [n, c, h, w], align_corners=True)
    return F.grid_sample(filters, grid, mode="bilinear", padding_mode="zeros",
                         align_corners=True)


def transforms(size: tuple[int, int], rotations: int = 4) -> list[tuple[str, float | None]]:
    """The transforms searched by :func:`redundancy`: ``(name, angle or None if exact)``.

    Square kernels get the 8 exact dihedral transforms; ``rotations > 4``
    (a multiple of 4) adds interpolated rotations by multiples of ``2π/rotations``
    (and their flips). Non-square kernels get identity, flip, rot180, flip_rot180.
    """
    if rotations < 4 or rotations % 4:
        raise ValueError(f"rotations must be a multiple of 4 (>= 4), got {rotations}")
    h, w = size
    names = [n for n, _ in DIHEDRAL]
    if h != w:
        names = ["identity", "rot180", "flip", "flip_rot180"]
    out: list[tuple[str, float | None]] = [(n, None) for n in names]
    if h == w:
        for i in range(rotations):
            if i % (rotations // 4):
                angle = 2 * math.pi * i / rotations
                deg = round(math.degrees(angle), 2)
                out.append((f"rot{deg:g}", angle))
                out.append((f"flip_rot{deg:g}", angle))
    return out


def _apply(filters: torch.Tensor, name: str, angle: float | None) -> torch.Tensor:
    if angle is None:
        return dict(DIHEDRAL)[name](filters)
    flipped = torch.flip(filters, (-1,)) if name.startswith("flip") else filters
    return _rotate(flipped, angle)


def redundancy(filters: torch.Tensor, rotations: int = 4
               ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Each filter's best match among the OTHER filters under rotations and flips.

    Score: ``|cos(w_i, g·w_j)|`` over every transform ``g`` and every ``j ≠ i``
    (sign-flipped copies count as copies). Channels transform together.

    Args:
        filters: ``Tensor[N, C, h, w]``.
        rotations: See :func:`transforms`.

    Returns:
        ``(cos, partner, transform)``: ``Tensor[N]`` best |cos|, ``Tensor[N]``
        index of the partner ``j`` and the transform's name for each filter
        (``nan``/``-1``/``""`` for a layer with one filter).
    """
    n = filters.shape[0]
    x = filters.to(torch.float64)
    if n < 2:
        return (torch.full((n,), float("nan"), dtype=x.dtype), torch.full((n,), -1),
                [""] * n)
    flat = x.reshape(n, -1)
    unit = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-300)
    eye = torch.eye(n, dtype=torch.bool, device=x.device)
    best = torch.full((n, n), -1.0, dtype=x.dtype, device=x.device)
    which = torch.zeros((n, n), dtype=torch.long, device=x.device)
    names = []
    # A running maximum over transforms keeps memory at O(n²), not O(transforms·n²).
    for g, (name, angle) in enumerate(transforms(tuple(filters.shape[-2:]), rotations)):
        moved = _apply(x, name, angle).reshape(n, -1)
        moved = moved / moved.norm(dim=1, keepdim=True).clamp_min(1e-300)
        score = (unit @ moved.T).abs().masked_fill(eye, -1.0)
        better = score > best
        best = torch.where(better, score, best)
        which = torch.where(better, torch.full_like(which, g), which)
        names.append(name)
    cos, partner = best.max(dim=1)
    chosen = which.gather(1, partner[:, None]).squeeze(1)
    return cos, partner, [names[i] for i in chosen.tolist()]


def hungarian_match(filters: torch.Tensor, basis: torch.Tensor
                    ) -> tuple[np.ndarray, np.ndarray]:
    """One-to-one matching of filters to basis functions maximising total |cos|.

    Args:
        filters: ``Tensor[N, h, w]``.
        basis: ``Tensor[M, h, w]``.

    Returns:
        ``(index, cos)``: ``Array[N]`` matched basis index (``-1`` when ``N > M``
        leaves a filter unmatched) and ``Array[N]`` its |cos| (``nan`` if unmatched).
    """
    from scipy.optimize import linear_sum_assignment

    a = filters.reshape(filters.shape[0], -1).double()
    b = basis.reshape(basis.shape[0], -1).double().to(a.device)
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-300)
    b = b / b.norm(dim=1, keepdim=True).clamp_min(1e-300)
    cos = (a @ b.T).abs().cpu().numpy()
    rows, cols = linear_sum_assignment(cos, maximize=True)
    index = np.full(a.shape[0], -1, dtype=np.int64)
    value = np.full(a.shape[0], np.nan)
    index[rows] = cols
    value[rows] = cos[rows, cols]
    return index, value
