"""Every registered architecture: build, forward, layers, capture, checkpoint round trip."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch

import probe
from probe.architecture import ArchitectureSpec, conv_for_layer
from probe.capture import Capture
from probe.checkpoint import save_checkpoint
from probe.cli import main
from probe.host import get_host

NAMES = get_host().architectures.names()
BUILTINS = ("lenet5", "alexnet", "alexnet_small", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn",
            "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "deform_vgg11", "deform_vgg16",
            "deconvnet")


def tiny_options(spec: ArchitectureSpec) -> dict[str, Any]:
    """Small options for a quick forward: 32 px, narrow, 3 classes, where declared."""
    declared = {opt.name for opt in spec.options}
    wanted = {"num_classes": 3, "input_size": 32, "width": 0.125, "fc_width": 16,
              "first_stride": 2, "depth": 2, "modulated": True}
    return {k: v for k, v in wanted.items() if k in declared}


def tiny_input(spec: ArchitectureSpec, batch: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch, spec.in_channels, 32, 32, generator=generator)


def test_builtins_are_registered():
    assert set(BUILTINS) <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_build_and_forward(name):
    spec = get_host().architectures.get(name)
    model = spec.instantiate(tiny_options(spec)).eval()
    out = model(tiny_input(spec))
    expected = (2, 3) if spec.task == "classification" else (2, 3, 32, 32)
    assert tuple(out.shape) == expected
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_layers_are_stable_and_capturable(name):
    spec = get_host().architectures.get(name)
    options = tiny_options(spec)
    model = spec.instantiate(options).eval()
    layers = spec.layer_map(model)
    assert layers, "an architecture must expose analysable layers"
    assert list(layers) == list(spec.layer_map(spec.instantiate(options)))
    with Capture(model, layers) as capture:
        model(tiny_input(spec))
        captured = capture.take()
    assert list(captured) == list(layers)  # hooks fire in input-to-output order
    for name_, tensor in captured.items():
        assert tensor.shape[0] == 2, name_
    # every layer but the bare pools sits behind some filter bank
    assert conv_for_layer(model, layers[list(layers)[-1]]) is not None


@pytest.mark.parametrize("name", NAMES)
def test_describe_builds_on_meta(name):
    described = get_host().architectures.get(name).describe()
    assert described["layers"] and not described["layers"][0].startswith("<could not")
    json.dumps(described)


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip(name, tmp_path):
    spec = get_host().architectures.get(name)
    options = spec.resolve(tiny_options(spec))
    torch.manual_seed(1)
    model = spec.build(**options).eval()
    with torch.no_grad():  # move batch-norm statistics off their defaults
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    path = save_checkpoint(model, tmp_path / f"{name}.safetensors", name, options)
    loaded = probe.load_model(name, checkpoint=path)  # options come from the metadata
    x = tiny_input(spec)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


@pytest.mark.parametrize("name", BUILTINS)
def test_builtins_have_a_training_recipe(name):
    recipe = get_host().architectures.get(name).train
    assert recipe is not None
    assert recipe.dataset == ("digits" if name == "lenet5" else "parts")


def test_cli_lists_every_architecture_with_options_task_layers(capsys):
    assert main(["architectures", "--json"]) == 0
    listed = {item["name"]: item for item in json.loads(capsys.readouterr().out)}
    assert set(listed) == set(NAMES)
    assert listed["deconvnet"]["task"] == "segmentation"
    assert "enc1_1" in listed["deconvnet"]["layers"] and "dec1_1" in listed["deconvnet"]["layers"]
    assert "conv5_1.offset" in listed["deform_vgg11"]["layers"]
    assert {o["name"] for o in listed["vgg16"]["options"]} >= {"width", "input_size",
                                                                "num_classes", "in_channels"}
