"""Where a feature map's cells sit in the input, and bilinear resampling on such grids.

:class:`Grid` places the cells of a layer's map on the input image (cell ``i``
centred on input pixel ``start + stride·i``); :func:`resample` reads a map at
fractional cell indices, exactly 0/1 weights where they fall on grid points.
:mod:`probe.transforms` builds every transformation's action on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

#: Mapped coordinates closer than this (in grid cells) to a grid point are snapped to it.
SNAP = 1e-6


@dataclass(frozen=True)
class Grid:
    """Where the cells of a feature map sit in the input image.

    Cell ``(i, j)`` is centred on input pixel coordinates
    ``(start[0] + stride[0]·i, start[1] + stride[1]·j)`` (0 = the centre of the
    first input pixel).

    Attributes:
        size: ``(h, w)`` of the feature map.
        input_size: ``(H, W)`` of the input image.
        stride: Cumulative stride in input pixels per cell.
        start: Input pixel coordinate of cell 0's centre.
    """

    size: tuple[int, int]
    input_size: tuple[int, int]
    stride: tuple[float, float] = (1.0, 1.0)
    start: tuple[float, float] = (0.0, 0.0)

    @classmethod
    def image(cls, height: int, width: int) -> Grid:
        """The grid of the input image itself."""
        return cls((height, width), (height, width))

    @classmethod
    def centred(cls, size: tuple[int, int], input_size: tuple[int, int]) -> Grid:
        """A grid spread evenly over the input (used when the geometry is unknown)."""
        stride = (input_size[0] / size[0], input_size[1] / size[1])
        start = tuple((s - 1) / 2 for s in stride)
        return cls(tuple(size), tuple(input_size), stride, start)  # type: ignore[arg-type]

    @property
    def is_centred(self) -> bool:
        """Whether the grid's centre is the image centre (flips and quarter turns are exact)."""
        return all(abs(self.start[a] + self.stride[a] * (self.size[a] - 1) / 2
                       - (self.input_size[a] - 1) / 2) < 1e-9 for a in (0, 1))

    def normalised(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised input coordinates of every cell: two ``Tensor[h, w]`` (y, x), float64."""
        axes = []
        for a in (0, 1):
            cells = torch.arange(self.size[a], dtype=torch.float64, device=device)
            pixels = self.start[a] + self.stride[a] * cells
            axes.append((2 * pixels + 1) / self.input_size[a] - 1)
        py, px = torch.meshgrid(axes[0], axes[1], indexing="ij")
        return py, px

    def cells(self, py: torch.Tensor, px: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Fractional cell indices of normalised coordinates (inverse of :meth:`normalised`)."""
        out = []
        for a, p in ((0, py), (1, px)):
            pixels = (p + 1) * self.input_size[a] / 2 - 0.5
            out.append((pixels - self.start[a]) / self.stride[a])
        return out[0], out[1]


def resample(features: torch.Tensor, cy: torch.Tensor, cx: torch.Tensor, *, wrap: bool,
             floor_y: torch.Tensor | None = None,
             floor_x: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear sampling of ``features`` at fractional cell indices.

    Args:
        features: ``Tensor[B, K, h, w]``.
        cy, cx: ``Tensor[h', w']`` fractional row/column indices (may carry gradients).
        wrap: Wrap indices around (circular); otherwise samples outside read zero.
        floor_y, floor_x: Integer base cells to interpolate from (default: the
            floor of ``cy``/``cx`` after snapping to grid points). Passing the
            floor of a slightly perturbed coordinate picks the side of a one-sided
            derivative.

    Returns:
        ``(Tensor[B, K, h', w'], mask Tensor[h', w'] bool)``; the mask is true where
        every neighbour with non-zero weight lies inside the grid (always true
        when ``wrap``).
    """
    h, w = features.shape[-2:]
    snapped_y = snap(cy.detach())
    snapped_x = snap(cx.detach())
    fy = torch.floor(snapped_y) if floor_y is None else floor_y
    fx = torch.floor(snapped_x) if floor_x is None else floor_x
    # Values from the snapped coordinates (exact 0/1 weights on grid points),
    # gradients from the unsnapped ones.
    ay = (cy - cy.detach()) + (snapped_y - fy)
    ax = (cx - cx.detach()) + (snapped_x - fx)
    # The four neighbours, stacked: one gather instead of four.
    iy = fy.long()[None] + torch.tensor([0, 0, 1, 1], device=fy.device).view(4, 1, 1)
    ix = fx.long()[None] + torch.tensor([0, 1, 0, 1], device=fx.device).view(4, 1, 1)
    wy = torch.stack([1 - ay, 1 - ay, ay, ay])
    wx = torch.stack([1 - ax, ax, 1 - ax, ax])
    weight = wy * wx
    if wrap:
        index = (iy % h) * w + ix % w
        mask = torch.ones(cy.shape, dtype=torch.bool, device=features.device)
    else:
        inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
        index = iy.clamp(0, h - 1) * w + ix.clamp(0, w - 1)
        mask = (inside | (weight.detach() == 0)).all(0)
        weight = weight * inside
    flat = features.flatten(2)
    gathered = flat[:, :, index.flatten()].view(*flat.shape[:2], 4, *cy.shape)
    return (gathered * weight.to(features.dtype)).sum(2), mask


def snap(c: torch.Tensor) -> torch.Tensor:
    """``c`` with values within :data:`SNAP` of an integer set to that integer."""
    nearest = torch.round(c)
    return torch.where((c - nearest).abs() < SNAP, nearest, c)


__all__ = ["SNAP", "Grid", "resample", "snap"]
