"""The 9-parameter Gabor function and banks of quadrature Gabor pairs.

    g(x, y) = c + A·exp(−½(x′²/σx² + y′²/σy²))·cos(2π f x′ + φ)
    x′ = (x − x0)cos θ + (y − y0)sin θ,   y′ = −(x − x0)sin θ + (y − y0)cos θ

Coordinates are pixels from the kernel centre: ``x`` runs along columns
(left → right), ``y`` along rows (top → bottom), the centre of an ``h × w``
kernel being ``((w − 1)/2, (h − 1)/2)``. With these conventions
``2πσxσy · Re(skimage.filters.gabor_kernel(f, θ, σx, σy, offset=φ))`` equals
``gabor`` with ``A = 1, c = 0, x0 = y0 = 0`` on the same grid, and
``cv2.getGaborKernel(ksize, σ, θ, λ, γ, ψ)`` equals it rotated by 180° with
``f = 1/λ``, ``σx = σ``, ``σy = σ/γ``, ``φ = ψ`` (tests/test_filters_gabor.py).
"""

from __future__ import annotations

import math

import torch

#: Names of the 9 parameters, in the order of the last axis of ``params``.
PARAMS = ("x0", "y0", "theta", "frequency", "phase", "sigma_x", "sigma_y", "amplitude",
          "offset")


def grid(size: tuple[int, int], dtype: torch.dtype = torch.float64,
         device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates from the kernel centre.

    Returns:
        ``(x, y)``, each ``Tensor[h, w]``: ``x`` the column offset, ``y`` the row offset.
    """
    h, w = size
    ys = torch.arange(h, dtype=dtype, device=device) - (h - 1) / 2
    xs = torch.arange(w, dtype=dtype, device=device) - (w - 1) / 2
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return x, y


def gabor(params: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Evaluate Gabor functions on a kernel grid.

    Args:
        params: ``Tensor[..., 9]`` in the order of :data:`PARAMS`.
        size: Kernel ``(height, width)``.

    Returns:
        ``Tensor[..., height, width]`` of the dtype and device of ``params``.
    """
    if params.shape[-1] != len(PARAMS):
        raise ValueError(f"params must have {len(PARAMS)} entries on the last axis, "
                         f"got shape {tuple(params.shape)}")
    x, y = grid(size, params.dtype, params.device)
    p = [params[..., i, None, None] for i in range(len(PARAMS))]
    x0, y0, theta, freq, phase, sx, sy, amp, off = p
    dx, dy = x - x0, y - y0
    cos, sin = torch.cos(theta), torch.sin(theta)
    xr = dx * cos + dy * sin
    yr = -dx * sin + dy * cos
    envelope = torch.exp(-0.5 * ((xr / sx) ** 2 + (yr / sy) ** 2))
    return off + amp * envelope * torch.cos(2 * math.pi * freq * xr + phase)


def canonical(params: torch.Tensor) -> torch.Tensor:
    """Put Gabor parameters in canonical form without changing the function.

    ``A > 0``, ``f ≥ 0``, ``θ ∈ [0, π)``, ``φ ∈ (−π, π]``, ``σ > 0``. Uses
    ``(θ + π, −φ)`` ≡ ``(θ, φ)`` (x′ changes sign), ``(−A, φ)`` ≡ ``(A, φ + π)``
    and ``(−f, φ)`` ≡ ``(f, −φ)``.

    Args:
        params: ``Tensor[..., 9]``.
    """
    p = params.clone()
    theta, freq, phase = p[..., 2], p[..., 3], p[..., 4]
    phase = torch.where(p[..., 7] < 0, phase + math.pi, phase)
    p[..., 7] = p[..., 7].abs()
    phase = torch.where(freq < 0, -phase, phase)
    p[..., 3] = freq.abs()
    turns = torch.floor(theta / math.pi)
    odd = torch.remainder(turns, 2) == 1
    p[..., 2] = theta - turns * math.pi
    phase = torch.where(odd, -phase, phase)
    p[..., 4] = math.pi - torch.remainder(math.pi - phase, 2 * math.pi)
    p[..., 5] = p[..., 5].abs()
    p[..., 6] = p[..., 6].abs()
    return p


def quadrature_bank(size: tuple[int, int], orientations: int = 8,
                    frequencies: tuple[float, ...] | None = None,
                    dtype: torch.dtype = torch.float64,
                    device: torch.device | str | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """A bank of centred quadrature Gabor pairs, each pair orthonormalised.

    Each pair (even = cos, odd = sin carrier) has an isotropic envelope with
    ``σ = 0.5/f`` (about 1.3 octaves of bandwidth), capped at half the kernel's
    half-width so that the envelope fits inside the kernel. The even member loses its mean
    component along the odd one by Gram–Schmidt, so ``|cos|`` against the pair is
    phase-invariant: ``sqrt(⟨w, e⟩² + ⟨w, o⟩²)/‖w‖``.

    Args:
        size: Kernel ``(height, width)``.
        orientations: Number of orientations in ``[0, π)``.
        frequencies: Carrier frequencies in cycles per pixel; default: half-octave
            steps from 0.354 down to ``1.5 / min(h, w)`` (0.5 is left out: there the
            odd member of a horizontal or vertical pair vanishes on the pixel grid).

    Returns:
        ``(pairs, table)``: ``Tensor[P, 2, h, w]`` unit-norm orthogonal pairs and
        ``Tensor[P, 3]`` with ``(theta, frequency, sigma)`` of each pair.
    """
    h, w = size
    if frequencies is None:
        lowest = 1.5 / min(h, w)
        frequencies = tuple(f for f in (0.5 / 2 ** 0.5, 0.25, 0.25 / 2 ** 0.5, 0.125,
                                        0.125 / 2 ** 0.5, 0.0625) if f >= lowest) or (lowest,)
    half = max(min(h, w) - 1, 1) / 2
    rows = []
    for freq in frequencies:
        sigma = min(0.5 / freq, max(half / 2, 0.5))
        for i in range(orientations):
            rows.append((math.pi * i / orientations, freq, sigma))
    table = torch.tensor(rows, dtype=dtype, device=device)
    n = table.shape[0]
    params = torch.zeros(n, 2, len(PARAMS), dtype=dtype, device=device)
    params[:, :, 2] = table[:, None, 0]
    params[:, :, 3] = table[:, None, 1]
    params[:, 1, 4] = -math.pi / 2  # sin carrier
    params[:, :, 5] = table[:, None, 2]
    params[:, :, 6] = table[:, None, 2]
    params[:, :, 7] = 1.0
    pairs = gabor(params, size).reshape(n, 2, h * w)
    even, odd = pairs[:, 0], pairs[:, 1]
    odd = odd / odd.norm(dim=1, keepdim=True).clamp_min(1e-12)
    even = even - (even * odd).sum(dim=1, keepdim=True) * odd
    even = even / even.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.stack([even, odd], dim=1).reshape(n, 2, h, w), table


def bank_match(filters: torch.Tensor, pairs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Phase-invariant best match of each filter in a quadrature bank.

    Args:
        filters: ``Tensor[N, h, w]``.
        pairs: ``Tensor[P, 2, h, w]`` from :func:`quadrature_bank`.

    Returns:
        ``(cos, index)``: ``Tensor[N]`` best ``sqrt(⟨w,e⟩² + ⟨w,o⟩²)/‖w‖`` (in [0, 1])
        and ``Tensor[N]`` the index of the best pair.
    """
    flat = filters.reshape(filters.shape[0], -1)
    norms = flat.norm(dim=1, keepdim=True).clamp_min(1e-12)
    proj = torch.einsum("nd,pkd->npk", flat / norms, pairs.reshape(*pairs.shape[:2], -1))
    score = proj.pow(2).sum(dim=2).sqrt()  # [N, P]
    best, index = score.max(dim=1)
    return best, index
