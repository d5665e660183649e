"""Which convolution makes a layer, and its filters as cross-correlation kernels.

Pure functions of the model: the accumulator calls them in ``accumulator(context)``
(kernel sizes) and in ``finalize(context)`` (the weights), and keeps no module.
"""

from __future__ import annotations

import torch
from torch import nn

from probe.architecture import conv_for_layer


def layer_filters(conv: nn.Module) -> tuple[torch.Tensor, str]:
    """The filters of a convolution as cross-correlation kernels, one per output unit.

    ``Conv2d`` and ``DeformConv2d`` store ``[out, in/groups, h, w]`` already.
    ``ConvTranspose2d`` stores ``[in, out/groups, h, w]`` and applies each kernel
    flipped; its unit ``o`` is given the equivalent correlation kernel
    ``weight[group's inputs, o].flip(h, w)``.

    Returns:
        ``(Tensor[out, in/groups, h, w], kind)`` with kind ``conv``, ``transposed``
        or ``deformable``.
    """
    weight = conv.weight.detach()
    if weight.dim() != 4:
        raise ValueError(f"only 2-D convolutions have spatial filters, got weight shape "
                         f"{tuple(weight.shape)}")
    if isinstance(conv, nn.ConvTranspose2d):
        groups = conv.groups
        cin, out_per, h, w = weight.shape
        grouped = weight.reshape(groups, cin // groups, out_per, h, w).permute(0, 2, 1, 3, 4)
        return grouped.reshape(groups * out_per, cin // groups, h, w).flip(-2, -1), "transposed"
    kind = "deformable" if type(conv).__name__ == "DeformConv2d" else "conv"
    return weight, kind


def filters_module(model: nn.Module, path: str) -> nn.Module | None:
    """The 2-D convolution whose filters make a layer, or ``None``.

    Uses ``probe.architecture.conv_for_layer``, but a fully connected layer (or any
    layer after one, such as its ReLU) has no spatial filters even though a
    convolution precedes it in module order: those get ``None``.
    """
    try:
        conv = conv_for_layer(model, path)
    except KeyError:
        return None
    if conv is None or getattr(conv, "weight", None) is None or conv.weight.dim() != 4:
        return None
    last = None
    for name, module in model.named_modules():
        if module is conv or isinstance(module, nn.Linear):
            last = module
        if name == path:
            break
    return conv if last is conv else None


def kernel_sizes(model: nn.Module, paths: list[str]) -> list[tuple[int, int]]:
    """The distinct ``(h, w)`` kernel sizes of the layers' filters, sorted."""
    sizes = set()
    for path in paths:
        conv = filters_module(model, path)
        if conv is not None:
            sizes.add(tuple(int(v) for v in conv.weight.shape[-2:]))
    return sorted(sizes)


def size_key(size: tuple[int, int]) -> str:
    """The state key of a kernel size: ``(7, 7)`` → ``"7x7"``."""
    return f"{size[0]}x{size[1]}"
