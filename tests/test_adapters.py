"""External architectures: torchvision classifiers by name and user `package.module:function`."""

from __future__ import annotations

import textwrap

import pytest
import torch
import torchvision
from torch import nn

import probe
from probe.adapters import adapt_external
from probe.api import get_architecture


@pytest.fixture
def no_downloads(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the adapter must never download weights")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


def test_torchvision_model_by_name(no_downloads):
    spec = get_architecture("torchvision:resnet18")
    assert spec.name == "torchvision:resnet18" and spec.task == "classification"
    model = spec.instantiate({"num_classes": 7}).eval()
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    layers = spec.layer_map(model)
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert list(layers) == convs and len(convs) == 20  # 1 stem + 16 block + 3 downsample
    assert layers["layer1.0.conv1"] == "layer1.0.conv1"


def test_torchvision_weights_only_from_the_named_file(tmp_path, no_downloads):
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None, num_classes=5).eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = probe.load_model("torchvision:resnet18", checkpoint=path, num_classes=5)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), reference(x))


def test_unknown_torchvision_name_lists_known_ones():
    with pytest.raises(probe.ProbeError, match=r"no classification model 'resnet17'.*resnet18"):
        adapt_external("torchvision:resnet17")
    with pytest.raises(probe.ProbeError):  # detection models are not classifiers
        adapt_external("torchvision:fasterrcnn_resnet50_fpn")


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "my_nets.py").write_text(textwrap.dedent("""
        from torch import nn

        def small(num_classes=4, in_channels=3, depth=2):
            layers = [nn.Conv2d(in_channels, 8, 3, padding=1), nn.ReLU()]
            for _ in range(depth - 1):
                layers += [nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()]
            return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(8, num_classes))

        def not_a_model():
            return 42

        VALUE = 3
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "my_nets"


def test_user_function(user_module):
    spec = get_architecture(f"{user_module}:small")
    assert [o.name for o in spec.options] == ["num_classes", "in_channels"]
    model = spec.instantiate({"num_classes": 6, "in_channels": 1})
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 6)
    assert list(spec.layer_map(model)) == ["0", "2"]
    with pytest.raises(probe.ProbeError, match="has no option 'depth'"):
        spec.instantiate({"depth": 3})


@pytest.mark.parametrize(("target", "message"), [
    ("my_nets:not_a_model", "returned int, not a torch.nn.Module"),
    ("my_nets:missing", "has no attribute 'missing'"),
    ("my_nets:VALUE", "is not callable"),
    ("no_such_pkg.mod:fn", "cannot import module 'no_such_pkg.mod'"),
    (":fn", "package.module:function"),
])
def test_clear_errors(user_module, target, message):
    with pytest.raises(probe.ProbeError, match=message):
        adapt_external(target).instantiate()


def test_name_without_colon_is_rejected():
    with pytest.raises(probe.ProbeError, match=r"package\.module:function"):
        adapt_external("resnet18")
