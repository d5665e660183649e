"""DeconvNet for semantic segmentation (Noh, Hong & Han 2015).

Encoder: VGG16's 13 convolutions in five blocks (fewer with ``depth``), each
block ending in a 2×2 max-pool that records its switches (the argmax
positions, ``MaxPool2d(return_indices=True)``); then fc6 (a ``k×k`` valid
convolution, ``k`` = the bottom feature side, at most 7 as in the paper) and fc7
(1×1). Decoder, the mirror image: a ``k×k`` transposed convolution undoing fc6,
then per block an unpooling (``MaxUnpool2d``: each value goes back to the
position its switch recorded, zeros elsewhere) followed by 3×3 transposed
convolutions mirroring the block's convolutions. A 1×1 convolution gives the
per-pixel class map ``Tensor[B, num_classes, H, W]``. As in the paper, batch
normalisation follows every convolution and deconvolution (``batch_norm``).
Departures: no dropout at fc6/fc7, widths scale with ``width``; the paper's
edge-box proposals and CRF post-processing are out of scope.

Layer names: ``enc1_1 … enc5_3``, ``pool1 … pool5``, ``fc6``, ``fc7``,
``deconv_fc6``, ``unpool5``, ``dec5_3 … dec1_1`` (``decX_Y`` mirrors ``encX_Y``)
and ``score``.
"""

from __future__ import annotations

import torch
from torch import nn

from probe import ArchitectureSpec, Option, TrainRecipe, hookimpl

#: VGG16 (config D) channels per block.
BLOCKS: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256, 256, 256),
                                       (512, 512, 512), (512, 512, 512))


class Block(nn.Sequential):
    """``conv`` (or transposed conv) → optional ``bn`` → ``relu``, with stable child names."""

    def __init__(self, conv: nn.Module, channels: int, batch_norm: bool) -> None:
        super().__init__()
        self.conv = conv
        if batch_norm:
            self.bn = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)


class DeconvNet(nn.Module):
    """Encoder with pool switches, mirrored unpool/deconvolution decoder, class map.

    Args:
        num_classes: Classes of the per-pixel map.
        in_channels: Input channels.
        input_size: Input side; sets the fc6 kernel (bottom side, at most 7).
        depth: Number of encoder blocks (1-5) taken from VGG16.
        width: Channel multiplier.
        fc_width: Channels of fc6/fc7 (default ``4096 × width``).
        batch_norm: Batch norm after every (de)convolution.

    Shapes:
        ``Tensor[B, in_channels, H, W]`` (H, W divisible by ``2**depth``) →
        ``Tensor[B, num_classes, H, W]``.
    """

    def __init__(self, num_classes: int = 21, in_channels: int = 3, input_size: int = 224,
                 depth: int = 5, width: float = 1.0, fc_width: int | None = None,
                 batch_norm: bool = True) -> None:
        super().__init__()
        if not 1 <= depth <= len(BLOCKS):
            raise ValueError(f"depth must be in 1..{len(BLOCKS)}, got {depth}")
        if input_size % (2 ** depth):
            raise ValueError(f"input_size must be divisible by 2**depth = {2 ** depth}, "
                             f"got {input_size}")
        self.depth = depth
        blocks = [[max(1, round(c * width)) for c in block] for block in BLOCKS[:depth]]
        encoder: dict[str, nn.Module] = {}
        channels = in_channels
        for b, block in enumerate(blocks, start=1):
            for i, out in enumerate(block, start=1):
                encoder[f"enc{b}_{i}"] = Block(nn.Conv2d(channels, out, 3, padding=1), out,
                                               batch_norm)
                channels = out
            encoder[f"pool{b}"] = nn.MaxPool2d(2, 2, return_indices=True)
        self.encoder = nn.ModuleDict(encoder)
        bottom = min(input_size // 2 ** depth, 7)
        fc = fc_width or max(1, round(4096 * width))
        self.fc6 = Block(nn.Conv2d(channels, fc, bottom), fc, batch_norm)
        self.fc7 = Block(nn.Conv2d(fc, fc, 1), fc, batch_norm)
        self.deconv_fc6 = Block(nn.ConvTranspose2d(fc, channels, bottom), channels, batch_norm)
        decoder: dict[str, nn.Module] = {}
        for b in range(depth, 0, -1):
            decoder[f"unpool{b}"] = nn.MaxUnpool2d(2, 2)
            block = blocks[b - 1]
            # dec{b}_{i} mirrors enc{b}_{i}: from enc's output channels back to its input
            # channels; dec1_1 stays at block 1's width (the score layer maps to classes).
            ins = [blocks[b - 2][-1] if b > 1 else block[0], *block[:-1]]
            for i in range(len(block), 0, -1):
                out = ins[i - 1]
                decoder[f"dec{b}_{i}"] = Block(
                    nn.ConvTranspose2d(block[i - 1], out, 3, padding=1), out, batch_norm)
        self.decoder = nn.ModuleDict(decoder)
        self.score = nn.Conv2d(blocks[0][0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        switches: list[tuple[torch.Tensor, torch.Size]] = []
        for name, module in self.encoder.items():
            if name.startswith("pool"):
                size = x.shape
                x, indices = module(x)
                switches.append((indices, size))
            else:
                x = module(x)
        x = self.deconv_fc6(self.fc7(self.fc6(x)))
        for name, module in self.decoder.items():
            if name.startswith("unpool"):
                indices, size = switches.pop()
                x = module(x, indices, output_size=size[-2:])
            else:
                x = module(x)
        return self.score(x)


def deconvnet_layers(model: nn.Module) -> dict[str, str]:
    """``{enc1_1: encoder.enc1_1.relu, pool1: encoder.pool1, …, score: score}``."""
    layers: dict[str, str] = {}
    for part in ("encoder", None, "decoder"):
        if part is None:
            for name in ("fc6", "fc7", "deconv_fc6"):
                layers[name] = f"{name}.relu"
            continue
        for name, module in getattr(model, part).items():
            layers[name] = f"{part}.{name}.relu" if isinstance(module, Block) else f"{part}.{name}"
    layers["score"] = "score"
    return layers


def build_deconvnet(num_classes: int = 21, in_channels: int = 3, input_size: int = 224,
                    depth: int = 5, width: float = 1.0, fc_width: int | None = None,
                    batch_norm: bool = True) -> DeconvNet:
    """Build a DeconvNet (see :class:`DeconvNet`)."""
    return DeconvNet(num_classes, in_channels, input_size, depth, width, fc_width, batch_norm)


@hookimpl
def probe_register_architectures(register):
    register(ArchitectureSpec(
        name="deconvnet", build=build_deconvnet, task="segmentation", family="deconvnet",
        input_size=224, in_channels=3,
        options=(
            Option("num_classes", int, 21, "classes of the per-pixel map (incl. background)",
                   minimum=2),
            Option("in_channels", int, 3, "input channels", minimum=1),
            Option("input_size", int, 224, "input side, divisible by 2**depth", minimum=2),
            Option("depth", int, 5, "encoder blocks taken from VGG16", minimum=1, maximum=5),
            Option("width", float, 1.0, "channel multiplier", minimum=0.01, maximum=4.0),
            Option("fc_width", int, None, "channels of fc6/fc7 (default 4096 × width)",
                   minimum=1),
            Option("batch_norm", bool, True, "batch norm after every (de)convolution"),
        ),
        layers=deconvnet_layers,
        description="DeconvNet (Noh et al. 2015): VGG16 encoder with pool switches, "
                    "unpool + deconv decoder",
        train=TrainRecipe(dataset="parts", dataset_options={}, epochs=11, batch_size=16,
                          lr=3e-3, augment=True,
                          arch_options={"depth": 4, "width": 0.125, "fc_width": 64})))
