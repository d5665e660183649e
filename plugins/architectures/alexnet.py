"""AlexNet (Krizhevsky, Sutskever & Hinton 2012), torchvision's single-tower layout.

``alexnet`` is torchvision's model module for module (``features``, ``avgpool``,
``classifier``; conv1 = 64 filters of 3×11×11, stride 4, padding 2), so a
torchvision AlexNet ``state_dict`` saved with ``torch.save`` loads unchanged
and gives identical outputs. ``alexnet_small`` is the same builder with
defaults for 64 px inputs that train on these machines: the first layer keeps
its large 11×11 kernels (where learned filters become Gabor-like and colour
blobs) but strides by 2 instead of 4, channels are halved and fc6/fc7 have 512
units. Departures from the 2012 paper, as in torchvision: one tower instead of
two, no local response normalisation, 64/192 instead of 96/256 filters in
conv1/conv2.

The adaptive average pool's side defaults to the natural feature side
(6 at 224 px, as in torchvision; 3 at 64 px). Layer names: ``conv1 … conv5``
(post-ReLU), ``pool1``, ``pool2``, ``pool5``, ``fc6``, ``fc7`` and ``fc8`` (logits).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import nn

from probe import ArchitectureSpec, Option, TrainRecipe, hookimpl
from probe.preprocessing import imagenet

#: torchvision's weights for this family expect ImageNet's statistics.
IMAGENET = imagenet()

#: torchvision's channels for conv1 … conv5.
CHANNELS = (64, 192, 384, 256, 256)

LAYERS = {"conv1": "features.1", "pool1": "features.2", "conv2": "features.4",
          "pool2": "features.5", "conv3": "features.7", "conv4": "features.9",
          "conv5": "features.11", "pool5": "features.12", "fc6": "classifier.2",
          "fc7": "classifier.5", "fc8": "classifier.6"}


def feature_side(input_size: int, kernel: int, stride: int, padding: int) -> int:
    """Side of the ``features`` output for a square input (convolution arithmetic)."""
    side = (input_size + 2 * padding - kernel) // stride + 1  # conv1
    for _ in range(3):  # pool1, pool2, pool5 (3×3, stride 2); conv2-5 keep the size
        side = (side - 3) // 2 + 1 if side >= 3 else 0
    return side


class AlexNet(nn.Module):
    """AlexNet with torchvision's module layout.

    Args:
        num_classes: Outputs of fc8.
        in_channels: Input channels.
        width: Channel multiplier for conv1-conv5.
        first_kernel, first_stride, first_padding: Geometry of conv1.
        pool_size: Side of the adaptive average pool.
        fc_width: Hidden units of fc6 and fc7.
        dropout: Dropout before fc6 and fc7.

    Shapes:
        ``Tensor[batch, in_channels, H, W]`` → ``Tensor[batch, num_classes]``.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, width: float = 1.0,
                 first_kernel: int = 11, first_stride: int = 4, first_padding: int = 2,
                 pool_size: int = 6, fc_width: int = 4096, dropout: float = 0.5) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = (max(1, round(c * width)) for c in CHANNELS)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=first_kernel, stride=first_stride,
                      padding=first_padding),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        self.avgpool = nn.AdaptiveAvgPool2d((pool_size, pool_size))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(c5 * pool_size * pool_size, fc_width),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(fc_width, fc_width),
            nn.ReLU(inplace=True),
            nn.Linear(fc_width, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def build_alexnet(num_classes: int = 1000, in_channels: int = 3, input_size: int = 224,
                  width: float = 1.0, first_kernel: int = 11, first_stride: int = 4,
                  first_padding: int | None = None, fc_width: int | None = None,
                  pool_size: int | None = None, dropout: float = 0.5) -> AlexNet:
    """Build AlexNet; ``None`` options take the values that fit ``input_size``.

    ``first_padding=None`` → 2 for torchvision's 11×11/4 conv1, else ``first_kernel // 2``;
    ``pool_size=None`` → the natural feature side, at most 6; ``fc_width=None`` →
    ``4096 × width``.

    Raises:
        ValueError: when the input is too small for conv1 and the three 3×3/2 pools.
    """
    if first_padding is None:
        first_padding = 2 if (first_kernel, first_stride) == (11, 4) else first_kernel // 2
    side = feature_side(input_size, first_kernel, first_stride, first_padding)
    if side < 1:
        raise ValueError(f"input_size {input_size} is too small for conv1 "
                         f"{first_kernel}×{first_kernel}/{first_stride} and three 3×3/2 pools "
                         f"(the feature map would be empty); use input_size >= 64 or a "
                         f"smaller first_stride")
    return AlexNet(num_classes, in_channels, width, first_kernel, first_stride, first_padding,
                   pool_size or min(side, 6), fc_width or max(1, round(4096 * width)), dropout)


def _options(input_size: int, width: float, first_stride: int, fc_width: int | None,
             dropout: float) -> tuple[Option, ...]:
    return (
        Option("num_classes", int, 1000, "outputs of fc8", minimum=1),
        Option("in_channels", int, 3, "input channels", minimum=1),
        Option("input_size", int, input_size, "input side in pixels (sets the pool size)",
               minimum=16),
        Option("width", float, width, "channel multiplier for conv1-conv5", minimum=0.01,
               maximum=4.0),
        Option("first_kernel", int, 11, "conv1 kernel side", minimum=1),
        Option("first_stride", int, first_stride, "conv1 stride", minimum=1),
        Option("first_padding", int, None,
               "conv1 padding (default 2 for 11×11/4, else first_kernel // 2)", minimum=0),
        Option("fc_width", int, fc_width, "hidden units of fc6/fc7 (default 4096 × width)",
               minimum=1),
        Option("pool_size", int, None, "adaptive-pool side (default: natural side, at most 6)",
               minimum=1),
        Option("dropout", float, dropout, "dropout before fc6 and fc7", minimum=0.0,
               maximum=1.0),
    )


#: AlexNet on the parts world (64 px): ``alexnet_small``'s defaults, flips against
#: overfitting (measured: 95.8 % in 24 epochs; 93.9 % in 16 epochs without flips).
PARTS_RECIPE = TrainRecipe(dataset="parts", dataset_options={}, epochs=24, batch_size=32,
                           lr=1e-3, augment=True)
SMALL_OPTIONS = {"width": 0.5, "first_stride": 2, "fc_width": 512, "dropout": 0.3}


@hookimpl
def probe_register_architectures(register):
    register(ArchitectureSpec(
        name="alexnet", build=build_alexnet, task="classification", family="alexnet",
        input_size=224, options=_options(224, 1.0, 4, None, 0.5), layers=lambda m: LAYERS,
        description="AlexNet (Krizhevsky et al. 2012), torchvision layout and state_dict keys",
        train=replace(PARTS_RECIPE, arch_options=SMALL_OPTIONS), preprocessing=IMAGENET))
    register(ArchitectureSpec(
        name="alexnet_small", build=build_alexnet, task="classification", family="alexnet",
        input_size=64, options=_options(64, 0.5, 2, 512, 0.3), layers=lambda m: LAYERS,
        description="AlexNet for 32-64 px inputs: 11×11 conv1 at stride 2, half width",
        train=PARTS_RECIPE))
