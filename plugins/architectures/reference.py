"""Small reference networks with known equivariance, for tests and the docs.

- ``ref-circular``: 3×3 convolutions with circular padding, stride 1, ReLU,
  global average pooling and a linear head. Every captured map commutes
  exactly with circular shifts, and the output is exactly shift-invariant
  (REFERENCE §4.1, §4.3).
- ``ref-strided``: the same with a stride-2 downsampling step before each
  later stage (total stride ``2**stages``). ``downsample`` picks the step:
  ``stride`` (plain subsampling, as a stride-2 convolution does),
  ``avgpool`` (2×2 average pooling), ``maxpool`` (2×2 max pooling) or
  ``blurpool`` (binomial [1, 2, 1]² blur, then subsampling; Zhang 2019).
  The variants share their parameters (same ``state_dict``), so the same
  weights can be compared across downsampling rules.
- ``ref-blurpool``: ``ref-strided`` with ``downsample=blurpool``.

Weights are initialised from ``seed`` (deterministic builds).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from probe import ArchitectureSpec, Option, hookimpl


class Subsample(nn.Module):
    """Keep every ``stride``-th row and column (``Tensor[B, K, h, w] → [B, K, h/s, w/s]``)."""

    def __init__(self, stride: int = 2) -> None:
        super().__init__()
        self.kernel_size = 1
        self.stride = stride
        self.padding = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., ::self.stride, ::self.stride]


class BlurPool(nn.Module):
    """Binomial blur ([1, 2, 1]⊗[1, 2, 1] / 16, per channel, circular) then subsampling."""

    def __init__(self, stride: int = 2, padding_mode: str = "circular") -> None:
        super().__init__()
        self.kernel_size = 3
        self.stride = stride
        self.padding = 1
        self.padding_mode = padding_mode
        taps = torch.tensor([1.0, 2.0, 1.0])
        self.register_buffer("kernel", (taps[:, None] * taps[None, :] / 16.0)[None, None],
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mode = "circular" if self.padding_mode == "circular" else "constant"
        padded = F.pad(x, (1, 1, 1, 1), mode=mode)
        weight = self.kernel.to(x.dtype).expand(x.shape[1], 1, 3, 3)
        return F.conv2d(padded, weight, stride=self.stride, groups=x.shape[1])


def _downsample(kind: str, padding_mode: str) -> nn.Module:
    if kind == "stride":
        return Subsample(2)
    if kind == "avgpool":
        return nn.AvgPool2d(2)
    if kind == "maxpool":
        return nn.MaxPool2d(2)
    if kind == "blurpool":
        return BlurPool(2, padding_mode)
    raise ValueError(f"downsample must be stride/avgpool/maxpool/blurpool, got {kind!r}")


class ReferenceNet(nn.Module):
    """conv1 → [down_i → conv_{i+1}]×stages → global average pool → linear head.

    Input ``Tensor[B, in_channels, H, W]``; output ``Tensor[B, num_classes]``.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, channels: int = 8,
                 stages: int = 0, downsample: str = "stride", padding: str = "circular",
                 seed: int = 0) -> None:
        super().__init__()
        mode = "circular" if padding == "circular" else "zeros"
        width = channels
        self.conv1 = nn.Conv2d(in_channels, width, 3, padding=1, padding_mode=mode)
        self.relu1 = nn.ReLU()
        self.stages = stages
        for i in range(stages):
            self.add_module(f"down{i + 1}", _downsample(downsample, padding))
            self.add_module(f"conv{i + 2}", nn.Conv2d(width, width, 3, padding=1,
                                                      padding_mode=mode))
            self.add_module(f"relu{i + 2}", nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, num_classes)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for param in self.parameters():
                fan_in = param[0].numel() if param.dim() > 1 else width
                param.copy_(torch.randn(param.shape, generator=generator) / fan_in ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.conv1(x))
        for i in range(self.stages):
            x = getattr(self, f"down{i + 1}")(x)
            x = getattr(self, f"relu{i + 2}")(getattr(self, f"conv{i + 2}")(x))
        return self.head(self.pool(x).flatten(1))


def reference_layers(model: nn.Module) -> dict[str, str]:
    """Layer name → module path: each stage's post-ReLU map and each downsampling step."""
    layers = {"conv1": "relu1"}
    for i in range(getattr(model, "stages", 0)):
        layers[f"down{i + 1}"] = f"down{i + 1}"
        layers[f"conv{i + 2}"] = f"relu{i + 2}"
    layers["pool"] = "pool"
    layers["output"] = "head"
    return layers


def _options(stages: int, downsample: str) -> tuple[Option, ...]:
    return (
        Option("num_classes", int, 10, "number of output classes", minimum=2),
        Option("in_channels", int, 3, "input channels", minimum=1),
        Option("input_size", int, 32, "input side in pixels (any size works)", minimum=4),
        Option("width", float, 1.0, "channel multiplier: round(8 × width) channels, at least 1",
               minimum=0.01, maximum=64.0),
        Option("stages", int, stages, "stride-2 stages after the first convolution",
               minimum=0, maximum=6),
        Option("downsample", str, downsample, "downsampling step",
               choices=("stride", "avgpool", "maxpool", "blurpool")),
        Option("padding", str, "circular", "convolution padding",
               choices=("circular", "zeros")),
        Option("seed", int, 0, "seed of the weight initialisation"),
    )


def build_reference(num_classes: int, in_channels: int, input_size: int, width: float,
                    stages: int, downsample: str, padding: str, seed: int) -> ReferenceNet:
    """Build a :class:`ReferenceNet` (``input_size`` is recorded only; any size runs)."""
    channels = max(1, round(8 * width))
    return ReferenceNet(in_channels, num_classes, channels, stages, downsample, padding, seed)


@hookimpl
def probe_register_architectures(register):
    common = {"build": build_reference, "task": "classification", "family": "reference",
              "input_size": 32, "layers": reference_layers}
    register(ArchitectureSpec(
        name="ref-circular", options=_options(0, "stride"),
        description="circular-padded stride-1 CNN: exactly shift-equivariant", **common))
    register(ArchitectureSpec(
        name="ref-strided", options=_options(2, "stride"),
        description="circular CNN with stride-2 stages: equivariant to multiples of 2**stages",
        **common))
    register(ArchitectureSpec(
        name="ref-blurpool", options=_options(2, "blurpool"),
        description="ref-strided with binomial blur-pool downsampling (Zhang 2019)", **common))
