"""What every rank derives identically before the data loop: the sweep and the layer grids.

:func:`plan_sweep` reads the options and the run's dry forward
(``context.input_shape``, ``layer_shapes``, ``output_shape``) and runs one
forward pass on a blank input to place every layer's cells in the input
(:func:`probe.receptive_field.layer_grids`). The resulting :class:`Sweep` fixes every key
of the accumulator's state (same keys, same order on every rank) and is all
the table builders need besides the reduced sums.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from probe import RunContext
from probe.errors import OptionError
from probe.grid import Grid
from probe.receptive_field import layer_grids
from probe.transform_registry import get_transforms
from probe.transforms import Transform

from .lie import OUTPUT

ErrorKey = tuple[str, str, float]  # (layer or OUTPUT, transform, magnitude)
SweepKey = tuple[str, float]  # (transform, magnitude)


def model_dtype(model: torch.nn.Module, default: torch.dtype) -> torch.dtype:
    """The floating dtype of the model's parameters (then buffers); ``default`` if none."""
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            return tensor.dtype
    return default


def parse_magnitudes(entries: tuple[str, ...], known: list[str]) -> dict[str, tuple[str, bool]]:
    """``("translate-x=0:8:1px", "rotate=0;10;20")`` → ``{name: (spec, in_pixels)}``."""
    out: dict[str, tuple[str, bool]] = {}
    for entry in entries:
        name, sep, spec = entry.partition("=")
        name, spec = name.strip(), spec.strip()
        if not sep or not spec:
            raise OptionError(f"equivariance.magnitudes entries look like NAME=a;b;c or "
                              f"NAME=start:stop:step (add 'px' for input pixels), got {entry!r}")
        if name not in known:
            raise OptionError(f"equivariance.magnitudes names transform {name!r}, which is not "
                              f"in equivariance.transforms ({', '.join(known)})")
        pixels = spec.endswith("px")
        out[name] = (spec[:-2] if pixels else spec, pixels)
    return out


def expand(spec: str, where: str) -> list[float]:
    """``"a;b;c"`` or ``"start:stop:step"`` (stop included) → the magnitudes."""
    try:
        if ":" in spec:
            start, stop, step = (float(v) for v in spec.split(":"))
            if step <= 0:
                raise ValueError
            count = math.floor((stop - start) / step + 1e-9) + 1
            return [start + i * step for i in range(count)]
        return [float(v) for v in spec.split(";") if v.strip()]
    except ValueError:
        raise OptionError(f"{where}: cannot read magnitudes {spec!r} (a;b;c or "
                          f"start:stop:step with step > 0)") from None


@dataclass(frozen=True)
class Sweep:
    """The measurement plan of one run (configuration, identical on every rank).

    Attributes:
        layers: Captured layers, in the run's order (the ``errors`` rows).
        order: The same layers in execution order (the Lie chain).
        transforms: The transforms measured.
        magnitudes: ``{transform: magnitudes}`` swept, identity first where default.
        grids: ``{layer or OUTPUT: Grid, or None}`` (``None``: compared as invariant).
        units: ``{layer: channels}`` of the layers a learned map can be fitted on.
        fitted: ``(layer, transform, magnitude)`` of every learned map.
        width: Input width in pixels (pixel units of the magnitudes).
        output_dims: ``dim()`` of a batch of model outputs (2 logits, 4 maps).
        lie: Whether Lie derivatives are measured (of the continuous transforms).
        consistency: Whether consistency is measured (option on, outputs comparable).
        ridge, consistency_shift, consistency_steps: The options of those names.
    """

    layers: tuple[str, ...]
    order: tuple[str, ...]
    transforms: tuple[Transform, ...]
    magnitudes: Mapping[str, tuple[float, ...]]
    grids: Mapping[str, Grid | None]
    units: Mapping[str, int]
    fitted: tuple[ErrorKey, ...]
    width: int
    output_dims: int
    lie: bool
    consistency: bool
    ridge: float
    consistency_shift: float
    consistency_steps: int

    @property
    def points(self) -> list[SweepKey]:
        """Every ``(transform, magnitude)`` measured, in sweep order (no repeats)."""
        return list(dict.fromkeys((t.name, m) for t in self.transforms
                                  for m in self.magnitudes[t.name]))

    @property
    def error_keys(self) -> list[ErrorKey]:
        """One ``(layer, transform, magnitude)`` per ``errors`` row, in table order."""
        return [(layer, name, m) for name, m in self.points for layer in [*self.layers, OUTPUT]]

    @property
    def lie_transforms(self) -> list[str]:
        """The transforms that get Lie derivatives."""
        return [t.name for t in self.transforms if t.continuous] if self.lie else []

    def transform(self, name: str) -> Transform:
        """The transform called ``name``."""
        return next(t for t in self.transforms if t.name == name)


def _magnitudes(transform: Transform, overrides: Mapping[str, tuple[str, bool]],
                width: int) -> list[float]:
    if transform.name not in overrides:
        return list(transform.default_magnitudes(width))
    spec, pixels = overrides[transform.name]
    values = expand(spec, f"equivariance.magnitudes {transform.name}")
    if pixels:
        unit = transform.pixels(1.0, width)
        if not math.isfinite(unit):
            raise OptionError(f"equivariance.magnitudes: transform {transform.name} has no "
                              f"pixel unit; drop 'px'")
        values = [v / unit for v in values]
    return values


def _fitted_points(transform: Transform, values: list[float], mode: str) -> list[float]:
    """Magnitudes of ``transform`` that get a learned map under ``learned_maps=mode``."""
    moved = [v for v in values if v != transform.identity]
    if mode == "all" or (mode == "discrete" and not transform.continuous):
        return moved
    if mode == "discrete" and moved:
        return [max(moved, key=lambda v: abs(v - transform.identity))]
    return []


def plan_sweep(settings: Mapping[str, Any], context: RunContext, layers: list[str]) -> Sweep:
    """The :class:`Sweep` of a run (one forward pass on a blank input for the grids).

    Raises:
        OptionError: A magnitude cannot be read, or a transform cannot act on a grid.
    """
    transforms = get_transforms(settings["transforms"])
    overrides = parse_magnitudes(settings["magnitudes"], [t.name for t in transforms])
    input_shape = tuple(context.input_shape)
    width = int(input_shape[-1])
    dtype = model_dtype(context.model, torch.float32)
    blank = context.handle.normalize(torch.zeros((1, *input_shape), dtype=dtype,
                                                 device=context.device))
    paths = {name: context.layers[name] for name in layers}
    raw, execution = layer_grids(context.model, {**paths, OUTPUT: ""}, blank)
    # A single cell (global pooling, LeNet's C5) can only be compared to itself:
    # treat it like an output without a grid, i.e. as meant to be invariant.
    grids = {n: None if g is not None and g.size == (1, 1) else g for n, g in raw.items()}
    magnitudes: dict[str, tuple[float, ...]] = {}
    fitted: list[tuple[str, float]] = []
    for transform in transforms:
        values = _magnitudes(transform, overrides, width)
        magnitudes[transform.name] = tuple(values)
        for grid in grids.values():
            if grid is not None:
                try:
                    transform.check_grid(grid)
                except ValueError as exc:
                    raise OptionError(f"transform {transform.name}: {exc}") from None
        fitted += [(transform.name, v) for v in
                   _fitted_points(transform, values, settings["learned_maps"])]
    fitted_set = set(fitted)
    # learned maps on feature maps Tensor[B, K, h, w] and vectors Tensor[B, K]
    shapes = {n: tuple(context.layer_shapes.get(n, ())) for n in layers}
    units = {n: int(shape[0]) for n, shape in shapes.items() if len(shape) in (1, 3)}
    points = dict.fromkeys((t.name, m) for t in transforms for m in magnitudes[t.name])
    fitted_keys = tuple((layer, name, m) for name, m in points if (name, m) in fitted_set
                        for layer in layers if layer in units)
    output_shape, spatial = tuple(context.output_shape), tuple(input_shape[-2:])
    # per-pixel comparison needs outputs at the input's resolution
    comparable = len(output_shape) == 1 or (len(output_shape) == 3
                                            and output_shape[-2:] == spatial)
    return Sweep(layers=tuple(layers), order=tuple(n for n in execution if n != OUTPUT),
                 transforms=tuple(transforms), magnitudes=magnitudes, grids=grids,
                 units=units, fitted=fitted_keys, width=width,
                 output_dims=len(output_shape) + 1, lie=bool(settings["lie"]),
                 consistency=bool(settings["consistency"]) and comparable,
                 ridge=float(settings["ridge"]),
                 consistency_shift=float(settings["consistency_shift"]),
                 consistency_steps=int(settings["consistency_steps"]))
