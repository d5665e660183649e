"""LeNet-5 (LeCun, Bottou, Bengio & Haffner 1998), with the original C3 connection table.

32×32 input; C1 6@5×5 → S2 2×2 subsampling → C3 16@5×5 → S4 → C5 120@5×5 →
F6 84 → output. The original's scaled tanh and trainable subsampling are
approximated by ``tanh`` (or ``relu``) and average pooling; the partial C3
connection table (Table I of the paper) is available with ``c3_table=true``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from probe import ArchitectureSpec, Option, Register, TrainRecipe, hookimpl

#: Table I of LeCun et al. (1998): which S2 maps feed each C3 map.
C3_TABLE: tuple[tuple[int, ...], ...] = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5), (0, 1, 2, 3, 4, 5),
)


class PartialConv2d(nn.Conv2d):
    """A convolution whose input-output connections follow a fixed table.

    The weight keeps the full ``[out, in, k, k]`` shape (so ``state_dict`` keys and
    shapes stay standard); absent connections are masked to zero in every forward.
    """

    def __init__(self, table: tuple[tuple[int, ...], ...], in_channels: int,
                 kernel_size: int) -> None:
        super().__init__(in_channels, len(table), kernel_size)
        mask = torch.zeros(len(table), in_channels, 1, 1)
        for out_channel, inputs in enumerate(table):
            mask[out_channel, list(inputs)] = 1.0
        self.register_buffer("connection", mask, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.connection, self.bias)


class LeNet5(nn.Module):
    """LeNet-5 for ``Tensor[batch, in_channels, 32, 32]`` inputs."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, activation: str = "tanh",
                 c3_table: bool = False) -> None:
        super().__init__()
        act = nn.Tanh if activation == "tanh" else nn.ReLU
        self.c1 = nn.Conv2d(in_channels, 6, 5)
        self.act1 = act()
        self.s2 = nn.AvgPool2d(2)
        self.c3 = PartialConv2d(C3_TABLE, 6, 5) if c3_table else nn.Conv2d(6, 16, 5)
        self.act3 = act()
        self.s4 = nn.AvgPool2d(2)
        self.c5 = nn.Conv2d(16, 120, 5)
        self.act5 = act()
        self.f6 = nn.Linear(120, 84)
        self.act6 = act()
        self.output = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.s2(self.act1(self.c1(x)))
        x = self.s4(self.act3(self.c3(x)))
        x = self.act5(self.c5(x)).flatten(1)
        return self.output(self.act6(self.f6(x)))


#: Layer name → module path (post-activation outputs).
LENET_LAYERS = {"c1": "act1", "s2": "s2", "c3": "act3", "s4": "s4", "c5": "act5",
                "f6": "act6", "output": "output"}


def build_lenet5(num_classes: int, in_channels: int, input_size: int, activation: str,
                 c3_table: bool) -> LeNet5:
    """Build LeNet-5; ``input_size`` must be 32 (the network's geometry is fixed)."""
    if input_size != 32:
        raise ValueError(f"lenet5 needs 32×32 inputs, got input_size={input_size}")
    return LeNet5(num_classes, in_channels, activation, c3_table)


@hookimpl
def probe_register_architectures(register: Register) -> None:
    register(ArchitectureSpec(
        name="lenet5",
        build=build_lenet5,
        task="classification",
        family="lenet",
        input_size=32,
        in_channels=1,
        options=(
            Option("num_classes", int, 10, "number of output classes", minimum=2),
            Option("in_channels", int, 1, "input channels", minimum=1),
            Option("input_size", int, 32, "input side in pixels (fixed at 32)", choices=(32,)),
            Option("activation", str, "tanh", "non-linearity", choices=("tanh", "relu")),
            Option("c3_table", bool, False, "use the original partial C3 connection table"),
        ),
        layers=lambda model: LENET_LAYERS,
        description="LeNet-5 (LeCun et al. 1998), 32×32 input",
        train=TrainRecipe(dataset="digits", dataset_options={"split": "train"}, epochs=30,
                          batch_size=32, lr=2e-3),
    ))
