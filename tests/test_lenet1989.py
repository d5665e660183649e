"""The LeNet of 1989 (LeCun et al.): the paper's shapes, free parameters and
connections, the fixed H2 connection table, and training through ``probe train``."""

from __future__ import annotations

import json

import torch
from torch.nn import functional as F

import probe
from probe.cli import main
from probe.models import get_architecture
from probe.plugins.architectures.lenet1989 import H2_TABLE


def _model() -> torch.nn.Module:
    return get_architecture("lenet1989").instantiate({})


def test_shapes_parameters_and_connections_are_the_papers():
    model = _model()
    shapes = {}
    for name in ("act1", "act2", "act3", "output"):
        getattr(model, name).register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:])))
    model(torch.zeros(2, 1, 16, 16))
    assert shapes == {"act1": (12, 8, 8), "act2": (12, 4, 4), "act3": (30,), "output": (10,)}
    masked = int((model.h2.connection == 0).sum()) * 5 * 5
    free = sum(p.numel() for p in model.parameters()) - masked
    # the paper: H1 768 biases + 12·25 weights; H2 192 biases + 12·8·25; H3 30·(192 + 1);
    # output 10·(30 + 1)
    h1, h2, h3, out = 8 * 8 * 12 + 12 * 25, 4 * 4 * 12 + 12 * 8 * 25, 30 * 193, 10 * 31
    assert (h1, h2, h3, out) == (1068, 2592, 5790, 310)
    assert free == h1 + h2 + h3 + out == 9760
    units = 8 * 8 * 12 + 4 * 4 * 12 + 30 + 10
    connections = 768 * (25 + 1) + 192 * (8 * 25 + 1) + 30 * 193 + 10 * 31
    assert (units, connections) == (1000, 64660)  # + 256 inputs = the paper's 1,256 units
    assert sum(p.numel() for p in model.h1.parameters()) == h1
    assert sum(p.numel() for p in model.h2.parameters()) - masked == h2


def test_h2_table_has_8_of_12_inputs_each_way():
    assert all(len(inputs) == 8 for inputs in H2_TABLE) and len(H2_TABLE) == 12
    mask = _model().h2.connection[:, :, 0, 0]
    assert mask.sum(1).tolist() == [8.0] * 12 and mask.sum(0).tolist() == [8.0] * 12


def test_masked_connections_stay_zero_after_training_steps():
    model = _model()
    off = model.h2.connection.expand_as(model.h2.conv.weight) == 0
    assert (model.h2.conv.weight[off] == 0).all() and (model.h2.conv.weight[~off] != 0).all()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, weight_decay=1e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        x = torch.randn(8, 1, 16, 16, generator=generator)
        loss = F.cross_entropy(model(x), torch.arange(8))
        optimizer.zero_grad()
        loss.backward()
        assert (model.h2.conv.weight.grad[off] == 0).all()
        assert model.h2.conv.weight.grad[~off].abs().sum() > 0
        optimizer.step()
    assert (model.h2.conv.weight[off] == 0).all()


def test_trains_on_digits_through_probe_train(tmp_path):
    out = tmp_path / "lenet1989.safetensors"
    assert main(["train", "lenet1989", "--out", str(out), "--epochs", "4", "--quiet",
                 "--device", "cpu"]) == 0
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["dataset"]["options"]["image_size"] == 16  # digits drawn at 16×16
    assert sidecar["metrics"]["accuracy"] >= 0.85
    model = probe.load_model("lenet1989", checkpoint=out)
    off = model.h2.connection.expand_as(model.h2.conv.weight) == 0
    assert (model.h2.conv.weight[off] == 0).all()


def test_other_input_sizes_are_resized_to_16():
    small, large = _model(), get_architecture("lenet1989").instantiate({"input_size": 32})
    large.load_state_dict(small.state_dict())
    x = torch.rand(3, 1, 16, 16)
    # a 32-px image whose 2×2 blocks repeat the 16-px one averages back to it
    big = x.repeat_interleave(2, -1).repeat_interleave(2, -2)
    with torch.no_grad():
        torch.testing.assert_close(large(big), small(x), rtol=0, atol=1e-5)
