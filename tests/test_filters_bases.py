"""Gaussian-derivative basis, PCA of natural patches, spans, energy fractions, angles."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from probe.plugins.analyses.filters.bases import (
    DERIVATIVES,
    DIMS_BY_ORDER,
    canonical_sign,
    derivative_sigma,
    energy_fraction,
    gaussian_derivatives,
    orthonormal_span,
    pca_basis,
    subspace_angles,
)
from probe.plugins.analyses.filters.gabor import grid


def _unit(t: torch.Tensor) -> np.ndarray:
    t = t.reshape(-1)
    return (t / t.norm()).numpy()


def test_derivatives_match_closed_forms_in_the_standard_order():
    size, s = (13, 13), 2.0
    basis = gaussian_derivatives(size, sigma=s)
    assert basis.shape == (15, 13, 13)
    assert DERIVATIVES[:6] == ("G", "Gx", "Gy", "Gxx", "Gyy", "Gxy")
    x, y = grid(size)
    g = torch.exp(-(x ** 2 + y ** 2) / (2 * s * s))
    closed = {
        "G": g, "Gx": -x * g, "Gy": -y * g,
        "Gxx": (x ** 2 - s * s) * g, "Gxy": x * y * g,
        "Gxxx": -(x ** 3 - 3 * s * s * x) * g,
        "Gxxyy": (x ** 2 - s * s) * (y ** 2 - s * s) * g,
        "Gxxxx": (x ** 4 - 6 * s * s * x ** 2 + 3 * s ** 4) * g,
    }
    for name, ref in closed.items():
        np.testing.assert_allclose(_unit(basis[DERIVATIVES.index(name)]), _unit(ref),
                                   atol=1e-12, err_msg=name)


def test_first_derivative_steers_exactly():
    # REFERENCE §2: the derivative at angle θ equals cosθ·Gx + sinθ·Gy.
    size, s, theta = (15, 15), 2.0, 0.7
    x, y = grid(size)
    g = torch.exp(-(x ** 2 + y ** 2) / (2 * s * s))
    directional = -(x * math.cos(theta) + y * math.sin(theta)) * g
    raw_gx, raw_gy = -x * g, -y * g
    np.testing.assert_allclose(directional.numpy(),
                               (math.cos(theta) * raw_gx + math.sin(theta) * raw_gy).numpy(),
                               atol=1e-14)
    span = orthonormal_span(gaussian_derivatives(size, sigma=s)[1:3])
    assert energy_fraction(directional[None, None], span).item() == pytest.approx(1, abs=1e-12)


def test_sigma_rule_is_three_sigma_integer_half_width():
    assert derivative_sigma((11, 11)) == pytest.approx(5 / 3)
    assert derivative_sigma((7, 7)) == pytest.approx(1.0)
    assert derivative_sigma((3, 3)) == pytest.approx(1 / 3)


def test_energy_fraction_chance_level_is_dim_over_k2():
    gen = torch.Generator().manual_seed(0)
    filters = torch.randn(4000, 1, 7, 7, generator=gen, dtype=torch.float64)
    basis = orthonormal_span(gaussian_derivatives((7, 7))[:6])
    assert basis.shape == (6, 49)
    assert energy_fraction(filters, basis).mean().item() == pytest.approx(6 / 49, abs=0.005)
    # Multi-channel: every channel slice counts.
    inside = basis[0].reshape(7, 7)
    mixed = torch.stack([inside, torch.zeros(7, 7, dtype=torch.float64)])[None]
    assert energy_fraction(mixed, basis).item() == pytest.approx(1.0, abs=1e-12)


def test_canonical_sign_makes_the_largest_entry_positive():
    v = torch.tensor([[0.1, -0.9, 0.3], [-0.5, 0.5, 0.0]], dtype=torch.float64)
    out = canonical_sign(v)
    np.testing.assert_allclose(out.numpy(), [[-0.1, 0.9, -0.3], [0.5, -0.5, 0.0]])


def test_subspace_angles_are_radians_largest_first():
    e = torch.eye(4, dtype=torch.float64)
    b = torch.stack([e[0], (e[1] + e[2]) / math.sqrt(2)])
    angles = subspace_angles(e[:2], b)
    np.testing.assert_allclose(angles, [math.pi / 4, 0.0], atol=1e-12)


@pytest.mark.parametrize("k", [7, 11])
def test_pca_of_natural_patches_has_blob_pair_triple_structure(k):
    # Hancock et al. 1992: Gaussian-windowed natural patches give a blob, then a
    # first-derivative pair, then a second-order triple. Sign- and order-tolerant:
    # each group is scored by its energy in the matching derivative span.
    from probe.plugins.analyses.filters.natural import sample_patches

    patches = torch.from_numpy(sample_patches(k, 8000, seed=0))[:, 0]
    x, y = grid((k, k))
    sigma_w = 0.5 * (k - 1) / 2
    windowed = patches * torch.exp(-(x ** 2 + y ** 2) / (2 * sigma_w ** 2))
    comps, variance = pca_basis(windowed)
    assert (variance[:-1] >= variance[1:]).all()
    deriv = gaussian_derivatives((k, k))
    groups = {"blob": (slice(0, 1), slice(0, 1)), "pair": (slice(1, 3), slice(1, 3)),
              "triple": (slice(3, 6), slice(3, 6))}
    for name, (pcs, orders) in groups.items():
        span = orthonormal_span(deriv[orders])
        energy = energy_fraction(comps[pcs, None], span)
        chance = span.shape[0] / (k * k)
        assert energy.min().item() > 0.8, (name, energy)
        assert chance < 0.07
    # Cumulative: the first 1/3/6 components lie in the order ≤ 0/1/2 spans.
    for m in DIMS_BY_ORDER[:3]:
        span = orthonormal_span(deriv[:m])
        assert energy_fraction(comps[:m, None], span).mean().item() > 0.85
