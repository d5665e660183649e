"""Deformable ConvNets (Dai et al. 2017; v2 modulation: Zhu et al. 2019) on a VGG backbone.

A deformable convolution samples its input at learned offsets,
``y(p0) = Σ_n w(p_n) · x(p0 + p_n + Δp_n)`` (bilinear sampling), the offsets
``Δp`` predicted by an extra 3×3 convolution from the same input. v2 multiplies
each sample by a modulation scalar ``Δm_n = sigmoid(·)`` from another 3×3
convolution. Both predictors are initialised to zero, as in both papers: at
initialisation every offset is 0 (the layer is the plain convolution) and, with
``modulated=true``, every mask value is ``sigmoid(0) = 0.5``.

The chosen 3×3 convolutions of a VGG (default: every conv of the last block,
conv5, where Dai et al. deform the last three 3×3 convs of ResNet-101) are
replaced; everything else is :mod:`vgg` unchanged. Offsets and masks are layers
of their own, ``conv5_1.offset`` (``Tensor[B, 2·3·3, H, W]``, (Δy, Δx) pairs in
torchvision's order) and ``conv5_1.mask`` (``Tensor[B, 3·3, H, W]``, after the
sigmoid), so an analysis can study where the network samples. Departure: the
paper's offsets come from one convolution with ``3·k²`` outputs in v2; two
separate convolutions are the same function with the outputs split.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from probe import ArchitectureSpec, Option, hookimpl

from .vgg import CFGS, PARTS_RECIPE, VGG, build_vgg, conv_names, vgg_layers, vgg_options


class Scale(nn.Module):
    """Multiply by a constant (``Tensor[...]`` → same shape); a module so it can be hooked."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.factor == 1.0 else x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class DeformableConv2d(nn.Module):
    """A 3×3 deformable convolution with its own offset (and mask) predictor.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        kernel_size: Kernel side.
        padding: Zero padding (``kernel_size // 2`` keeps the size).
        modulated: Add the v2 modulation mask.
        offset_scale: The offsets are ``offset_scale × offset_conv(x)``. Under Adam this
            is the paper's learning-rate multiplier β for the offset layers (Adam's step
            does not depend on the gradient's scale, so the offsets move ``β`` times as
            fast); 1 = the plain parametrisation.

    Shapes:
        ``Tensor[B, in_channels, H, W]`` → ``Tensor[B, out_channels, H, W]``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3,
                 padding: int = 1, modulated: bool = False, offset_scale: float = 1.0) -> None:
        super().__init__()
        taps = kernel_size * kernel_size
        # Registration order matters: `conv` is registered last, so the conv found
        # behind this block's activation (probe.architecture.conv_for_layer) is it.
        self.offset_conv = nn.Conv2d(in_channels, 2 * taps, kernel_size, padding=padding)
        self.offset = Scale(offset_scale)  # its output is the offsets the conv uses
        self.modulated = modulated
        if modulated:
            self.mask_logits = nn.Conv2d(in_channels, taps, kernel_size, padding=padding)
            self.mask = nn.Sigmoid()
        from torchvision.ops import DeformConv2d  # imported when a model is built (seconds)

        self.conv = DeformConv2d(in_channels, out_channels, kernel_size, padding=padding)
        self.reset_offsets()

    @property
    def out_channels(self) -> int:
        """Output channels (for builders that read it off the last convolution)."""
        return self.conv.out_channels

    @property
    def capturable(self) -> tuple[str, ...]:
        """Sub-module paths whose outputs are layers of their own."""
        return ("offset", "mask") if self.modulated else ("offset",)

    def reset_offsets(self) -> None:
        """Zero the offset (and mask) predictors: offsets 0, masks ``sigmoid(0) = 0.5``."""
        predictors = [self.offset_conv, self.mask_logits] if self.modulated else \
            [self.offset_conv]
        for predictor in predictors:
            nn.init.zeros_(predictor.weight)
            nn.init.zeros_(predictor.bias)

    def adapt_state_dict(self, state: dict[str, torch.Tensor], prefix: str) -> None:
        """Accept a plain convolution's weights at this block's place (zero offsets).

        ``prefix + "weight"`` / ``"bias"`` become ``conv.weight`` / ``conv.bias``, and
        absent offset (and mask) predictors take their initial zeros, so the block
        computes exactly the plain convolution: a VGG checkpoint initialises the
        deformable VGG of the same configuration, as Dai et al. start from a
        pretrained plain network. Entries already in this block's layout are kept.
        """
        if f"{prefix}conv.weight" in state or f"{prefix}weight" not in state:
            return
        for name in ("weight", "bias"):
            if f"{prefix}{name}" in state:
                state[f"{prefix}conv.{name}"] = state.pop(f"{prefix}{name}")
        for name, tensor in self.state_dict().items():
            if not name.startswith("conv."):
                state.setdefault(f"{prefix}{name}", torch.zeros_like(tensor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset = self.offset(self.offset_conv(x))
        mask = self.mask(self.mask_logits(x)) if self.modulated else None
        return self.conv(x, offset, mask)


#: Registry name → (VGG configuration, conv layers made deformable by default).
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "deform_vgg11": ("A", ("conv5_1", "conv5_2")),
    "deform_vgg16": ("D", ("conv5_1", "conv5_2", "conv5_3")),
}


def build_deform_vgg(cfg: str, *, deformable: tuple[str, ...], modulated: bool = False,
                     batch_norm: bool = False, offset_scale: float = 1.0,
                     **options: object) -> VGG:
    """A VGG whose named 3×3 convolutions are deformable.

    Raises:
        ValueError: when a name in ``deformable`` is not a convolution of ``cfg``.
    """
    known = conv_names(CFGS[cfg])
    unknown = [name for name in deformable if name not in known]
    if unknown:
        raise ValueError(f"deformable layers must be among {known}, got {unknown[0]!r}")
    chosen = set(deformable)

    def factory(name: str, in_channels: int, out_channels: int) -> nn.Module | None:
        if name not in chosen:
            return None
        return DeformableConv2d(in_channels, out_channels, 3, 1, modulated, offset_scale)

    return build_vgg(cfg, batch_norm, conv_factory=factory, **options)  # type: ignore[arg-type]


def _spec(name: str, cfg: str, default: tuple[str, ...]) -> ArchitectureSpec:
    def build(deformable: tuple[str, ...], modulated: bool, batch_norm: bool,
              offset_scale: float, **options: object) -> VGG:
        return build_deform_vgg(cfg, deformable=deformable, modulated=modulated,
                                batch_norm=batch_norm, offset_scale=offset_scale, **options)

    return ArchitectureSpec(
        name=name, build=build, task="classification", family="deformable",
        input_size=224, in_channels=3,
        options=(*vgg_options(),
                 Option("deformable", tuple, default, "3×3 convs made deformable",
                        item_type=str),
                 Option("modulated", bool, False, "v2 modulation mask (sigmoid, starts at 0.5)"),
                 Option("batch_norm", bool, False, "batch norm after every convolution"),
                 Option("offset_scale", float, 1.0, "offsets = offset_scale × predictor output "
                        "(the offset layers' learning-rate multiplier under Adam)",
                        minimum=0.0)),
        layers=vgg_layers,
        description=f"VGG config {cfg} with deformable 3×3 convs (Dai et al. 2017; "
                    "offsets as layers)",
        train=replace(PARTS_RECIPE, arch_options={**PARTS_RECIPE.arch_options,
                                                  "batch_norm": True, "offset_scale": 0.01}))


@hookimpl
def probe_register_architectures(register):
    for name, (cfg, default) in VARIANTS.items():
        register(_spec(name, cfg, default))
