"""AlexNet: torchvision compatibility and the small-input variant's geometry."""

from __future__ import annotations

import pytest
import torch
import torchvision

import probe
from probe.architecture import conv_for_layer
from probe.host import get_host
from probe.plugins.architectures.alexnet import build_alexnet, feature_side


def test_torchvision_alexnet_file_loads_unchanged_and_matches(tmp_path):
    torch.manual_seed(0)
    reference = torchvision.models.alexnet(weights=None).eval()
    path = tmp_path / "alexnet.pth"
    torch.save(reference.state_dict(), path)
    ours = probe.load_model("alexnet", checkpoint=path)
    assert list(ours.state_dict()) == list(reference.state_dict())
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(ours(x), reference(x))


def test_first_layer_is_torchvisions():
    conv1 = build_alexnet().features[0]
    assert tuple(conv1.weight.shape) == (64, 3, 11, 11)
    assert conv1.stride == (4, 4) and conv1.padding == (2, 2)


@pytest.mark.parametrize(("size", "kernel", "stride", "padding", "side"),
                         [(224, 11, 4, 2, 6), (64, 11, 4, 2, 1), (64, 11, 2, 5, 3),
                          (32, 11, 2, 5, 1), (32, 11, 4, 2, 0)])
def test_feature_side_is_convolution_arithmetic(size, kernel, stride, padding, side):
    assert feature_side(size, kernel, stride, padding) == side
    if side:
        model = build_alexnet(input_size=size, first_kernel=kernel, first_stride=stride,
                              first_padding=padding, width=0.125, fc_width=8)
        assert model.features(torch.zeros(1, 3, size, size)).shape[-1] == side


def test_too_small_input_is_a_clear_error():
    with pytest.raises(probe.ProbeError, match="too small"):
        probe.load_model("alexnet", input_size=32)


def test_small_variant_keeps_large_first_kernels():
    spec = get_host().architectures.get("alexnet_small")
    model = spec.instantiate({"num_classes": 6})
    conv1 = conv_for_layer(model, spec.layer_map(model)["conv1"])
    assert tuple(conv1.weight.shape) == (32, 3, 11, 11)
    assert conv1.stride == (2, 2) and conv1.padding == (5, 5)
    assert model.avgpool.output_size == (3, 3)
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 6)
