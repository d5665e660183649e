"""Where each captured layer's cells sit in the input: receptive-field arithmetic.

One forward pass on a single input records, for every module in execution
order, the grid of its output, following the convolution arithmetic of
Dumoulin & Visin (2018): a module with ``kernel_size`` k, ``stride`` s,
``padding`` p and ``dilation`` d maps a grid (start, stride j) to
(start + ((k − 1)·d/2 − p)·j, j·s); a transposed convolution divides the
stride. Modules that keep the size keep the grid; any other size change
(adaptive pooling, reshapes) falls back to a grid spread evenly over the input.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from probe.capture import Capture
from probe.grid import Grid


def _pair(value: object) -> tuple[float, float]:
    if isinstance(value, (tuple, list)):
        return float(value[0]), float(value[-1])
    return float(value), float(value)  # type: ignore[arg-type]


def _next_grid(module: nn.Module, grid: Grid, size: tuple[int, int]) -> Grid:
    """The grid of ``module``'s output given its input's grid."""
    has_kernel = all(hasattr(module, a) for a in ("kernel_size", "stride", "padding"))
    if has_kernel and not isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
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
        if isinstance(module, nn.ConvTranspose2d):
            start = tuple(grid.start[a] + grid.stride[a] * (p[a] - (k[a] - 1) * d[a] / 2) / s[a]
                          for a in (0, 1))
            stride = tuple(grid.stride[a] / s[a] for a in (0, 1))
        else:
            start = tuple(grid.start[a] + ((k[a] - 1) * d[a] / 2 - p[a]) * grid.stride[a]
                          for a in (0, 1))
            stride = tuple(grid.stride[a] * s[a] for a in (0, 1))
        return Grid(size, grid.input_size, stride, start)  # type: ignore[arg-type]
    if size == grid.size:
        return Grid(size, grid.input_size, grid.stride, grid.start)
    return Grid.centred(size, grid.input_size)


def layer_grids(model: nn.Module, layers: Mapping[str, str],
                example: torch.Tensor) -> tuple[dict[str, Grid | None], list[str]]:
    """The grid of every captured layer, and the layers in execution order.

    Args:
        model: The model (eval mode).
        layers: ``{layer name: module path}``.
        example: ``Tensor[1, C, H, W]`` model input.

    Returns:
        ``({layer: Grid, or None for outputs without a spatial grid}, execution order)``.
    """
    input_size = tuple(example.shape[-2:])
    grids: dict[int, Grid] = {}
    by_size: dict[tuple[int, int], Grid] = {}
    keep: list[torch.Tensor] = []
    result: dict[str, Grid | None] = {}
    order: list[str] = []
    paths = {path: name for name, path in layers.items()}

    def grid_of(tensor: torch.Tensor) -> Grid:
        size = tuple(tensor.shape[-2:])
        if id(tensor) in grids:
            return grids[id(tensor)]
        return by_size.get(size, Grid.centred(size, input_size))  # type: ignore[arg-type]

    def hook(path: str):
        def record(module: nn.Module, inputs: tuple, output: object) -> None:
            out = output[0] if isinstance(output, (tuple, list)) else output
            if not isinstance(out, torch.Tensor):
                return
            if out.dim() == 4:
                if id(out) in grids:
                    grid = grids[id(out)]
                else:
                    first = next((t for t in inputs if isinstance(t, torch.Tensor)
                                  and t.dim() == 4), None)
                    size = tuple(out.shape[-2:])
                    grid = (_next_grid(module, grid_of(first), size)  # type: ignore[arg-type]
                            if first is not None else Grid.centred(size, input_size))
                    grids[id(out)] = grid
                    by_size[size] = grid  # type: ignore[index]
                    keep.append(out)
            if path in paths:
                name = paths[path]
                result[name] = grids[id(out)] if out.dim() == 4 else None
                if name not in order:
                    order.append(name)
        return record

    image = Grid.image(*input_size)  # type: ignore[arg-type]
    grids[id(example)] = image
    by_size[input_size] = image  # type: ignore[index]
    handles = []
    try:
        with Capture(model, {}), torch.no_grad():
            for path, module in model.named_modules():
                is_leaf = not any(True for _ in module.children())
                if is_leaf or path in paths:
                    handles.append(module.register_forward_hook(hook(path)))
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    missing = [n for n in layers if n not in result]
    if missing:
        raise ValueError(f"layer {missing[0]!r} did not run in a forward pass of the model")
    return result, order
