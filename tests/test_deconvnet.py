"""DeconvNet: adjoint transposed convolutions, unpooling at the switches, mirrored shapes."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import probe
from probe.capture import Capture
from probe.host import get_host
from probe.plugins.architectures.deconvnet import DeconvNet


@pytest.mark.parametrize(("size", "kernel", "stride", "padding"),
                         [(8, 3, 1, 1), (9, 3, 2, 1), (10, 3, 2, 1), (8, 4, 2, 1), (7, 7, 1, 0)])
def test_transposed_convolution_is_the_adjoint(size, kernel, stride, padding):
    """⟨conv2d(x, w, s, p), y⟩ = ⟨x, conv_transpose2d(y, w, s, p, op)⟩ (REFERENCE §4.6)."""
    g = torch.Generator().manual_seed(size + stride)
    x = torch.randn(2, 3, size, size, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(5, 3, kernel, kernel, dtype=torch.float64, generator=g)
    forward = F.conv2d(x, w, stride=stride, padding=padding)
    y = torch.randn(forward.shape, dtype=torch.float64, generator=g)
    # output_padding restores the rows the strided conv's floor dropped
    extra = size - ((forward.shape[-1] - 1) * stride - 2 * padding + kernel)
    back = F.conv_transpose2d(y, w, stride=stride, padding=padding, output_padding=extra)
    assert back.shape == x.shape
    lhs, rhs = (forward * y).sum(), (x * back).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-12, atol=1e-12)
    grad, = torch.autograd.grad(forward, x, grad_outputs=y)
    assert torch.allclose(grad, back, rtol=1e-12, atol=1e-12)


def test_models_deconvolutions_are_adjoints_of_their_weights():
    model = DeconvNet(num_classes=3, input_size=32, depth=2, width=0.125).double()
    g = torch.Generator().manual_seed(0)
    for name in ("dec2_1", "dec1_2"):
        deconv = model.decoder[name].conv
        assert isinstance(deconv, nn.ConvTranspose2d)
        y = torch.randn(1, deconv.in_channels, 8, 8, dtype=torch.float64, generator=g)
        x = torch.randn(1, deconv.out_channels, 8, 8, dtype=torch.float64, generator=g)
        back = F.conv_transpose2d(y, deconv.weight, stride=1, padding=1)
        # ConvTranspose2d(in=a, out=b) is the adjoint of Conv2d(in=b, out=a) with one weight
        assert torch.allclose((F.conv2d(x, deconv.weight, padding=1) * y).sum(),
                              (x * back).sum(), rtol=1e-12)


def test_unpooling_puts_every_value_at_its_switch():
    x = torch.tensor([[[[1., 5., 2., 0.],
                        [3., 4., 8., 1.],
                        [0., 0., 6., 7.],
                        [9., 0., 2., 3.]]]])
    model = DeconvNet(num_classes=2, in_channels=1, input_size=4, depth=1, width=0.125)
    pooled, switches = model.encoder["pool1"](x)
    assert pooled.tolist() == [[[[5., 8.], [9., 7.]]]]
    restored = model.decoder["unpool1"](pooled, switches, output_size=x.shape[-2:])
    expected = torch.zeros_like(x)
    for r, c in [(0, 1), (1, 2), (3, 0), (2, 3)]:
        expected[0, 0, r, c] = x[0, 0, r, c]
    assert torch.equal(restored, expected)


def test_unpooling_random_maps():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 4, 16, 16, generator=g)
    pool = nn.MaxPool2d(2, 2, return_indices=True)
    pooled, switches = pool(x)
    restored = nn.MaxUnpool2d(2, 2)(pooled, switches, output_size=x.shape[-2:])
    flat = restored.flatten(2)
    assert torch.equal(flat.gather(2, switches.flatten(2)), pooled.flatten(2))
    assert int((restored != 0).sum()) == pooled.numel()  # zeros everywhere else
    assert torch.equal(restored, torch.where(restored != 0, x, 0.0))


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_decoder_mirrors_encoder(depth):
    model = DeconvNet(num_classes=4, input_size=32, depth=depth, width=0.125, fc_width=16).eval()
    spec = get_host().architectures.get("deconvnet")
    layers = spec.layer_map(model)
    encoder = [n for n in layers if n.startswith("enc")]
    decoder = [n for n in layers if n.startswith("dec") and n != "deconv_fc6"]
    assert sorted(n.replace("dec", "enc") for n in decoder) == sorted(encoder)
    with Capture(model, layers) as capture:
        out = model(torch.randn(2, 3, 32, 32))
        acts = capture.take()
    assert out.shape == (2, 4, 32, 32)
    for name in encoder:
        mirror = acts[name.replace("enc", "dec")]
        assert acts[name].shape[-2:] == mirror.shape[-2:]
    bottom = 32 // 2 ** depth
    fc6_side = 1 if bottom <= 7 else bottom - 6  # valid conv with a min(bottom, 7) kernel
    assert acts["fc6"].shape[-2:] == (fc6_side, fc6_side)
    assert acts["deconv_fc6"].shape[-2:] == (bottom, bottom)


def test_noh_geometry_at_full_size():
    with torch.device("meta"):
        model = probe.load_model("deconvnet")
    assert model.fc6.conv.kernel_size == (7, 7)
    assert model.fc6.conv.out_channels == 4096
    assert len([n for n in model.encoder if n.startswith("enc")]) == 13


def test_bad_geometry_is_a_clear_error():
    with pytest.raises(probe.ProbeError, match="divisible"):
        probe.load_model("deconvnet", input_size=60, depth=3)
