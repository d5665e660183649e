"""Input transformations that know their action on feature grids of any resolution.

A :class:`Transform` is a one-parameter family of geometric maps of the image
plane, written once as a coordinate map in **normalised image coordinates**
(``p ∈ [-1, 1]²``, pixel centres at ``(2i + 1)/H − 1``, the ``align_corners=False``
convention). Translations are given as a fraction of the image side, so an
input shift ``t`` is ``t·H`` input pixels and ``t·H / s`` cells of a stride-``s``
feature grid: the same object acts on the input and on every layer, through a
:class:`Grid` that says where the layer's cells sit in the input.

Every action is bilinear resampling at the mapped coordinates; where the mapped
coordinates fall on grid points (integer shifts that are multiples of the
stride, flips and quarter turns of a centred grid) the weights are exactly 0/1,
so the action is an exact permutation. Samples that fall outside the grid are
zero and marked invalid in the returned mask (circular transforms wrap instead).

Grids and resampling live in :mod:`probe.grid` (re-exported here); look
registered transforms up by name with :func:`probe.transform_registry.get_transforms`.

Plugins register their own transforms::

    from probe import hookimpl
    from probe.transforms import Transform

    class Shear(Transform):
        name = "shear"
        def source(self, py, px, magnitude):
            return py, px - magnitude * py

    @hookimpl
    def probe_register_transforms(register):
        register(Shear())
"""

from __future__ import annotations

import abc
import math

import torch

from probe.grid import SNAP, Grid, resample, snap

Magnitude = float | torch.Tensor


class Transform(abc.ABC):
    """A one-parameter family of image transformations ``g_m``.

    Subclasses implement :meth:`source`, the inverse map ``p ↦ g_m⁻¹(p)`` in
    normalised coordinates; the base class derives the action on images and on
    feature grids from it.

    Attributes:
        name: Registry name.
        description: One line for listings.
        unit: What the magnitude measures (``"fraction of side"``, ``"degrees"``, ...).
        identity: The magnitude that leaves images unchanged.
        continuous: Whether the family is a continuous group near ``identity``
            (it then has a Lie derivative).
        circular: Wrap around the edges instead of filling with zero.
        disk: Compare only inside the central disk (interpolated rotations and
            scalings, whose corners have no counterpart).
        square: Whether the transform needs square inputs (rotations).
        lie_step: Small positive magnitude step that picks the side of the
            one-sided bilinear derivative at ``identity``.
    """

    name: str = ""
    description: str = ""
    unit: str = ""
    identity: float = 0.0
    continuous: bool = True
    circular: bool = False
    disk: bool = False
    square: bool = False
    lie_step: float = 1e-4

    @abc.abstractmethod
    def source(self, py: torch.Tensor, px: torch.Tensor,
               magnitude: Magnitude) -> tuple[torch.Tensor, torch.Tensor]:
        """Where the transformed image reads from: ``g⁻¹(p)`` for ``Tensor[h, w]`` coordinates."""

    def default_magnitudes(self, input_size: int) -> tuple[float, ...]:
        """The sweep used when the user names no magnitudes (identity first)."""
        return (self.identity,)

    def pixels(self, magnitude: float, input_size: int) -> float:
        """The magnitude in input pixels, where that means something (NaN otherwise)."""
        return math.nan

    def check_grid(self, grid: Grid) -> None:
        """Raise ``ValueError`` when this transform cannot act on ``grid``."""
        if self.square and grid.input_size[0] != grid.input_size[1]:
            raise ValueError(f"{self.name} needs square inputs, got {grid.input_size}")

    def act(self, features: torch.Tensor, magnitude: Magnitude,
            grid: Grid | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Apply ``g_m`` to a map living on ``grid`` (default: the map is the image).

        Args:
            features: ``Tensor[B, K, h, w]``; ``Tensor[B, K]`` (no grid) is
                returned unchanged, as the trivial action of an invariant output.
            magnitude: A number, or a 0-d tensor that may require gradients; a
                tensor that requires gradients is differentiated one-sidedly
                (from the side of ``magnitude + lie_step``).
            grid: Where the cells sit in the input.

        Returns:
            ``(transformed Tensor[B, K, h, w], valid mask Tensor[h, w] bool)``.
        """
        if features.dim() < 4:
            return features, torch.ones((), dtype=torch.bool, device=features.device)
        if features.dim() != 4:
            raise ValueError(f"features must be Tensor[B, K, h, w], got shape "
                             f"{tuple(features.shape)}")
        h, w = features.shape[-2:]
        if grid is None:
            grid = Grid.image(h, w)
        if grid.size != (h, w):
            raise ValueError(f"grid size {grid.size} does not match the features' {(h, w)}")
        self.check_grid(grid)
        py, px = grid.normalised(features.device)
        cy, cx = grid.cells(*self.source(py, px, _as_float64(magnitude, features.device)))
        floor_y = floor_x = None
        if isinstance(magnitude, torch.Tensor) and magnitude.requires_grad:
            with torch.no_grad():
                ahead = _as_float64(magnitude.detach() + self.lie_step, features.device)
                ry, rx = grid.cells(*self.source(py, px, ahead))
                floor_y, floor_x = torch.floor(snap(ry)), torch.floor(snap(rx))
        out, mask = resample(features, cy, cx, wrap=self.circular, floor_y=floor_y,
                             floor_x=floor_x)
        if self.disk:
            mask = mask & (py ** 2 + px ** 2 <= 1.0)
        return out, mask

    def is_exact(self, magnitude: float, grid: Grid) -> bool:
        """Whether the action on ``grid`` maps cells onto cells (no interpolation)."""
        py, px = grid.normalised(torch.device("cpu"))
        cy, cx = grid.cells(*self.source(py, px, float(magnitude)))
        return bool(((cy - torch.round(cy)).abs() < SNAP).all()
                    and ((cx - torch.round(cx)).abs() < SNAP).all())

    def apply(self, images: torch.Tensor, magnitude: Magnitude) -> torch.Tensor:
        """Transform ``Tensor[B, C, H, W]`` images (regions with no source read zero)."""
        return self.act(images, magnitude)[0]

    def describe(self) -> dict[str, object]:
        """A JSON-ready description for listings."""
        return {"name": self.name, "description": self.description, "unit": self.unit,
                "identity": self.identity, "continuous": self.continuous,
                "circular": self.circular, "disk": self.disk}


def _as_float64(magnitude: Magnitude, device: torch.device) -> Magnitude:
    if isinstance(magnitude, torch.Tensor):
        return magnitude.to(device=device, dtype=torch.float64)
    return float(magnitude)


class Translation(Transform):
    """Translation by ``magnitude`` × the image side along one axis (right/down positive).

    Args:
        name: Registry name.
        axis: ``"x"`` (horizontal) or ``"y"`` (vertical).
        circular: Wrap around (a roll) instead of filling with zero.
        max_pixels: Default sweep: every integer input shift 0..max_pixels.
    """

    unit = "fraction of side"

    def __init__(self, name: str, axis: str, circular: bool, max_pixels: int = 8) -> None:
        if axis not in ("x", "y"):
            raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
        self.name = name
        self.axis = axis
        self.circular = circular
        self.max_pixels = max_pixels
        edge = "circular (wrap-around)" if circular else "zero fill, compared where defined"
        self.description = f"translation along {axis}, {edge}"

    def source(self, py, px, magnitude):
        if self.axis == "x":
            return py + 0 * magnitude, px - 2 * magnitude
        return py - 2 * magnitude, px + 0 * magnitude

    def default_magnitudes(self, input_size: int) -> tuple[float, ...]:
        return tuple(p / input_size for p in range(self.max_pixels + 1))

    def pixels(self, magnitude: float, input_size: int) -> float:
        return magnitude * input_size


class Flip(Transform):
    """Mirror about the vertical (``hflip``) or horizontal (``vflip``) axis; magnitude 0 or 1."""

    unit = "0 = identity, 1 = flipped"
    continuous = False

    def __init__(self, name: str, axis: str) -> None:
        if axis not in ("x", "y"):
            raise ValueError(f"axis must be 'x' or 'y', got {axis!r}")
        self.name = name
        self.axis = axis
        self.description = f"mirror image ({'left-right' if axis == 'x' else 'up-down'})"

    def source(self, py, px, magnitude):
        sign = 1 - 2 * (round(float(magnitude)) % 2)
        return (py, sign * px) if self.axis == "x" else (sign * py, px)

    def default_magnitudes(self, input_size: int) -> tuple[float, ...]:
        return (0.0, 1.0)


class QuarterTurn(Transform):
    """Rotation by ``magnitude`` × 90° counter-clockwise (as displayed, rows pointing down)."""

    name = "rot90"
    description = "rotation by multiples of 90° (exact on a centred square grid)"
    unit = "quarter turns"
    continuous = False
    square = True

    def source(self, py, px, magnitude):
        k = round(float(magnitude)) % 4
        # As torch.rot90(x, k, dims=(-2, -1)): out[i, j] = in[j, W - 1 - i] per turn.
        for _ in range(k):
            py, px = px, -py
        return py, px

    def default_magnitudes(self, input_size: int) -> tuple[float, ...]:
        return (0.0, 1.0, 2.0, 3.0)


class Rotation(Transform):
    """Rotation by ``magnitude`` degrees counter-clockwise about the centre, compared in a disk."""

    name = "rotate"
    description = "rotation by an arbitrary angle (bilinear), compared inside the central disk"
    unit = "degrees"
    disk = True
    square = True
    lie_step = 1e-2

    def source(self, py, px, magnitude):
        theta = _radians(magnitude)
        c, s = _cos(theta), _sin(theta)
        # Counter-clockwise on screen (y down) by θ: read from R(θ)·p in (x, y-down) terms.
        return c * py + s * px, c * px - s * py

    def default_magnitudes(self, input_size: int) -> tuple[float, ...]:
        return (0.0, 5.0, 10.0, 15.0, 30.0, 45.0)



class Scaling(Transform):
    """Zoom by a factor ``magnitude`` about the centre (bilinear), compared in a disk."""

    name = "scale"
    description = "isotropic scaling about the centre (bilinear), compared inside the central disk"
    unit = "factor"
    identity = 1.0
    disk = True

    def source(self, py, px, magnitude):
        return py / magnitude, px / magnitude

    def default_magnitudes(self, input_size: int) -> tuple[float, ...]:
        return (1.0, 0.8, 0.9, 1.1, 1.25)


def _radians(magnitude: Magnitude) -> Magnitude:
    return magnitude * (math.pi / 180.0)


def _cos(x: Magnitude) -> Magnitude:
    return torch.cos(x) if isinstance(x, torch.Tensor) else math.cos(x)


def _sin(x: Magnitude) -> Magnitude:
    return torch.sin(x) if isinstance(x, torch.Tensor) else math.sin(x)


def builtin_transforms() -> list[Transform]:
    """The transformations probe ships (registered by a built-in plugin)."""
    return [
        Translation("shift-x", "x", circular=True),
        Translation("shift-y", "y", circular=True),
        Translation("translate-x", "x", circular=False),
        Translation("translate-y", "y", circular=False),
        Flip("hflip", "x"),
        Flip("vflip", "y"),
        QuarterTurn(),
        Rotation(),
        Scaling(),
    ]


def validate_transform(item: object) -> None:
    """Registry check: ``item`` must be a :class:`Transform` instance with a name."""
    if not isinstance(item, Transform):
        raise TypeError(f"transforms must be probe.transforms.Transform instances, "
                        f"got {type(item).__name__}")
    if not item.name:
        raise ValueError(f"transform {type(item).__qualname__} has no name")


__all__ = ["Flip", "Grid", "QuarterTurn", "Rotation", "Scaling", "Transform", "Translation",
           "builtin_transforms", "resample", "validate_transform"]
