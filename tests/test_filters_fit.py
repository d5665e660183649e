"""Batched Gabor fits: recovery of synthetic Gabors, low R² for noise, status flags."""

from __future__ import annotations

import math

import numpy as np
import torch

from probe.plugins.analyses.filters.fit import MIN_FIT_SIZE, fit_gabors
from probe.plugins.analyses.filters.gabor import gabor


def _noisy_gabor(theta=0.6, freq=0.22, noise=0.05, seed=0):
    gen = torch.Generator().manual_seed(seed)
    params = torch.tensor([[0.5, -0.3, theta, freq, 0.4, 2.0, 2.5, 1.0, 0.05]],
                          dtype=torch.float64)
    clean = gabor(params, (11, 11))
    return clean + noise * torch.randn(clean.shape, generator=gen, dtype=torch.float64)


def test_recovers_frequency_and_orientation_of_a_noisy_gabor():
    # REFERENCE §2: an 11×11 noisy Gabor is recovered to f 0.222 (0.22), θ 0.599 (0.6), R² 0.97.
    fit = fit_gabors(_noisy_gabor())
    assert fit.status == ["ok"]
    assert abs(fit.column("frequency").item() - 0.22) < 0.01
    assert abs(fit.column("theta").item() - 0.6) < 0.03
    assert fit.r2.item() > 0.95
    # The reported R² is 1 − SSE/SST of the returned fitted map.
    target = _noisy_gabor()[0]
    sse = (fit.fitted[0] - target).pow(2).sum()
    sst = (target - target.mean()).pow(2).sum()
    assert abs(fit.r2.item() - (1 - sse / sst).item()) < 1e-12


def test_recovers_a_batch_of_gabors_at_many_orientations():
    thetas = [0.1, 0.9, 1.6, 2.4, 3.0]
    maps = torch.cat([_noisy_gabor(theta=t, freq=0.18, noise=0.02, seed=i)
                      for i, t in enumerate(thetas)])
    fit = fit_gabors(maps)
    err = np.abs(((fit.column("theta").numpy() - np.array(thetas)) + math.pi / 2) % math.pi
                 - math.pi / 2)
    assert err.max() < 0.03, err
    assert np.abs(fit.column("frequency").numpy() - 0.18).max() < 0.01
    assert fit.r2.min() > 0.98


def test_random_filters_get_low_r2():
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(16, 11, 11, generator=gen, dtype=torch.float64)
    fit = fit_gabors(noise)
    assert float(fit.r2.median()) < 0.3
    assert float(fit.r2.max()) < 0.5


def test_small_and_flat_kernels_are_flagged_not_fitted():
    small = torch.randn(4, 3, 3, dtype=torch.float64)
    fit = fit_gabors(small)
    assert MIN_FIT_SIZE == 5
    assert fit.status == ["too_small"] * 4
    assert torch.isnan(fit.r2).all() and torch.isnan(fit.params).all()
    maps = torch.cat([torch.full((1, 7, 7), 0.3, dtype=torch.float64),
                      _noisy_gabor(noise=0.0)[:, 2:9, 2:9]])
    fit = fit_gabors(maps)
    assert fit.status == ["flat", "ok"]
    assert math.isnan(fit.r2[0].item()) and fit.r2[1].item() > 0.99
