"""VGG (Simonyan & Zisserman 2014): configurations A/B/D/E as one table plus one builder.

The module layout follows torchvision's ``models/vgg.py`` exactly (``features``,
``avgpool``, ``classifier`` with the same indices), so a torchvision VGG
``state_dict`` saved with ``torch.save`` loads unchanged and gives identical
outputs. Additions, all defaulting to torchvision's values:

* ``width``: multiplies every convolution's channel count (``round``, at least 1);
* ``input_size``: the adaptive average pool's output side defaults to the
  natural feature-map side ``input_size // 32`` capped at 7 (7 at 224 px, as in
  torchvision; 2 at 64 px; 1 at 32 px), so small inputs get a small classifier;
* ``fc_width``: hidden width of fc6/fc7 (default ``4096 × width``).

Layer names are the paper's: ``conv1_1 … conv5_3``, ``pool1 … pool5``, ``fc6``,
``fc7`` (post-ReLU outputs) and ``fc8`` (the logits).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from probe import ArchitectureSpec, Option, TrainRecipe, hookimpl
from probe.preprocessing import imagenet


def _conv_types() -> tuple[type[nn.Module], ...]:
    """The convolution modules a VGG may hold (torchvision imported only when a model is built).

    Importing torchvision costs seconds, so ``probe plugins`` and ``probe --help``
    must not pay for it at plugin load.
    """
    from torchvision.ops import DeformConv2d

    return (nn.Conv2d, DeformConv2d)


#: torchvision's weights for this family expect ImageNet's statistics.
IMAGENET = imagenet()

#: Table 1 of the paper: channels per 3×3 convolution, ``"M"`` = 2×2 max-pool.
CFGS: dict[str, list[int | str]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M",
          512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}

#: Registry name → configuration letter.
VARIANTS = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}

#: ``conv_factory(layer name, in channels, out channels) -> module`` for one 3×3 conv.
ConvFactory = Callable[[str, int, int], nn.Module]


def scaled(channels: int, width: float) -> int:
    """``channels × width`` rounded, at least 1."""
    return max(1, round(channels * width))


def conv_names(cfg: list[int | str]) -> list[str]:
    """``conv{block}_{index}`` for every convolution of ``cfg``, in order."""
    names, block, index = [], 1, 0
    for item in cfg:
        if item == "M":
            block, index = block + 1, 0
        else:
            index += 1
            names.append(f"conv{block}_{index}")
    return names


def make_layers(cfg: list[int | str], batch_norm: bool = False, in_channels: int = 3,
                width: float = 1.0, conv_factory: ConvFactory | None = None) -> nn.Sequential:
    """The ``features`` stack of ``cfg``: ``[conv, (bn), relu]`` per entry, ``MaxPool2d`` per "M".

    Args:
        cfg: A column of :data:`CFGS`.
        batch_norm: Insert ``BatchNorm2d`` after each convolution.
        in_channels: Input channels.
        width: Channel multiplier.
        conv_factory: Builds the convolution for the named layers it wants to replace
            (the deformable variants); returns ``None`` for a plain ``Conv2d``.
    """
    layers: list[nn.Module] = []
    names = iter(conv_names(cfg))
    channels = in_channels
    for item in cfg:
        if item == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        out = scaled(int(item), width)
        conv = conv_factory(next(names), channels, out) if conv_factory else None
        if conv is None:
            conv = nn.Conv2d(channels, out, kernel_size=3, padding=1)
        layers.append(conv)
        if batch_norm:
            layers.append(nn.BatchNorm2d(out))
        layers.append(nn.ReLU(inplace=True))
        channels = out
    return nn.Sequential(*layers)


def natural_pool_size(input_size: int, halvings: int, cap: int) -> int:
    """Side of the feature map after ``halvings`` floor-halvings, capped at ``cap``.

    Raises:
        ValueError: when the input is too small to survive the halvings.
    """
    side = input_size
    for _ in range(halvings):
        side //= 2
    if side < 1:
        raise ValueError(f"input_size must be >= {2 ** halvings} for {halvings} 2×2 pools, "
                         f"got {input_size}")
    return min(side, cap)


class VGG(nn.Module):
    """VGG with torchvision's module layout.

    Args:
        features: The convolutional stack (:func:`make_layers`).
        num_classes: Outputs of fc8.
        pool_size: Side of the adaptive average pool before the classifier.
        fc_width: Hidden units of fc6 and fc7.
        dropout: Dropout probability before fc7 and fc8.
        init_weights: torchvision's initialisation (Kaiming for convs, N(0, 0.01) for fcs).

    Shapes:
        ``Tensor[batch, in_channels, H, W]`` → ``Tensor[batch, num_classes]``.
    """

    def __init__(self, features: nn.Sequential, num_classes: int = 1000, pool_size: int = 7,
                 fc_width: int = 4096, dropout: float = 0.5, init_weights: bool = True) -> None:
        super().__init__()
        self.features = features
        convs = _conv_types()
        channels = [m.out_channels for m in features.modules() if isinstance(m, convs)]
        self.avgpool = nn.AdaptiveAvgPool2d((pool_size, pool_size))
        self.classifier = nn.Sequential(
            nn.Linear(channels[-1] * pool_size * pool_size, fc_width),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(fc_width, fc_width),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(fc_width, num_classes),
        )
        if init_weights:
            for m in self.modules():
                if isinstance(m, convs):
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                    if m.bias is not None:
                        nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, 0, 0.01)
                    nn.init.constant_(m.bias, 0)
            for m in self.modules():  # zero-initialised offset predictors stay zero
                reset = getattr(m, "reset_offsets", None)
                if callable(reset):
                    reset()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


def build_vgg(cfg: str, batch_norm: bool, *, num_classes: int = 1000, in_channels: int = 3,
              input_size: int = 224, width: float = 1.0, fc_width: int | None = None,
              pool_size: int | None = None, dropout: float = 0.5,
              conv_factory: ConvFactory | None = None) -> VGG:
    """Build VGG configuration ``cfg`` (``"A"``, ``"B"``, ``"D"``, ``"E"``).

    Args:
        pool_size: ``None`` = the natural feature side (``input_size // 32``, at most 7).
        fc_width: ``None`` = ``4096 × width``.
    """
    if cfg not in CFGS:
        raise ValueError(f"cfg must be one of {sorted(CFGS)}, got {cfg!r}")
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    halvings = CFGS[cfg].count("M")
    pool = pool_size or natural_pool_size(input_size, halvings, 7)
    features = make_layers(CFGS[cfg], batch_norm, in_channels, width, conv_factory)
    return VGG(features, num_classes, pool, fc_width or scaled(4096, width), dropout)


def vgg_layers(model: nn.Module) -> dict[str, str]:
    """``{conv1_1: features.1, …, pool5: features.N, fc6: classifier.1, fc7: classifier.4,
    fc8: classifier.6}`` read off the model; deformable convs add ``<name>.offset`` (and
    ``<name>.mask``)."""
    layers: dict[str, str] = {}
    block, index = 1, 0
    current = ""
    for position, module in enumerate(model.features):
        path = f"features.{position}"
        if isinstance(module, nn.MaxPool2d):
            layers[f"pool{block}"] = path
            block, index = block + 1, 0
        elif isinstance(module, nn.ReLU):
            layers[current] = path
        elif isinstance(module, nn.BatchNorm2d):
            continue
        else:  # a convolution, plain or deformable
            index += 1
            current = f"conv{block}_{index}"
            for part in getattr(module, "capturable", ()):
                layers[f"{current}.{part}"] = f"{path}.{part}"
    layers.update({"fc6": "classifier.1", "fc7": "classifier.4", "fc8": "classifier.6"})
    return layers


def vgg_options(input_size: int = 224, num_classes: int = 1000) -> tuple[Option, ...]:
    """The options shared by every VGG-shaped architecture."""
    return (
        Option("num_classes", int, num_classes, "outputs of fc8", minimum=1),
        Option("in_channels", int, 3, "input channels", minimum=1),
        Option("input_size", int, input_size, "input side in pixels (sets the pool size)",
               minimum=32),
        Option("width", float, 1.0, "channel multiplier for every convolution",
               minimum=0.01, maximum=4.0),
        Option("fc_width", int, None, "hidden units of fc6/fc7 (default 4096 × width)",
               minimum=1),
        Option("pool_size", int, None,
               "adaptive-pool side before fc6 (default input_size // 32, at most 7)", minimum=1),
        Option("dropout", float, 0.5, "dropout before fc7 and fc8", minimum=0.0, maximum=1.0),
    )


#: Small VGG on the parts world: 64 px, eighth width, 128 hidden units (vgg11_bn, 12
#: epochs: 98.5 % test accuracy in 30 s on an idle 2-core machine; 10 epochs gave
#: 94.9-97.3 % depending on the seed). The plain variants, without batch
#: norm, get a lower learning rate (not measured: plain VGGs start slowly from scratch).
PARTS_RECIPE = TrainRecipe(dataset="parts", dataset_options={}, epochs=12, batch_size=32,
                           lr=2e-3, arch_options={"width": 0.125, "fc_width": 128,
                                                  "dropout": 0.3})
PLAIN_RECIPE = replace(PARTS_RECIPE, lr=5e-4)


def _spec(name: str, cfg: str, batch_norm: bool) -> ArchitectureSpec:
    def build(**options: object) -> VGG:
        return build_vgg(cfg, batch_norm, **options)  # type: ignore[arg-type]

    convs = len(conv_names(CFGS[cfg]))
    return ArchitectureSpec(
        name=name, build=build, task="classification", family="vgg", input_size=224,
        in_channels=3, options=vgg_options(), layers=vgg_layers,
        description=f"VGG config {cfg} ({convs} convs + 3 fcs{', batch norm' if batch_norm else ''}"
                    "; torchvision state_dict keys)",
        train=PARTS_RECIPE if batch_norm else PLAIN_RECIPE,
        preprocessing=IMAGENET)


@hookimpl
def probe_register_architectures(register):
    for name, cfg in VARIANTS.items():
        register(_spec(name, cfg, batch_norm=False))
        register(_spec(f"{name}_bn", cfg, batch_norm=True))
