"""The Gabor generator against skimage and OpenCV (REFERENCE §2), canonical form, bank."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
from skimage.filters import gabor_kernel

from probe.plugins.analyses.filters.gabor import (
    PARAMS,
    bank_match,
    canonical,
    gabor,
    quadrature_bank,
)

CASES = [  # frequency, theta, sigma_x, sigma_y, offset
    (0.1, 0.0, 3.0, 3.0, 0.0),
    (0.22, 0.6, 2.0, 3.5, 0.4),
    (0.3, 2.3, 1.5, 2.5, -1.1),
    (0.05, 1.0, 4.0, 2.0, math.pi / 2),
]


def _params(freq, theta, sx, sy, phase, amp=1.0, off=0.0, x0=0.0, y0=0.0):
    return torch.tensor([x0, y0, theta, freq, phase, sx, sy, amp, off], dtype=torch.float64)


@pytest.mark.parametrize(("freq", "theta", "sx", "sy", "offset"), CASES)
def test_matches_skimage_gabor_kernel(freq, theta, sx, sy, offset):
    ref = gabor_kernel(freq, theta=theta, sigma_x=sx, sigma_y=sy, offset=offset)
    ours = gabor(_params(freq, theta, sx, sy, offset), ref.shape).numpy()
    scaled = 2 * math.pi * sx * sy * ref.real
    np.testing.assert_allclose(ours, scaled, rtol=0, atol=1e-12)


@pytest.mark.parametrize("ksize", [(11, 11), (15, 9)])
@pytest.mark.parametrize(("sigma", "theta", "lambd", "gamma", "psi"), [
    (2.0, 0.6, 4.5, 0.8, math.pi / 2),   # OpenCV's default psi
    (3.0, 2.0, 7.0, 0.5, 0.3),
    (1.5, 0.0, 3.0, 1.0, -1.0),
])
def test_matches_opencv_get_gabor_kernel(ksize, sigma, theta, lambd, gamma, psi):
    ref = cv2.getGaborKernel(ksize, sigma, theta, lambd, gamma, psi, ktype=cv2.CV_64F)
    ours = gabor(_params(1 / lambd, theta, sigma, sigma / gamma, psi), ref.shape).numpy()
    np.testing.assert_allclose(np.rot90(ours, 2), ref, rtol=0, atol=1e-12)


def test_amplitude_offset_and_centre_shift():
    base = gabor(_params(0.2, 0.4, 2.0, 3.0, 0.7), (21, 21))
    moved = gabor(_params(0.2, 0.4, 2.0, 3.0, 0.7, amp=-2.5, off=0.3, x0=2.0, y0=-3.0),
                  (21, 21))
    # x0 = +2 moves the pattern 2 columns right, y0 = −3 moves it 3 rows up.
    np.testing.assert_allclose(moved[3:15, 2:19].numpy(),
                               (0.3 - 2.5 * base[6:18, 0:17]).numpy(), atol=1e-12)


def test_canonical_keeps_the_function_and_the_ranges():
    gen = torch.Generator().manual_seed(3)
    raw = torch.randn(200, len(PARAMS), generator=gen, dtype=torch.float64) * 3
    raw[:, 3] = raw[:, 3] / 10
    raw[:, 5:7] = raw[:, 5:7].abs() + 0.5
    canon = canonical(raw)
    np.testing.assert_allclose(gabor(canon, (9, 9)).numpy(), gabor(raw, (9, 9)).numpy(),
                               atol=1e-10)
    assert (canon[:, 2] >= 0).all() and (canon[:, 2] < math.pi).all()
    assert (canon[:, 3] >= 0).all() and (canon[:, 7] >= 0).all()
    assert (canon[:, 4] > -math.pi - 1e-12).all() and (canon[:, 4] <= math.pi + 1e-12).all()


def test_quadrature_bank_is_orthonormal_and_phase_invariant():
    pairs, table = quadrature_bank((11, 11), orientations=8)
    flat = pairs.reshape(pairs.shape[0], 2, -1)
    gram = torch.einsum("pkd,pld->pkl", flat, flat)
    np.testing.assert_allclose(gram.numpy(), np.broadcast_to(np.eye(2), gram.shape), atol=1e-12)
    # A Gabor with the bank's own parameters matches its pair at every phase.
    i = 13
    theta, freq, sigma = table[i].tolist()
    phases = torch.linspace(-math.pi, math.pi, 9, dtype=torch.float64)
    probes = torch.stack([gabor(_params(freq, theta, sigma, sigma, float(p)), (11, 11))
                          for p in phases])
    cos, index = bank_match(probes, pairs)
    assert (index == i).all(), index
    assert cos.min() > 0.99
    # Orthogonal content (a checkerboard at the Nyquist frequency rotated 45°) matches poorly
    # against the low-frequency half of the bank.
    low = pairs[table[:, 1] < 0.2]
    checker = torch.tensor((np.indices((11, 11)).sum(0) % 2) * 2 - 1.0)
    assert bank_match(checker[None], low)[0].item() < 0.2
