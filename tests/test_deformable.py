"""Deformable VGG: zero offsets = plain convolution, offsets shift sampling, offsets captured."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torchvision.ops import DeformConv2d, deform_conv2d

import probe
from probe.architecture import conv_for_layer
from probe.capture import Capture
from probe.host import get_host
from probe.plugins.architectures.deformable import DeformableConv2d, build_deform_vgg
from probe.plugins.architectures.vgg import build_vgg


def test_zero_offsets_equal_plain_convolution():
    """REFERENCE §4.9, in float64."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64, generator=g)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, generator=g)
    b = torch.randn(4, dtype=torch.float64, generator=g)
    offset = torch.zeros(2, 18, 9, 9, dtype=torch.float64)
    assert torch.allclose(deform_conv2d(x, offset, w, b, padding=1),
                          F.conv2d(x, w, b, padding=1), rtol=1e-12, atol=1e-12)


def test_integer_offsets_shift_the_sampling_grid():
    """Δp = (0, +1) at every tap samples x one column to the right: y(p0) = conv(x)(p0 + (0, 1))."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 2, 8, 8, dtype=torch.float64, generator=g)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, generator=g)
    offset = torch.zeros(1, 18, 8, 8, dtype=torch.float64)
    offset[:, 1::2] = 1.0  # (Δy, Δx) pairs per tap
    shifted = deform_conv2d(x, offset, w, padding=1)
    plain = F.conv2d(x, w, padding=1)
    assert torch.allclose(shifted[..., :-1], plain[..., 1:], rtol=1e-12, atol=1e-12)


def test_block_starts_as_the_plain_convolution():
    block = DeformableConv2d(3, 5).double()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    assert int(block.offset_conv.weight.count_nonzero()) == 0
    expected = F.conv2d(x, block.conv.weight, block.conv.bias, padding=1)
    assert torch.allclose(block(x), expected, rtol=1e-12, atol=1e-12)


def test_modulation_mask_starts_at_one_half():
    block = DeformableConv2d(3, 5, modulated=True).double()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    # the mask scales every sample, the bias is added afterwards
    expected = 0.5 * F.conv2d(x, block.conv.weight, padding=1) + block.conv.bias.view(1, -1, 1, 1)
    assert torch.allclose(block(x), expected, rtol=1e-12, atol=1e-12)


def test_deform_vgg_at_init_equals_vgg_with_the_same_weights():
    torch.manual_seed(0)
    options = {"input_size": 32, "width": 0.125, "fc_width": 16, "num_classes": 3}
    deform = build_deform_vgg("A", deformable=("conv4_1", "conv5_2"), **options).eval()
    plain = build_vgg("A", False, **options).eval()
    state = {k.replace(".conv.", "."): v for k, v in deform.state_dict().items()
             if ".offset_conv." not in k}
    plain.load_state_dict(state)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(deform(x), plain(x), atol=1e-6)


def test_offsets_and_masks_are_capturable_layers():
    spec = get_host().architectures.get("deform_vgg11")
    model = spec.instantiate({"input_size": 32, "width": 0.125, "modulated": True,
                              "num_classes": 3, "deformable": "conv4_1,conv5_2"}).eval()
    layers = spec.layer_map(model)
    chosen = {n: layers[n] for n in ("conv4_1.offset", "conv4_1.mask", "conv4_1")}
    with Capture(model, chosen) as capture:
        model(torch.randn(2, 3, 32, 32))
        acts = capture.take()
    assert acts["conv4_1.offset"].shape == (2, 18, 4, 4)
    assert torch.count_nonzero(acts["conv4_1.offset"]) == 0
    assert acts["conv4_1.mask"].shape == (2, 9, 4, 4)
    assert torch.equal(acts["conv4_1.mask"], torch.full((2, 9, 4, 4), 0.5))
    assert isinstance(conv_for_layer(model, layers["conv4_1"]), DeformConv2d)
    assert [n for n in layers if n.endswith(".offset")] == ["conv4_1.offset", "conv5_2.offset"]


def test_deformable_layers_option():
    model = probe.load_model("deform_vgg16", deformable="conv3_1,conv5_3", input_size=32,
                             width=0.125)
    kinds = [type(m).__name__ for m in model.features]
    assert kinds.count("DeformableConv2d") == 2
    with pytest.raises(probe.ProbeError, match="deformable layers must be among"):
        probe.load_model("deform_vgg11", deformable="conv1_2")


def test_offsets_learn():
    """The zero-initialised predictor still receives gradients (its output is not detached)."""
    block = DeformableConv2d(2, 3)
    x = torch.randn(1, 2, 6, 6)
    block(x).square().sum().backward()
    assert block.offset_conv.weight.grad.abs().sum() > 0


def test_offset_scale_multiplies_the_predicted_offsets():
    g = torch.Generator().manual_seed(4)
    block = DeformableConv2d(2, 3, offset_scale=0.1).double()
    with torch.no_grad():
        block.offset_conv.weight.copy_(torch.randn(block.offset_conv.weight.shape, generator=g))
    x = torch.randn(1, 2, 7, 7, dtype=torch.float64, generator=g)
    raw = block.offset_conv(x)
    expected = deform_conv2d(x, 0.1 * raw, block.conv.weight, block.conv.bias, padding=1)
    assert torch.allclose(block(x), expected, rtol=1e-12, atol=1e-12)
    with Capture(block, {"offset": "offset"}) as capture:
        block(x)
        assert torch.allclose(capture.take()["offset"], 0.1 * raw, rtol=1e-15)


def test_a_vgg_checkpoint_initialises_the_deformable_vgg(tmp_path):
    """Dai et al. start from a plain network: its checkpoint loads, offsets 0, same outputs."""
    from probe.checkpoint import load_weights, save_checkpoint

    torch.manual_seed(0)
    options = {"input_size": 32, "width": 0.125, "fc_width": 16, "num_classes": 3,
               "batch_norm": True}
    plain = build_vgg("A", True, **{k: v for k, v in options.items() if k != "batch_norm"})
    with torch.no_grad():  # non-trivial batch-norm statistics
        for module in plain.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    path = save_checkpoint(plain, tmp_path / "vgg.safetensors", "vgg11_bn", options)
    deform = build_deform_vgg("A", deformable=("conv4_2", "conv5_1"), **options)
    load_weights(deform, path)
    blocks = [m for m in deform.modules() if isinstance(m, DeformableConv2d)]
    assert len(blocks) == 2
    assert all(int(b.offset_conv.weight.count_nonzero()) == 0 for b in blocks)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = plain.eval()(x)
        got = deform.eval()(x)
    assert torch.allclose(got, expected, atol=1e-5)


def test_init_from_an_unrelated_checkpoint_is_one_clear_error(tmp_path, capsys):
    from probe.checkpoint import save_checkpoint
    from probe.cli import main

    lenet = probe.load_model("lenet5")
    path = save_checkpoint(lenet, tmp_path / "lenet.safetensors", "lenet5", {})
    code = main(["train", "deform_vgg11", "--init", str(path), "--epochs", "1",
                 "--set", "dataset.size=32", "--out", str(tmp_path / "d.safetensors"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "does not fit the model" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d.safetensors").exists()
