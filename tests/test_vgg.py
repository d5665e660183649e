"""VGG: torchvision state_dict compatibility, configuration table, geometry, layer names."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

import probe
from probe.architecture import conv_for_layer
from probe.errors import OptionError
from probe.host import get_host
from probe.plugins.architectures.vgg import CFGS, build_vgg, conv_names

VARIANTS = ["vgg11", "vgg13", "vgg16", "vgg19"]


@pytest.mark.parametrize("bn", [False, True])
@pytest.mark.parametrize("name", VARIANTS)
def test_state_dict_keys_and_shapes_equal_torchvision(name, bn):
    full = f"{name}_bn" if bn else name
    with torch.device("meta"):
        ours = get_host().architectures.get(full).instantiate().state_dict()
        theirs = getattr(torchvision.models, full)(weights=None).state_dict()
    assert list(ours) == list(theirs)
    assert {k: tuple(v.shape) for k, v in ours.items()} == \
        {k: tuple(v.shape) for k, v in theirs.items()}


@pytest.mark.slow
def test_torchvision_vgg16_file_loads_unchanged_and_matches(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.vgg16(weights=None).eval()
    path = tmp_path / "vgg16.pth"
    torch.save(reference.state_dict(), path)
    del reference
    ours = probe.load_model("vgg16", checkpoint=path)
    reference = torchvision.models.vgg16(weights=None)
    reference.load_state_dict(torch.load(path, weights_only=True))
    reference.eval()
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(ours(x), reference(x))


def test_small_bn_variant_matches_torchvision_features(tmp_path):
    """Same weights in torchvision's vgg11_bn features and ours give identical maps."""
    torch.manual_seed(0)
    ours = build_vgg("A", True, input_size=32, num_classes=4).eval()
    reference = torchvision.models.vgg11_bn(weights=None, num_classes=4)
    reference.features.load_state_dict(ours.features.state_dict())
    reference.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ours.features(x), reference.features(x))


def test_configuration_table_matches_the_paper():
    # Table 1 of Simonyan & Zisserman: 8, 10, 13, 16 convolutions, 5 pools each.
    assert {k: len(conv_names(v)) for k, v in CFGS.items()} == {"A": 8, "B": 10, "D": 13,
                                                                 "E": 16}
    assert all(cfg.count("M") == 5 for cfg in CFGS.values())
    assert conv_names(CFGS["D"])[-3:] == ["conv5_1", "conv5_2", "conv5_3"]


@pytest.mark.parametrize(("input_size", "pool"), [(32, 1), (63, 1), (64, 2), (128, 4),
                                                   (224, 7), (512, 7)])
def test_pool_size_follows_the_input(input_size, pool):
    model = build_vgg("A", False, input_size=input_size, width=0.125, fc_width=8)
    assert model.avgpool.output_size == (pool, pool)
    assert model.classifier[0].in_features == 64 * pool * pool


def test_width_multiplier_and_options():
    model = probe.load_model("vgg11", width=0.25, fc_width=32, input_size=64, num_classes=6,
                             in_channels=1)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 32, 64, 64, 128, 128, 128, 128]
    assert convs[0].in_channels == 1
    assert model.classifier[0].in_features == 128 * 2 * 2
    assert model.classifier[-1].out_features == 6
    assert model(torch.randn(3, 1, 64, 64)).shape == (3, 6)
    with pytest.raises(OptionError, match="input_size"):
        probe.load_model("vgg11", input_size=16)


def test_layer_names_point_at_post_relu_outputs():
    spec = get_host().architectures.get("vgg16_bn")
    model = spec.instantiate({"width": 0.125, "input_size": 32})
    layers = spec.layer_map(model)
    modules = dict(model.named_modules())
    convs = [n for n in layers if n.startswith("conv")]
    assert len(convs) == 13
    assert all(isinstance(modules[layers[n]], nn.ReLU) for n in [*convs, "fc6", "fc7"])
    assert all(isinstance(modules[layers[f"pool{b}"]], nn.MaxPool2d) for b in range(1, 6))
    assert layers["conv1_1"] == "features.2"  # conv, bn, relu
    assert conv_for_layer(model, layers["conv3_2"]).out_channels == 32
    assert layers["fc8"] == "classifier.6"
