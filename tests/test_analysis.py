"""The analysis contract's model access: gradients on request, detached otherwise."""

import pandas as pd
import pytest
import torch

import probe
from probe import Accumulator, Analysis, ModelHandle, Preprocessing


def test_capture_keeps_the_graph_only_when_asked():
    model = probe.load_model("lenet5")
    layers = probe.api.get_architecture("lenet5").layer_map(model)
    handle = ModelHandle(model, layers, Preprocessing((0.5,), (0.25,)))
    images = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        inputs = handle.normalize(images)
        _, plain = handle.capture(inputs, ["c1"])
        inputs = inputs.clone().requires_grad_(True)
        _, graph = handle.capture(inputs, ["c1"], grad=True)
    assert not plain["c1"].requires_grad and graph["c1"].requires_grad
    (grad,) = torch.autograd.grad(graph["c1"][1].sum(), inputs)
    assert grad[0].abs().sum() == 0 and grad[2].abs().sum() == 0  # images do not interact
    assert grad[1].abs().sum() > 0
    torch.testing.assert_close(inputs.detach(), (images - 0.5) / 0.25)
    with pytest.raises(KeyError, match="captured layers: c1"):
        handle.capture(inputs, ["nope"])


class _Seen(Accumulator):
    def __init__(self):
        self.add_state("attached", torch.zeros((), dtype=torch.int64), "sum")
        self.add_state("batches", torch.zeros((), dtype=torch.int64), "sum")
        self.add_state("input_grad", torch.zeros((), dtype=torch.float64), "sum")

    def update(self, batch):
        act = next(iter(batch.activations.values()))
        self.batches += 1
        if act.requires_grad and batch.inputs.requires_grad:
            self.attached += 1
            (grad,) = torch.autograd.grad(act.sum(), batch.inputs)
            self.input_grad += grad.abs().sum().double()

    def finalize(self, context):
        return {"seen": pd.DataFrame({"attached": [int(self.attached)],
                                      "batches": [int(self.batches)],
                                      "input_grad": [float(self.input_grad)]})}


class _WithGradients(Analysis):
    name = "test-with-gradients"
    gradients = True
    tables = {"seen": ("attached", "batches")}

    def accumulator(self, context):
        return _Seen()


class _WithoutGradients(_WithGradients):
    name = "test-without-gradients"
    gradients = False


def test_declared_gradients_reach_only_the_analysis_that_asked():
    tables = probe.measure("lenet5", "digits", [_WithGradients(), _WithoutGradients()],
                           dataset_options={"size": 20}, batch_size=8, layers=["c1"])
    asked, other = tables["test-with-gradients"]["seen"], tables["test-without-gradients"]["seen"]
    assert asked["attached"].item() == asked["batches"].item() == 3
    assert asked["input_grad"].item() > 0
    assert other["attached"].item() == 0 and other["batches"].item() == 3


def test_without_gradients_the_loop_runs_without_a_graph():
    tables = probe.measure("lenet5", "digits", [_WithoutGradients()],
                           dataset_options={"size": 8}, batch_size=8, layers=["c1"])
    assert tables["test-without-gradients"]["seen"]["attached"].item() == 0
