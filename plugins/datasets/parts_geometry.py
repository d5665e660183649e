"""Vectorised geometry of the parts world: pixel grids, poses and filled shapes.

Coordinates are image units: ``x`` and ``y`` in ``[0, 1]``, ``y`` downwards,
pixel ``i`` of an ``n``-pixel row sampled at its centre ``(i + 0.5) / n``. The
same continuous geometry is sampled at the image resolution (pixels) and at
the mask resolution (label maps), so masks are exact at either size.
"""

from __future__ import annotations

import math

import torch

from probe.plugins.datasets.parts_world import SHAPES, Primitive


def pixel_grid(n: int, device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates of an ``n × n`` grid.

    Returns:
        ``(x, y)``, each ``Tensor[1, n, n]`` in image units.
    """
    centres = (torch.arange(n, dtype=torch.float32, device=device) + 0.5) / n
    return centres.view(1, 1, n).expand(1, n, n), centres.view(1, n, 1).expand(1, n, n)


def to_frame(x: torch.Tensor, y: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor,
             scale: torch.Tensor, angle: torch.Tensor,
             flip: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Map image coordinates into per-image object frames.

    Args:
        x, y: ``Tensor[1, n, n]`` pixel coordinates (:func:`pixel_grid`).
        cx, cy, scale, angle: ``Tensor[B]`` pose: centre, half-extent (image
            units per object unit) and rotation in radians.
        flip: ``Tensor[B]`` of ±1 (mirror the object left-right) or ``None``.

    Returns:
        ``(u, v)``, each ``Tensor[B, n, n]`` in object units.
    """
    dx = x - cx.view(-1, 1, 1)
    dy = y - cy.view(-1, 1, 1)
    cos = (torch.cos(angle) / scale).view(-1, 1, 1)
    sin = (torch.sin(angle) / scale).view(-1, 1, 1)
    u = cos * dx + sin * dy
    v = cos * dy - sin * dx
    if flip is not None:
        u = u * flip.view(-1, 1, 1)
    return u, v


def _unit_shape(shape: str, qx: torch.Tensor, qy: torch.Tensor) -> torch.Tensor:
    if shape == "ellipse":
        return qx * qx + qy * qy <= 1.0
    if shape == "rect":
        return (qx.abs() <= 1.0) & (qy.abs() <= 1.0)
    if shape == "triangle":  # apex at (0, -1), base from (-1, 1) to (1, 1)
        return (qy <= 1.0) & (2.0 * qx.abs() <= qy + 1.0)
    raise ValueError(f"shape must be one of {SHAPES}, got {shape!r}")


def inside_primitive(prim: Primitive, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Pixels inside one recipe primitive: ``Tensor[B, n, n]`` bool from frame coords."""
    du, dv = u - prim.cx, v - prim.cy
    if prim.angle:
        rad = math.radians(prim.angle)
        cos, sin = math.cos(rad), math.sin(rad)
        du, dv = cos * du + sin * dv, cos * dv - sin * du
    return _unit_shape(prim.shape, du / prim.a, dv / prim.b)


def inside_shapes(codes: torch.Tensor, qx: torch.Tensor, qy: torch.Tensor) -> torch.Tensor:
    """Pixels inside per-image unit shapes.

    Args:
        codes: ``Tensor[B]`` shape code (index into ``SHAPES``).
        qx, qy: ``Tensor[B, n, n]`` coordinates already scaled to the unit shape.

    Returns:
        ``Tensor[B, n, n]`` bool.
    """
    code = codes.view(-1, 1, 1)
    out = torch.zeros(qx.shape, dtype=torch.bool, device=qx.device)
    for index, shape in enumerate(SHAPES):
        out |= (code == index) & _unit_shape(shape, qx, qy)
    return out
