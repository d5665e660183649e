"""Resizing of dissection: hand values, PIL in both directions, F.interpolate, sparse == dense."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dissection_reference import pil_upsample
from torch.nn import functional as F

from probe.plugins.analyses.dissection import active as active_module
from probe.plugins.analyses.dissection.active import active_pixel_chunks, active_pixels
from probe.plugins.analyses.dissection.upsample import AxisPlan, TapPlan, upsample


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
    # antialias where an axis shrinks (5 -> 3): PIL's filter, which torch implements too
    ours = upsample(maps, (big, big + 2))
    shrink = big < h
    ref = F.interpolate(maps[:, None].double(), size=(big, big + 2), mode="bilinear",
                        align_corners=False, antialias=shrink)[:, 0]
    assert (ours - ref).abs().max() < 1e-12
    ref32 = F.interpolate(maps[:, None], size=(big, big + 2), mode="bilinear",
                          align_corners=False, antialias=shrink)[:, 0]
    assert (ours - ref32).abs().max() < 1e-5  # float32 kernels agree up to their rounding
    # the two-tap rule is F.interpolate without antialiasing, in every direction
    plain = upsample(maps, (big, big + 2), "bilinear")
    ref = F.interpolate(maps[:, None].double(), size=(big, big + 2), mode="bilinear",
                        align_corners=False)[:, 0]
    assert (plain - ref).abs().max() < 1e-12


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


def test_downsampling_is_antialiased_like_pil_by_hand():
    """8×8 map with one 1 at (3, 3) → 4×4: PIL's triangle filter of half-width 2 weighs
    samples 1..4 of output 1 by (1, 3, 3, 1)/8, so (1, 1) = (3/8)², (1, 2) = 3/8 · 1/8."""
    maps = torch.zeros((1, 8, 8))
    maps[0, 3, 3] = 1.0
    ours = upsample(maps, (4, 4))[0]
    expected = torch.zeros((4, 4), dtype=torch.float64)
    expected[1, 1] = 9 / 64
    expected[1, 2] = expected[2, 1] = 3 / 64
    expected[2, 2] = 1 / 64
    assert torch.equal(ours, expected)
    assert np.allclose(pil_upsample(maps[0].numpy(), (4, 4)), expected.numpy(), atol=1e-7)
    plain = upsample(maps, (4, 4), "bilinear")[0]  # two taps: only (1, 1), at 1/4
    assert plain[1, 1] == 0.25 and int((plain != 0).sum()) == 1
    plan = TapPlan.build(8, 4, "antialias", torch.device("cpu"))
    assert plan.index[1].tolist() == [1, 2, 3, 4]
    assert torch.allclose(plan.weight[1], torch.tensor([1, 3, 3, 1], dtype=torch.float64) / 8)


@pytest.mark.parametrize(("shape", "size"), [
    ((4, 4), (16, 16)), ((7, 5), (112, 112)), ((3, 5), (5, 3)),          # up (and mixed)
    ((8, 8), (4, 4)), ((64, 64), (32, 32)), ((224, 224), (112, 112)),    # down, ×2
    ((13, 17), (5, 7)), ((10, 10), (7, 7)), ((56, 56), (112, 30)),       # odd factors, mixed
    ((112, 112), (112, 112)),                                            # same size
])
def test_resizing_equals_pil_in_both_directions(shape, size):
    """PIL's bilinear resize of a float map (NetDissect-Lite's imresize(mode='F')), up and
    down, to its float32 rounding."""
    gen = torch.Generator().manual_seed(sum(shape) + sum(size))
    maps = torch.randn((3, *shape), generator=gen)
    ours = upsample(maps, size).numpy()
    theirs = np.stack([pil_upsample(m.numpy(), size) for m in maps])
    assert ours.shape == theirs.shape == (3, *size)
    assert np.abs(ours - theirs).max() < 2e-6


@pytest.mark.parametrize("share", [1, 10**9])  # sparse outputs / maps resized whole
@pytest.mark.parametrize("downsample", ["antialias", "bilinear"])
@pytest.mark.parametrize(("h", "small"), [(8, 4), (64, 32), (16, 7), (9, 5)])
def test_sparse_active_pixels_equal_dense_threshold_when_shrinking(downsample, h, small, share,
                                                                    monkeypatch):
    monkeypatch.setattr(active_module, "DENSE_SHARE", share)
    gen = torch.Generator().manual_seed(h * small)
    act = torch.randn((3, 4, h, h), generator=gen)
    act[1, 2] = -5.0  # a map entirely below its threshold: skipped
    # averaging lowers the peaks: a threshold at the median keeps pixels on both sides
    thresholds = torch.quantile(act.transpose(0, 1).reshape(4, -1), 0.6, dim=1)
    dense = upsample(act.flatten(0, 1), (small, small), downsample).view(3, 4, small, small)
    on = dense > thresholds.double().view(1, 4, 1, 1)
    image, unit, pixel = active_pixels(act, thresholds, (small, small), downsample)
    got = torch.zeros_like(on)
    got.view(3, 4, -1)[image, unit, pixel] = True
    assert torch.equal(got, on) and len(image) == int(on.sum())
    assert on.any() and not on[1, 2].any()


def test_constant_maps_at_the_threshold_stay_out_when_shrinking():
    act = torch.full((1, 1, 9, 9), 0.1)
    assert active_pixels(act, torch.tensor([0.1]), (4, 4))[0].numel() == 0
    assert (upsample(act[0], (4, 4)) <= torch.tensor(0.1).double()).all()


def test_chunks_are_bounded_and_ordered():
    """Every chunk holds at most ``chunk`` pixels; maps come in non-decreasing order."""
    gen = torch.Generator().manual_seed(11)
    act = torch.randn((4, 6, 7, 7), generator=gen)
    thresholds = torch.zeros(6)  # about half of every map active
    for size in ((7, 7), (30, 30), (4, 4)):
        whole = active_pixels(act, thresholds, size)
        chunks = list(active_pixel_chunks(act, thresholds, size, chunk=97))
        assert all(len(m) <= 97 for m, _ in chunks) and len(chunks) > 1
        maps = torch.cat([m for m, _ in chunks])
        assert bool((maps[1:] >= maps[:-1]).all())
        assert torch.equal(maps // 6, whole[0]) and torch.equal(maps % 6, whole[1])
        assert torch.equal(torch.cat([p for _, p in chunks]), whole[2])


@pytest.mark.parametrize("size", [(5, 5), (20, 20), (3, 3)])
def test_few_maps_above_threshold_are_gathered_with_the_same_result(size):
    """Under half the maps with a raw value above T: those maps are copied out first
    (else read in place); either way the pixels equal the dense threshold."""
    gen = torch.Generator().manual_seed(9)
    act = torch.randn((3, 4, 5, 5), generator=gen)
    act[:, :3] = -5.0  # only unit 3 can be active: 3 of 12 maps
    thresholds = torch.zeros(4)
    dense = upsample(act.flatten(0, 1), size).view(3, 4, *size)
    on = dense > 0
    image, unit, pixel = active_pixels(act, thresholds, size)
    got = torch.zeros_like(on)
    got.view(3, 4, -1)[image, unit, pixel] = True
    assert torch.equal(got, on) and on.any() and bool((unit == 3).all())
