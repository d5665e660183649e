"""Bilinear upsampling of dissection: hand values, F.interpolate, sparse == dense."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from probe.plugins.analyses.dissection.upsample import AxisPlan, active_pixels, upsample


def test_two_to_four_by_hand():
    """align_corners=False, 2 → 4: rows/cols weigh (1, .75, .25, 0) of the first sample."""
    maps = torch.tensor([[[4.0, 0.0], [0.0, 0.0]]])
    weights = torch.tensor([1.0, 0.75, 0.25, 0.0], dtype=torch.float64)
    expected = 4 * weights.view(-1, 1) * weights.view(1, -1)
    assert torch.equal(upsample(maps, (4, 4))[0], expected)


@pytest.mark.parametrize(("h", "big"), [(2, 4), (4, 64), (7, 112), (3, 5), (5, 3), (1, 4),
                                        (16, 16)])
def test_dense_equals_torch_interpolate_in_float64(h, big):
    maps = torch.randn((6, h, h + 1), generator=torch.Generator().manual_seed(h))
    ours = upsample(maps, (big, big + 2))
    ref = F.interpolate(maps[:, None].double(), size=(big, big + 2), mode="bilinear",
                        align_corners=False)[:, 0]
    assert (ours - ref).abs().max() < 1e-12
    ref32 = F.interpolate(maps[:, None], size=(big, big + 2), mode="bilinear",
                          align_corners=False)[:, 0]
    assert (ours - ref32).abs().max() < 1e-5  # float32 kernels agree up to their rounding


@pytest.mark.parametrize(("h", "big"), [(2, 4), (4, 64), (8, 64), (16, 64), (64, 64), (7, 112),
                                        (3, 5), (5, 3), (1, 4)])
def test_sparse_active_pixels_equal_dense_threshold(h, big):
    gen = torch.Generator().manual_seed(big + h)
    act = torch.randn((3, 4, h, h), generator=gen)
    act[0, 1] = -5.0  # a map entirely below its threshold: skipped
    thresholds = torch.quantile(act.transpose(0, 1).reshape(4, -1), 0.9, dim=1)
    dense = upsample(act.flatten(0, 1), (big, big)).view(3, 4, big, big)
    on = dense > thresholds.double().view(1, 4, 1, 1)
    image, unit, pixel = active_pixels(act, thresholds, (big, big))
    got = torch.zeros_like(on)
    got.view(3, 4, -1)[image, unit, pixel] = True
    assert torch.equal(got, on)
    assert len(image) == int(on.sum())  # no pixel reported twice


def test_ties_at_threshold_never_exceed_it():
    """Constant maps equal to T: rounding must not lift any pixel above T."""
    act = torch.full((1, 1, 3, 3), 0.1)
    image, _, _ = active_pixels(act, torch.tensor([0.1]), (7, 7))
    assert image.numel() == 0
    assert (upsample(act[0], (7, 7)) <= torch.tensor(0.1).double()).all()


def test_axis_plan_blocks_partition_the_output():
    plan = AxisPlan.build(4, 64, torch.device("cpu"))
    owned = plan.block[plan.block < 64]
    assert sorted(owned.tolist()) == list(range(64))
    # row o + 1 holds owner o (the unclamped floor of the source coordinate): owner -1
    # owns the 8 border pixels left of the first sample's centre, owner 3 the last 8
    assert (plan.block < 64).sum(1).tolist() == [8, 16, 16, 16, 8]
    assert torch.equal(plan.lower[plan.block[2][plan.block[2] < 64]], torch.ones(16).long())
    assert torch.equal(plan.block_upper[2, :16], plan.w_upper[plan.block[2, :16]])


@pytest.mark.parametrize(("h", "big"), [(4, 64), (5, 17), (8, 64)])
def test_pixels_exactly_at_the_threshold_agree_with_dense(h, big):
    """T equal to a corner sample: the corner block upsamples to exactly T (out), rest agree."""
    gen = torch.Generator().manual_seed(h * big)
    act = torch.randn((2, 3, h, h), generator=gen).round(decimals=1)  # many equal samples
    thresholds = act[0, :, 0, 0].clone()
    dense = upsample(act.flatten(0, 1), (big, big)).view(2, 3, big, big)
    ties = dense == thresholds.double().view(1, 3, 1, 1)
    assert ties[0, :, 0, 0].all()  # the border pixels copy the corner sample exactly
    on = dense > thresholds.double().view(1, 3, 1, 1)
    image, unit, pixel = active_pixels(act, thresholds, (big, big))
    got = torch.zeros_like(on)
    got.view(2, 3, -1)[image, unit, pixel] = True
    assert torch.equal(got, on)
    assert len(image) == int(on.sum())


def test_channels_last_activations_give_the_same_pixels():
    """Captured maps need not be contiguous (channels_last convolutions): same result."""
    gen = torch.Generator().manual_seed(5)
    act = torch.randn((3, 4, 5, 5), generator=gen)
    thresholds = torch.quantile(act.transpose(0, 1).reshape(4, -1), 0.8, dim=1)
    strided = act.to(memory_format=torch.channels_last)
    assert not strided.is_contiguous()
    for size in ((5, 5), (17, 17)):
        expected = active_pixels(act, thresholds, size)
        got = active_pixels(strided, thresholds, size)
        assert all(torch.equal(a, b) for a, b in zip(expected, got, strict=True))
