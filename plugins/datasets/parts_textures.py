"""Two-colour background textures of the parts world, as functions of position.

Each texture is a boolean pattern (``True`` = the region's second colour) of
the continuous image coordinates, so it can be sampled at the image and at the
mask resolution alike. ``period`` is in image units (the stripe/check/dot
spacing); ``phase`` shifts the pattern by a fraction of a period. Separable
patterns are computed on a row and a column and only broadcast at the end.
"""

from __future__ import annotations

import math

import torch

from probe.plugins.datasets.parts_world import TEXTURES

#: Side of the random table behind ``speckled`` (cells of half a period).
SPECKLE_CELLS = 32


def _frac(t: torch.Tensor) -> torch.Tensor:
    return t - torch.floor(t)


def texture_pattern(name: str, x: torch.Tensor, y: torch.Tensor, period: torch.Tensor,
                    phase: torch.Tensor, speckle: torch.Tensor) -> torch.Tensor:
    """The boolean pattern of texture ``name`` for a batch of images.

    Args:
        name: One of :data:`TEXTURES`.
        x, y: ``Tensor[1, 1, n]`` and ``Tensor[1, n, 1]`` pixel coordinates.
        period: ``Tensor[B]`` pattern period in image units.
        phase: ``Tensor[B, 2]`` phases in [0, 1) along x and y.
        speckle: ``Tensor[B, SPECKLE_CELLS, SPECKLE_CELLS]`` bool random cells.

    Returns:
        ``Tensor[B, n, n]`` bool.
    """
    b, n = len(period), x.shape[-1]
    p = period.view(-1, 1, 1)
    px, py = phase[:, 0].view(-1, 1, 1), phase[:, 1].view(-1, 1, 1)
    if name == "plain":
        return torch.zeros((b, n, n), dtype=torch.bool)
    if name == "striped_horizontal":
        return (_frac(y / p + px) < 0.5).expand(b, n, n)
    if name == "striped_vertical":
        return (_frac(x / p + px) < 0.5).expand(b, n, n)
    if name in ("striped_diagonal", "striped_antidiagonal"):
        sign = 1.0 if name == "striped_diagonal" else -1.0
        step = p * math.sqrt(2.0)
        return _frac(x / step + (sign * y / step + px)) < 0.5
    if name == "chequered":
        return (torch.floor(x / p + px) + torch.floor(y / p + py)).remainder(2) == 1
    if name == "grid":
        return (_frac(x / p + px) < 0.25) | (_frac(y / p + py) < 0.25)
    if name == "dotted":
        dx, dy = _frac(x / p + px) - 0.5, _frac(y / p + py) - 0.5
        return dx * dx + dy * dy < 0.09
    if name == "speckled":
        cells = SPECKLE_CELLS
        ix = torch.floor(2.0 * x / p + px * cells).long().remainder(cells)
        iy = torch.floor(2.0 * y / p + py * cells).long().remainder(cells)
        flat = (iy * cells + ix).reshape(b, n * n)
        return torch.gather(speckle.reshape(b, -1), 1, flat).view(b, n, n)
    raise ValueError(f"texture must be one of {TEXTURES}, got {name!r}")
