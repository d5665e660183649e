"""Colour reduction by SVD, redundancy under rotations and flips, Hungarian matching."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from probe.plugins.analyses.filters.gabor import gabor
from probe.plugins.analyses.filters.metrics import (
    hungarian_match,
    reduce_channels,
    redundancy,
    transforms,
)


def _gabor(theta, freq=0.2, phase=0.3, size=9):
    p = torch.tensor([0.7, -0.4, theta, freq, phase, 1.6, 2.4, 1.0, 0.0], dtype=torch.float64)
    return gabor(p, (size, size))


def test_reduce_channels_keeps_sign_and_measures_separability():
    spatial = _gabor(0.5)
    colour = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    rank1 = colour[:, None, None] * spatial
    maps, sep = reduce_channels(torch.stack([rank1, -rank1]))
    scale = colour.norm()
    np.testing.assert_allclose(maps[0].numpy(), (scale * spatial).numpy(), atol=1e-12)
    np.testing.assert_allclose(maps[1].numpy(), (-scale * spatial).numpy(), atol=1e-12)
    np.testing.assert_allclose(sep.numpy(), [1.0, 1.0], atol=1e-12)
    # Two orthogonal spatial patterns in two channels with equal energy: separability 1/2.
    other = _gabor(2.0, phase=1.9)
    other = other - (other * spatial).sum() / spatial.pow(2).sum() * spatial
    other = other * spatial.norm() / other.norm()
    two = torch.stack([spatial, other, torch.zeros_like(spatial)])[None]
    assert reduce_channels(two)[1].item() == pytest.approx(0.5, abs=1e-12)


def test_redundancy_finds_rotated_and_flipped_copies():
    gen = torch.Generator().manual_seed(4)
    base = torch.randn(3, 2, 7, 7, generator=gen, dtype=torch.float64)
    filters = torch.cat([
        base,
        torch.rot90(base[0:1], 1, (-2, -1)),   # 3 = rot90(0)
        torch.flip(base[1:2], (-1,)),          # 4 = flip(1)
        -torch.rot90(base[2:3], 2, (-2, -1)),  # 5 = −rot180(2)
        torch.randn(2, 2, 7, 7, generator=gen, dtype=torch.float64),
    ])
    cos, partner, kind = redundancy(filters)
    assert partner[:6].tolist() == [3, 4, 5, 0, 1, 2]
    np.testing.assert_allclose(cos[:6].numpy(), 1.0, atol=1e-12)
    assert kind[0] == "rot270" and kind[3] == "rot90"
    assert kind[1] == "flip" and kind[2] == "rot180"
    # filters[i] == g(filters[partner]) for the reported g.
    assert torch.allclose(torch.rot90(filters[3], 3, (-2, -1)), filters[0])
    assert cos[6:].max() < 0.6


def test_redundancy_with_interpolated_rotations_finds_a_45_degree_copy():
    # A Gabor centred on the kernel and the same Gabor rotated by 45°; θ = 0.2 keeps every
    # exact rotation/flip of the first (θ ∈ {0.2, 1.37, 1.77, 2.94}) away from 0.985.
    p = torch.tensor([0.0, 0.0, 0.2, 0.25, 0.2, 2.0, 3.5, 1.0, 0.0], dtype=torch.float64)
    q = p.clone()
    q[2] = 0.2 + math.pi / 4
    a, b = gabor(p, (15, 15)), gabor(q, (15, 15))
    noise = torch.randn(1, 15, 15, generator=torch.Generator().manual_seed(0),
                        dtype=torch.float64)
    filters = torch.stack([a, b, noise[0]])[:, None]
    exact, _, _ = redundancy(filters, rotations=4)
    fine, partner, kind = redundancy(filters, rotations=8)
    assert exact[0] < 0.5
    assert fine[0] > 0.95 and partner[0].item() == 1 and "45" in kind[0]
    assert [name for name, _ in transforms((15, 15), 8)][:8] == [
        "identity", "rot90", "rot180", "rot270", "flip", "flip_rot90", "flip_rot180",
        "flip_rot270"]
    with pytest.raises(ValueError, match="multiple of 4"):
        transforms((5, 5), 6)


def test_hungarian_match_recovers_a_permutation():
    gen = torch.Generator().manual_seed(2)
    basis = torch.linalg.qr(torch.randn(25, 25, generator=gen, dtype=torch.float64))[0].T
    basis = basis.reshape(25, 5, 5)
    order = torch.tensor([4, 0, 7, 3, 12, 9])
    signs = torch.tensor([1.0, -1.0, 1.0, -2.0, 0.5, 1.0], dtype=torch.float64)
    filters = basis[order] * signs[:, None, None]
    index, cos = hungarian_match(filters, basis)
    assert index.tolist() == order.tolist()
    np.testing.assert_allclose(cos, 1.0, atol=1e-12)
    more, _ = hungarian_match(basis, basis[:3])
    assert sorted(more[more >= 0].tolist()) == [0, 1, 2] and (more == -1).sum() == 22
