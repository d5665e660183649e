"""Vectorised geometry of the parts world: pixel grids, affine frames and filled shapes.

Coordinates are image units: ``x`` and ``y`` in ``[0, 1]``, ``y`` downwards,
pixel ``i`` of an ``n``-pixel row sampled at its centre ``(i + 0.5) / n``. The
same continuous geometry is sampled at the image resolution (pixels) and at
the mask resolution (label maps), so masks are exact at either size.

Every shape is a unit shape (unit disc, square ``[-1, 1]²`` or triangle) seen
through a per-image affine map ``q = M · (x, y, 1)`` (``Tensor[B, 2, 3]``):
image → object frame → primitive frame, composed once per primitive. Because
``x`` varies along columns and ``y`` along rows, ``M · (x, y, 1)`` costs one
full-size addition (a ``[B, 1, n]`` row plus a ``[B, n, 1]`` column).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from probe.plugins.datasets.parts_world import SHAPES, Primitive


def pixel_grid(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates of an ``n × n`` grid.

    Returns:
        ``(x, y)``: ``x`` is ``Tensor[1, 1, n]`` (columns), ``y`` is ``Tensor[1, n, 1]``.
    """
    centres = (torch.arange(n, dtype=torch.float32) + 0.5) / n
    return centres.view(1, 1, n), centres.view(1, n, 1)


def frame_affine(cx: torch.Tensor, cy: torch.Tensor, scale: torch.Tensor, angle: torch.Tensor,
                 flip: torch.Tensor | None = None) -> torch.Tensor:
    """Image → object frame of a batch of poses.

    Args:
        cx, cy, scale, angle: ``Tensor[B]`` centre, half-extent (image units per
            object unit) and rotation in radians.
        flip: ``Tensor[B]`` of ±1 (mirror left-right) or ``None``.

    Returns:
        ``Tensor[B, 2, 3]`` mapping ``(x, y, 1)`` to object coordinates ``(u, v)``.
    """
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    mirror = flip if flip is not None else torch.ones_like(cx)
    row_u = torch.stack([cos, sin, -(cos * cx + sin * cy)], dim=1) * mirror.view(-1, 1)
    row_v = torch.stack([-sin, cos, sin * cx - cos * cy], dim=1)
    return torch.stack([row_u, row_v], dim=1)


@lru_cache(maxsize=256)
def primitive_affine(prim: Primitive) -> torch.Tensor:
    """Object frame → unit-shape frame of one primitive: ``Tensor[2, 3]``."""
    rad = math.radians(prim.angle)
    cos, sin = math.cos(rad), math.sin(rad)
    lin = torch.tensor([[cos / prim.a, sin / prim.a], [-sin / prim.b, cos / prim.b]])
    offset = -lin @ torch.tensor([float(prim.cx), float(prim.cy)])
    return torch.cat([lin, offset.view(2, 1)], dim=1)


def compose(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """Apply ``inner`` (``[B, 2, 3]``) then ``outer`` (``[2, 3]`` or ``[B, 2, 3]``)."""
    lin = outer[..., :2]
    out = lin @ inner
    out[..., 2] += outer[..., 2]
    return out


def scale_affine(affine: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Divide the two output rows of ``affine`` (``[B, 2, 3]``) by ``a`` and ``b`` (``[B]``)."""
    return affine / torch.stack([a, b], dim=1).unsqueeze(2)


def _coords(affine: torch.Tensor, x: torch.Tensor,
            y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m = affine.unsqueeze(-1).unsqueeze(-1)  # [B, 2, 3, 1, 1]
    qx = m[:, 0, 0] * x + (m[:, 0, 1] * y + m[:, 0, 2])
    qy = m[:, 1, 0] * x + (m[:, 1, 1] * y + m[:, 1, 2])
    return qx, qy


def inside(shape: str, affine: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pixels inside a unit shape seen through per-image affine maps.

    Args:
        shape: ``ellipse`` (unit disc), ``rect`` (``[-1, 1]²``) or ``triangle``
            (apex ``(0, -1)``, base from ``(-1, 1)`` to ``(1, 1)``).
        affine: ``Tensor[B, 2, 3]`` image → unit-shape coordinates.
        x, y: Grid from :func:`pixel_grid`.

    Returns:
        ``Tensor[B, n, n]`` bool.
    """
    qx, qy = _coords(affine, x, y)
    if shape == "ellipse":
        return torch.addcmul(qx * qx, qy, qy) <= 1.0
    if shape == "rect":
        return torch.maximum(qx.abs(), qy.abs()) <= 1.0
    if shape == "triangle":
        return (qy <= 1.0) & (2.0 * qx.abs() <= qy + 1.0)
    raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")
