import pytest
import torch
from torch import nn

from probe.capture import Capture, count_hooks


def make_model():
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(3, 2, 1))


def test_captures_named_outputs_exactly():
    torch.manual_seed(0)
    model = make_model()
    x = torch.randn(2, 1, 5, 5)
    with Capture(model, {"conv": "0", "relu": "1"}) as cap:
        model(x)
        acts = cap.take()
    expected_conv = model[0](x)
    assert torch.equal(acts["conv"], expected_conv)
    # The in-place ReLU must not overwrite the captured conv output.
    assert (acts["conv"] < 0).any()
    assert torch.equal(acts["relu"], expected_conv.clamp(min=0))
    assert model[1].inplace is True  # restored afterwards


def test_no_hook_survives_an_exception():
    model = make_model()
    with pytest.raises(RuntimeError), Capture(model, {"conv": "0", "out": "2"}):
        assert count_hooks(model) == 2
        model(torch.randn(1, 5, 5, 5))  # wrong channel count: conv raises
    assert count_hooks(model) == 0
    assert model[1].inplace is True


def test_unknown_module_is_rejected_before_hooking():
    model = make_model()
    with pytest.raises(KeyError, match="no module 'nope'"):
        Capture(model, {"x": "nope"})
    assert count_hooks(model) == 0
