"""The LeNet of 1989: LeCun, Boser, Denker, Henderson, Howard, Hubbard & Jackel,
"Backpropagation applied to handwritten zip code recognition", Neural Computation
1(4):541–551, 1989.

16×16 input → H1 12 maps 8×8 (5×5 kernels, stride 2) → H2 12 maps 4×4 (5×5, stride 2,
each map connected to 8 of the 12 H1 maps) → H3 30 units → 10 outputs, tanh.
As in the paper, the weights of a map are shared but every unit has its own bias:
H1 has 768 units and 1,068 free parameters (768 biases + 12 kernels of 25), H2 192
units and 2,592 (192 biases + 12 × 8 × 25), H3 5,790, the output 310; 9,760 in all.

Departures: the paper does not list which 8 H1 maps feed each H2 map; here map ``j``
reads the 8 cyclically consecutive maps ``j, j+1, …, j+7 (mod 12)`` (:data:`H2_TABLE`),
so every H1 map also feeds 8 H2 maps. Inputs of another size are resized to 16×16
by the model itself (area averaging down, bilinear up); the recipe draws ``digits`` at 16×16
(``image_size=16``: the 8×8 digits resized to 14×14 and centred), so nothing is
resized there. The border is zero padding of the normalised
input (the paper extends the plane with background). The output layer is linear
(logits for ``probe train``'s cross-entropy; the paper trained tanh outputs with a
squared error and a diagonal Newton method). Plain ``tanh`` instead of the scaled one.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from probe import ArchitectureSpec, Option, Register, TrainRecipe, hookimpl

#: Which H1 maps feed each H2 map (8 of 12; the paper does not publish its choice).
H2_TABLE: tuple[tuple[int, ...], ...] = tuple(
    tuple(sorted((j + i) % 12 for i in range(8))) for j in range(12))


class LocalBiasConv2d(nn.Module):
    """A convolution with shared weights, one bias per output unit and an optional
    fixed connection table (absent input maps masked to zero in every forward, so
    their weights get zero gradient and stay at their initial zero)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int, out_size: int,
                 table: tuple[tuple[int, ...], ...] | None = None) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                              bias=False)
        self.bias = nn.Parameter(torch.zeros(out_channels, out_size, out_size))
        mask = torch.ones(out_channels, in_channels, 1, 1)
        if table is not None:
            mask.zero_()
            for out_channel, inputs in enumerate(table):
                mask[out_channel, list(inputs)] = 1.0
        self.register_buffer("connection", mask, persistent=False)
        fan_in = (len(table[0]) if table is not None else in_channels) * kernel_size ** 2
        bound = 2.4 / fan_in  # the paper's uniform ±2.4/F_i initialisation, F_i = fan-in
        with torch.no_grad():
            self.conv.weight.uniform_(-bound, bound)
            self.conv.weight.mul_(self.connection)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        return F.conv2d(x, conv.weight * self.connection, None, conv.stride,
                        conv.padding) + self.bias


class LeNet1989(nn.Module):
    """LeNet (1989) for ``Tensor[batch, in_channels, 16, 16]`` inputs (other sizes are
    resized to 16×16 first: area averaging down, bilinear up)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1, input_size: int = 16) -> None:
        super().__init__()
        self.input_size = input_size
        self.h1 = LocalBiasConv2d(in_channels, 12, 5, 2, 2, 8)
        self.act1 = nn.Tanh()
        self.h2 = LocalBiasConv2d(12, 12, 5, 2, 2, 4, table=H2_TABLE)
        self.act2 = nn.Tanh()
        self.h3 = nn.Linear(12 * 4 * 4, 30)
        self.act3 = nn.Tanh()
        self.output = nn.Linear(30, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (16, 16):  # the paper's 16×16 plane
            x = (F.adaptive_avg_pool2d(x, 16) if min(x.shape[-2:]) >= 16 else
                 F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False))
        x = self.act2(self.h2(self.act1(self.h1(x))))
        return self.output(self.act3(self.h3(x.flatten(1))))


#: Layer name → module path (post-activation outputs).
LENET1989_LAYERS = {"h1": "act1", "h2": "act2", "h3": "act3", "output": "output"}


def build_lenet1989(num_classes: int, in_channels: int, input_size: int) -> LeNet1989:
    """Build the 1989 LeNet; inputs of ``input_size`` other than 16 are resized to 16×16."""
    return LeNet1989(num_classes, in_channels, input_size)


@hookimpl
def probe_register_architectures(register: Register) -> None:
    register(ArchitectureSpec(
        name="lenet1989",
        build=build_lenet1989,
        task="classification",
        family="lenet",
        input_size=16,
        in_channels=1,
        options=(
            Option("num_classes", int, 10, "number of output classes", minimum=2),
            Option("in_channels", int, 1, "input channels", minimum=1),
            Option("input_size", int, 16, "input side in pixels; other than 16, the model "
                   "resizes its input to the paper's 16×16 (area down, bilinear up)", minimum=4),
        ),
        layers=lambda model: LENET1989_LAYERS,
        description="LeNet of 1989 (LeCun et al., zip codes), 16×16 input, H1 H2 H3",
        train=TrainRecipe(dataset="digits", dataset_options={"split": "train", "image_size": 16},
                          epochs=30, batch_size=32, lr=3e-3),
    ))
