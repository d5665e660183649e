"""HMAX and the Neocognitron run batched like any model: the number of operators one
forward (or one learning step) runs does not grow with the prototypes, planes,
positions or images, so nothing loops over them in Python."""

from __future__ import annotations

import torch
from torch.profiler import ProfilerActivity, profile

import probe
from probe.plugins.architectures.neocognitron import learn_stage

#: Views, which ATen's own C++ kernels take per image (``im2col`` selects each one).
VIEWS = {"aten::as_strided", "aten::select", "aten::slice", "aten::view", "aten::expand",
         "aten::unsqueeze", "aten::squeeze", "aten::reshape", "aten::alias", "aten::t",
         "aten::transpose", "aten::permute", "aten::narrow"}


def aten_ops(work) -> int:
    """The aten operators other than views that ``work()`` runs."""
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        work()
    return sum(e.count for e in prof.key_averages()
               if e.key.startswith("aten::") and e.key not in VIEWS)


def test_hmax_forward_does_not_loop_over_prototypes_positions_or_images():
    def ops(prototypes: int, side: int, images: int) -> int:
        model = probe.load_model("hmax", seed=0, bands=2, patch_sizes=(4, 6),
                                 prototypes=prototypes, input_size=side).eval()
        x = torch.rand(images, 1, side, side, generator=torch.Generator().manual_seed(0))
        return aten_ops(lambda: model(x))

    base = ops(5, 48, 1)  # both patch sizes fit both C1 bands at 48 px and above
    assert base < 500  # a few operators per band and patch size, not per prototype
    assert ops(50, 48, 1) == base and ops(5, 64, 1) == base and ops(5, 48, 8) == base


def test_neocognitron_forward_and_learning_do_not_loop_over_planes_or_positions():
    def forward_ops(planes: tuple[int, int, int], side: int) -> int:
        model = probe.load_model("neocognitron", seed=0, planes=planes,
                                 input_size=side).eval()
        x = torch.rand(2, 1, side, side, generator=torch.Generator().manual_seed(0))
        return aten_ops(lambda: model(x))

    base = forward_ops((4, 4, 4), 32)
    assert forward_ops((16, 32, 32), 32) == base and forward_ops((4, 4, 4), 48) == base

    def learning_ops(planes: int, copies: int) -> int:
        model = probe.load_model("neocognitron", seed=0, planes=(planes, 8, 8)).eval()
        layer = model.s_layers[0]
        x = torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(0))
        x = x.repeat(copies, 1, 1, 1)  # more images taking the same branches (seeding or not)
        inputs = model.stage_input(x, 0)
        learn_stage(layer, inputs, 0.8, 8, 0.1, 1, 0.05)  # seed a plane first
        return aten_ops(lambda: learn_stage(layer, inputs, 0.8, 8, 0.1, 1, 0.05))

    step = learning_ops(16, 1)
    assert learning_ops(64, 1) == step and learning_ops(16, 4) == step
