"""Engineered bases: Gaussian derivatives (orders 0–4) and PCA of image patches.

Both are returned as ``Tensor[M, h, w]`` function stacks; :func:`orthonormal_span`
turns the first ``m`` of them into an orthonormal basis of their span, and
:func:`energy_fraction` measures how much of a filter lies in it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: The standard order of the 15 Gaussian derivatives (Jacobsen et al. 2016).
DERIVATIVES = ("G", "Gx", "Gy", "Gxx", "Gyy", "Gxy", "Gxxx", "Gyyy", "Gxxy", "Gxyy",
               "Gxxxx", "Gyyyy", "Gxxxy", "Gxyyy", "Gxxyy")
#: Derivative order of each entry of :data:`DERIVATIVES`.
DERIVATIVE_ORDER = tuple(len(name) - 1 for name in DERIVATIVES)
#: Number of basis functions of orders ≤ n, for n = 0..4.
DIMS_BY_ORDER = (1, 3, 6, 10, 15)


def _hermite(n: int, t: torch.Tensor) -> torch.Tensor:
    """Probabilists' Hermite polynomial He_n(t) by the three-term recurrence."""
    prev, cur = torch.ones_like(t), t
    if n == 0:
        return prev
    for k in range(1, n):
        prev, cur = cur, t * cur - k * prev
    return cur


def derivative_sigma(size: tuple[int, int]) -> float:
    """The scale of the derivative basis for a kernel: integer half-width = 3σ.

    For an ``h × w`` kernel the half-width is ``(min(h, w) − 1) // 2`` (at least 1),
    and ``σ = half-width / 3``.
    """
    half = max((min(size) - 1) // 2, 1)
    return half / 3.0


def gaussian_derivatives(size: tuple[int, int], sigma: float | None = None,
                         dtype: torch.dtype = torch.float64,
                         device: torch.device | str | None = None) -> torch.Tensor:
    """The 15 Gaussian derivatives of orders 0–4 in the standard order.

    ``∂ⁿG/∂xⁿ = (−1/σ)ⁿ Heₙ(x/σ) G``; mixed derivatives are products of the 1-D
    factors. ``x`` runs along columns, ``y`` along rows (see ``gabor.grid``).
    Each function is scaled to unit norm (scaling does not change any span).

    Args:
        size: Kernel ``(height, width)``.
        sigma: Gaussian scale; default :func:`derivative_sigma`.

    Returns:
        ``Tensor[15, height, width]`` in the order of :data:`DERIVATIVES`.
    """
    from probe.plugins.analyses.filters.gabor import grid

    s = derivative_sigma(size) if sigma is None else float(sigma)
    if s <= 0:
        raise ValueError(f"sigma must be > 0, got {s}")
    x, y = grid(size, dtype, device)
    gauss = torch.exp(-(x ** 2 + y ** 2) / (2 * s * s)) / (2 * math.pi * s * s)
    out = []
    for name in DERIVATIVES:
        nx, ny = name.count("x"), name.count("y")
        fx = (-1 / s) ** nx * _hermite(nx, x / s)
        fy = (-1 / s) ** ny * _hermite(ny, y / s)
        out.append(fx * fy * gauss)
    stack = torch.stack(out)
    return stack / stack.flatten(1).norm(dim=1).clamp_min(1e-300)[:, None, None]


def canonical_sign(vectors: torch.Tensor) -> torch.Tensor:
    """Flip each row so that its entry of largest magnitude is positive.

    Ties (antisymmetric patterns) are broken by the first such entry in raster
    order after rounding magnitudes to 1e-9 relative, so the choice is stable.

    Args:
        vectors: ``Tensor[M, D]``.
    """
    mags = vectors.abs()
    top = mags.max(dim=1, keepdim=True).values
    near = mags >= top * (1 - 1e-9)
    first = near.to(torch.int8).argmax(dim=1)
    signs = torch.sign(vectors.gather(1, first[:, None]))
    signs[signs == 0] = 1
    return vectors * signs


def pca_basis(patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Principal components of image patches, sign-canonicalised.

    The mean patch is removed (covariance PCA); patches are not normalised
    individually, so the mean-luminance blob stays in the data (Hancock et al. 1992).

    Args:
        patches: ``Tensor[N, h, w]`` (one channel).

    Returns:
        ``(components, variance)``: ``Tensor[h·w, h, w]`` in order of decreasing
        variance, each unit-norm with :func:`canonical_sign`, and ``Tensor[h·w]``
        the variance along each.
    """
    n, h, w = patches.shape
    flat = patches.reshape(n, h * w).to(torch.float64)
    mean = flat.mean(dim=0, keepdim=True)
    cov = (flat - mean).T @ (flat - mean) / max(n - 1, 1)
    return pca_from_covariance(cov, (h, w))


def pca_from_covariance(cov: torch.Tensor, size: tuple[int, int]
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sign-canonicalised eigenvectors of a patch covariance ``Tensor[D, D]``.

    See :func:`pca_basis`; returns ``(Tensor[D, h, w], Tensor[D])``.
    """
    values, vectors = torch.linalg.eigh(cov.to(torch.float64))
    order = torch.argsort(values, descending=True)
    comps = canonical_sign(vectors[:, order].T.contiguous())
    return comps.reshape(-1, *size), values[order].clamp_min(0)


def orthonormal_span(functions: torch.Tensor, tol: float = 1e-10) -> torch.Tensor:
    """An orthonormal basis of the span of a stack of functions.

    Args:
        functions: ``Tensor[M, h, w]`` (or ``[M, D]``).

    Returns:
        ``Tensor[r, D]`` with ``r`` the numerical rank (singular values above
        ``tol`` times the largest).
    """
    flat = functions.reshape(functions.shape[0], -1).to(torch.float64)
    if flat.shape[0] == 0:
        return flat
    _, s, vh = torch.linalg.svd(flat, full_matrices=False)
    rank = int((s > tol * s.max().clamp_min(1e-300)).sum())
    return vh[:rank]


def energy_fraction(filters: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Fraction of each filter's energy in the span of an orthonormal basis.

    A multi-channel filter counts the energy of every channel slice in the span:
    ``Σ_c ‖Q w_c‖² / Σ_c ‖w_c‖²``.

    Args:
        filters: ``Tensor[N, C, h, w]``.
        basis: ``Tensor[r, h·w]`` orthonormal rows.

    Returns:
        ``Tensor[N]`` in [0, 1] (``nan`` for an all-zero filter).
    """
    n, c = filters.shape[:2]
    flat = filters.reshape(n * c, -1).to(basis.dtype)
    inside = (flat @ basis.T).pow(2).sum(dim=1).reshape(n, c).sum(dim=1)
    total = flat.pow(2).sum(dim=1).reshape(n, c).sum(dim=1)
    return torch.where(total > 0, inside / total.clamp_min(1e-300),
                       torch.full_like(total, float("nan")))


def cumulative_energy(filters: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """Energy fraction of each filter in the span of the first ``m`` rows, for every ``m``.

    Args:
        filters: ``Tensor[N, C, h, w]``.
        basis: ``Tensor[M, h·w]`` orthonormal rows (nested spans, e.g. PCA components).

    Returns:
        ``Tensor[N, M]``; column ``m − 1`` equals ``energy_fraction(filters, basis[:m])``.
    """
    n, c = filters.shape[:2]
    flat = filters.reshape(n * c, -1).to(basis.dtype)
    coeff = (flat @ basis.T).pow(2).reshape(n, c, -1).sum(dim=1)  # [N, M]
    total = flat.pow(2).sum(dim=1).reshape(n, c).sum(dim=1)
    out = coeff.cumsum(dim=1) / total.clamp_min(1e-300)[:, None]
    return torch.where(total[:, None] > 0, out, torch.full_like(out, float("nan")))


def subspace_angles(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Principal angles between the spans of two stacks (radians, largest first).

    Thin wrapper of :func:`scipy.linalg.subspace_angles` on ``Tensor[M, D]`` rows.
    """
    from scipy.linalg import subspace_angles as angles

    return angles(a.reshape(a.shape[0], -1).T.cpu().double().numpy(),
                  b.reshape(b.shape[0], -1).T.cpu().double().numpy())
