"""Receptive-field arithmetic: where each layer's cells sit in the input and how much they see.

One forward pass on a single input records, for every module in execution
order, the geometry of its output, following the convolution arithmetic of
Dumoulin & Visin (2018) (the recurrences as in Araujo et al., Distill 2019).
A module with ``kernel_size`` k, ``stride`` s, ``padding`` p and ``dilation``
d maps a field (size r, jump j, start) to::

    r' = r + (k − 1)·d·j        j' = j·s        start' = start + ((k − 1)·d/2 − p)·j

A transposed convolution or max-unpooling divides the jump by s, moves the
start by ``(p − (k − 1)·d/2)·j/s`` and adds ``floor((k − 1)·d/s)·j`` to the
size (the most input cells one output cell can receive; cells at other
phases receive fewer). Modules that keep the map size keep the field. Any other
size change (adaptive pooling, interpolation, reshapes) falls back to a grid
spread evenly over the input, with the size grown by the largest adaptive
window, and is flagged ``exact=False``; an output without a spatial grid (a
fully connected layer) sees the union of the last spatial map's fields.

A module that applies its one convolution child functionally (its own
bias, a connection mask) takes that child's kernel. Deformable convolutions
count at their nominal kernel (their offsets are data
dependent: the field holds for zero offsets). Branches joined outside modules
(residual additions) take the field of the tensor they are written into (an
in-place add) or of the most recent map of that size.

>>> fields, order = layer_fields(model, {"conv5_3": "features.29"}, torch.zeros(1, 3, 224, 224))
>>> fields["conv5_3"].size, fields["conv5_3"].jump     # VGG-16: ((196.0, 196.0), (16.0, 16.0))
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from probe.capture import Capture
from probe.grid import Grid


@dataclass(frozen=True)
class Field:
    """The receptive field of a layer's cells, per axis ``(rows, columns)``.

    Attributes:
        grid: Where the cells sit (:class:`probe.grid.Grid`: jump = ``grid.stride``,
            start = ``grid.start``, the input pixel under cell 0's centre).
        size: Side of every cell's receptive field in input pixels (it may exceed the
            image: the rest is padding).
        exact: ``False`` where the arithmetic fell back (an unknown size change).
        spatial: ``False`` for an output with no spatial grid (``Tensor[B, K]``):
            ``grid`` then has one cell at the centre of everything the layer sees.
    """

    grid: Grid
    size: tuple[float, float]
    exact: bool = True
    spatial: bool = True

    @property
    def jump(self) -> tuple[float, float]:
        """Input pixels between neighbouring cells."""
        return self.grid.stride

    @property
    def start(self) -> tuple[float, float]:
        """Input pixel coordinate of cell ``(0, 0)``'s centre."""
        return self.grid.start

    def centre(self, row: int, col: int) -> tuple[float, float]:
        """Input pixel coordinates of cell ``(row, col)``'s centre."""
        return (self.start[0] + self.jump[0] * row, self.start[1] + self.jump[1] * col)

    def box(self, row: int, col: int, clip: bool = True) -> tuple[int, int, int, int]:
        """``(top, left, bottom, right)`` (bottom/right exclusive) of cell ``(row, col)``'s field.

        Clipped to the image unless ``clip`` is false.
        """
        cy, cx = self.centre(row, col)
        top = math.ceil(cy - (self.size[0] - 1) / 2 - 1e-9)
        left = math.ceil(cx - (self.size[1] - 1) / 2 - 1e-9)
        bottom = math.floor(cy + (self.size[0] - 1) / 2 + 1e-9) + 1
        right = math.floor(cx + (self.size[1] - 1) / 2 + 1e-9) + 1
        if clip:
            height, width = self.grid.input_size
            top, left = max(0, top), max(0, left)
            bottom, right = min(height, bottom), min(width, right)
        return top, left, bottom, right


def _pair(value: object) -> tuple[float, float]:
    if isinstance(value, (tuple, list)):
        return float(value[0]), float(value[-1])
    return float(value), float(value)  # type: ignore[arg-type]


def _adaptive_window(before: int, after: int) -> int:
    """The longest window of adaptive pooling from ``before`` to ``after`` cells."""
    return max(math.ceil((i + 1) * before / after) - math.floor(i * before / after)
               for i in range(after))


_ADAPTIVE = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


@dataclass(frozen=True)
class _Kernel:
    """A kernel geometry standing in for a module (adaptive pooling with equal windows)."""

    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
_TRANSPOSED = (nn.ConvTranspose2d, nn.MaxUnpool2d)


def next_field(module: nn.Module, field: Field, size: tuple[int, int]) -> Field:
    """The field of ``module``'s output (map ``size``) given its input's field."""
    grid = field.grid
    has_kernel = all(hasattr(module, a) for a in ("kernel_size", "stride", "padding"))
    if isinstance(module, _ADAPTIVE) and all(
            size[a] <= grid.size[a] and grid.size[a] % size[a] == 0 for a in (0, 1)):
        # equal windows: exactly a pooling of kernel = stride = input / output cells
        window = tuple(grid.size[a] // size[a] for a in (0, 1))
        module = _Kernel(window, window, (0, 0))
        has_kernel = True
    if has_kernel and not isinstance(module, _ADAPTIVE):
        k = _pair(module.kernel_size)
        s = _pair(module.stride if module.stride is not None else module.kernel_size)
        d = _pair(getattr(module, "dilation", 1))
        padding = module.padding
        if padding == "same":
            p = tuple((kk - 1) * dd / 2 for kk, dd in zip(k, d, strict=True))
        elif padding == "valid":
            p = (0.0, 0.0)
        else:
            p = _pair(padding)
        if isinstance(module, _TRANSPOSED):
            start = tuple(grid.start[a] + grid.stride[a] * (p[a] - (k[a] - 1) * d[a] / 2) / s[a]
                          for a in (0, 1))
            stride = tuple(grid.stride[a] / s[a] for a in (0, 1))
            grown = tuple(field.size[a] + math.floor((k[a] - 1) * d[a] / s[a] + 1e-9)
                          * grid.stride[a] for a in (0, 1))
        else:
            start = tuple(grid.start[a] + ((k[a] - 1) * d[a] / 2 - p[a]) * grid.stride[a]
                          for a in (0, 1))
            stride = tuple(grid.stride[a] * s[a] for a in (0, 1))
            grown = tuple(field.size[a] + (k[a] - 1) * d[a] * grid.stride[a] for a in (0, 1))
        return Field(Grid(size, grid.input_size, stride, start),  # type: ignore[arg-type]
                     grown, field.exact)  # type: ignore[arg-type]
    if size == grid.size:
        return Field(Grid(size, grid.input_size, grid.stride, grid.start), field.size,
                     field.exact)
    grown = tuple(field.size[a] + (_adaptive_window(grid.size[a], size[a]) - 1) * grid.stride[a]
                  if size[a] <= grid.size[a] else field.size[a] for a in (0, 1))
    return Field(Grid.centred(size, grid.input_size), grown, False)  # type: ignore[arg-type]


def union(fields: list[Field]) -> Field:
    """What a module with several map inputs sees: the union of their fields.

    Fields on one grid (same cells, jump and start: HMAX's C1 taking the max of
    two S1 scales) unite into the largest size per axis; inputs on different grids
    keep the first input's field, marked inexact.
    """
    first = fields[0]
    if len(fields) == 1:
        return first
    grid = first.grid
    if any(f.grid != grid for f in fields[1:]):
        return Field(grid, first.size, False, first.spatial)
    size = tuple(max(f.size[a] for f in fields) for a in (0, 1))
    return Field(grid, size, all(f.exact for f in fields), first.spatial)  # type: ignore[arg-type]


def whole(field: Field) -> Field:
    """The field of a unit that sees every cell of ``field``'s map (one cell, not spatial)."""
    grid = field.grid
    size = tuple(field.size[a] + (grid.size[a] - 1) * grid.stride[a] for a in (0, 1))
    centre = tuple(grid.start[a] + grid.stride[a] * (grid.size[a] - 1) / 2 for a in (0, 1))
    return Field(Grid((1, 1), grid.input_size, (math.nan, math.nan), centre),  # type: ignore[arg-type]
                 size, False, spatial=False)  # type: ignore[arg-type]


def layer_fields(model: nn.Module, layers: Mapping[str, str],
                 example: torch.Tensor) -> tuple[dict[str, Field], list[str]]:
    """The receptive field of every captured layer, and the layers in execution order.

    Args:
        model: The model (eval mode).
        layers: ``{layer name: module path}`` (``""`` = the model's output).
        example: ``Tensor[1, C, H, W]`` model input.

    Returns:
        ``({layer: Field}, execution order)``; a layer whose output has no spatial
        grid gets a non-spatial :class:`Field` (see :func:`whole`).

    Raises:
        ValueError: A layer did not run in the forward pass.
    """
    input_size = tuple(example.shape[-2:])
    fields: dict[int, Field] = {}
    by_size: dict[tuple[int, int], Field] = {}
    keep: list[torch.Tensor] = []  # keeps ids unique while the pass runs
    result: dict[str, Field] = {}
    order: list[str] = []
    paths = {path: name for name, path in layers.items()}
    image = Field(Grid.image(*input_size), (1.0, 1.0))  # type: ignore[arg-type]
    last = [image]

    def field_of(tensor: torch.Tensor) -> Field:
        if id(tensor) in fields:
            return fields[id(tensor)]
        size = tuple(tensor.shape[-2:])
        return by_size.get(size, Field(Grid.centred(size, input_size),  # type: ignore[arg-type]
                                       last[0].size, False))

    guessed: set[int] = set()  # outputs of modules that read a map made outside modules
    names_of: dict[int, list[str]] = {}  # the layers captured at each output

    ran: set[int] = set()

    def geometry(module: nn.Module) -> nn.Module:
        """The module whose kernel describes ``module``'s output.

        Itself, or, for a wrapper that applies its one convolution functionally
        (the child never ran), that child.
        """
        if hasattr(module, "kernel_size"):
            return module
        kernels = [m for m in module.modules() if m is not module and hasattr(m, "kernel_size")]
        if len(kernels) == 1 and id(kernels[0]) not in ran:
            return kernels[0]
        return module

    def hook(path: str):
        def record(module: nn.Module, inputs: tuple, output: object) -> None:
            ran.add(id(module))
            out = output[0] if isinstance(output, (tuple, list)) else output
            if not isinstance(out, torch.Tensor):
                return
            maps = [t for t in inputs if isinstance(t, torch.Tensor) and t.dim() == 4]
            shape = geometry(module)
            # a module applying a kernel functionally whose result passed through a child
            # (the Neocognitron's S-layer: its own convolution, then an identity) owns
            # that result: its kernel on its inputs, not the child's guess
            owns = (out.dim() == 4 and id(out) in guessed and hasattr(shape, "kernel_size")
                    and bool(maps) and all(id(t) in fields for t in maps))
            if owns:
                del fields[id(out)]
                guessed.discard(id(out))
            if out.dim() == 4 and id(out) not in fields:
                first = maps[0] if maps else None
                if any(id(t) not in fields for t in maps):
                    guessed.add(id(out))
                size = tuple(out.shape[-2:])
                container = shape is module and any(True for _ in module.children())
                if container and size in by_size:
                    # made by a functional op after the children (a residual sum):
                    # the most recent map of that size, as a consumer would see it
                    field = by_size[size]  # type: ignore[index]
                elif first is not None:
                    seen = union([field_of(t) for t in maps])
                    field = next_field(shape, seen, size)  # type: ignore[arg-type]
                else:
                    field = Field(Grid.centred(size, input_size),  # type: ignore[arg-type]
                                  whole(last[0]).size, False)
                fields[id(out)] = field
                by_size[size] = field  # type: ignore[index]
                last[0] = field
                keep.append(out)
            if owns:
                for name in names_of.get(id(out), []):
                    result[name] = fields[id(out)]
            if path in paths:
                name = paths[path]
                result[name] = fields[id(out)] if out.dim() == 4 else whole(last[0])
                names_of.setdefault(id(out), []).append(name)
                if name not in order:
                    order.append(name)
        return record

    fields[id(example)] = image
    by_size[input_size] = image  # type: ignore[index]
    handles = []
    try:
        with Capture(model, {}), torch.no_grad():
            for path, module in model.named_modules():
                handles.append(module.register_forward_hook(hook(path)))
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    missing = [n for n in layers if n not in result]
    if missing:
        raise ValueError(f"layer {missing[0]!r} did not run in a forward pass of the model")
    return result, order


def layer_grids(model: nn.Module, layers: Mapping[str, str],
                example: torch.Tensor) -> tuple[dict[str, Grid | None], list[str]]:
    """The grid of every captured layer (``None`` without a spatial grid), in execution order.

    :func:`layer_fields` without the sizes: what the equivariance analysis needs.
    """
    fields, order = layer_fields(model, layers, example)
    return {name: f.grid if f.spatial else None for name, f in fields.items()}, order


__all__ = ["Field", "layer_fields", "layer_grids", "next_field", "union", "whole"]
