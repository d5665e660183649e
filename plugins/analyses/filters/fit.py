"""Batched least-squares fit of Gabor functions to filters (Levenberg–Marquardt).

Every filter of a layer is fitted from several starts at once: one problem per
(filter, start) in one batch, all on the device, with no Python loop over
filters. Starts are the orientations of a grid plus the orientation of the
filter's spectral peak, each with four carrier phases; the starting frequency
is the spectral peak's, the envelope starts centred on the filter's energy
centroid, and amplitude and offset start at their linear least-squares values.
The best start (smallest SSE) wins. σ is fitted in log space and clamped to
``[0.3, 2·size]``, the frequency to ``[0, 0.6]`` cycles/pixel and the centre to
the kernel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from probe.plugins.analyses.filters.gabor import PARAMS, canonical, gabor, grid

#: Kernels smaller than this (on their shorter side) get status ``too_small``.
MIN_FIT_SIZE = 5


@dataclass
class GaborFit:
    """Result of :func:`fit_gabors` for ``N`` filters.

    Attributes:
        params: ``Tensor[N, 9]`` canonical parameters (order of ``gabor.PARAMS``).
        r2: ``Tensor[N]`` ``1 − SSE/SST`` with SST about the filter's mean.
        fitted: ``Tensor[N, h, w]`` the fitted Gabor functions.
        status: ``N`` strings: ``ok``, ``too_small`` (kernel side below
            :data:`MIN_FIT_SIZE`) or ``flat`` (constant filter, R² undefined).
    """

    params: torch.Tensor
    r2: torch.Tensor
    fitted: torch.Tensor
    status: list[str]

    def column(self, name: str) -> torch.Tensor:
        """One parameter for every filter, by name (``theta``, ``frequency``, ...)."""
        return self.params[:, PARAMS.index(name)]


def _unpack(q: torch.Tensor) -> torch.Tensor:
    """Internal (log σ) parameters → Gabor parameters."""
    return torch.cat([q[..., :5], q[..., 5:7].exp(), q[..., 7:]], dim=-1)


def _project(q: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    h, w = size
    lo = torch.tensor([-(w - 1) / 2, -(h - 1) / 2, -1e9, 0.0, -1e9, math.log(0.3),
                       math.log(0.3), -1e30, -1e30], dtype=q.dtype, device=q.device)
    hi = torch.tensor([(w - 1) / 2, (h - 1) / 2, 1e9, 0.6, 1e9, math.log(2 * max(h, w)),
                       math.log(2 * max(h, w)), 1e30, 1e30], dtype=q.dtype, device=q.device)
    return torch.maximum(torch.minimum(q, hi), lo)


def _spectral_peak(maps: torch.Tensor, pad: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Frequency (cycles/pixel) and orientation of the largest non-DC Fourier peak."""
    _, h, w = maps.shape
    size = max(pad, h, w)
    centred = maps - maps.mean(dim=(1, 2), keepdim=True)
    power = torch.fft.rfft2(centred, s=(size, size)).abs().pow(2)  # [N, size, size//2+1]
    fy = torch.fft.fftfreq(size, device=maps.device, dtype=maps.dtype)
    fx = torch.fft.rfftfreq(size, device=maps.device, dtype=maps.dtype)
    power[:, 0, 0] = -1
    flat = power.flatten(1).argmax(dim=1)
    iy, ix = flat // power.shape[2], flat % power.shape[2]
    vx, vy = fx[ix], fy[iy]
    freq = (vx ** 2 + vy ** 2).sqrt()
    theta = torch.remainder(torch.atan2(vy, vx), math.pi)
    return freq, theta


def _linear_amplitude(carrier: torch.Tensor, target: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares ``A, c`` of ``target ≈ c + A·carrier`` (both ``Tensor[B, D]``)."""
    cm, tm = carrier.mean(dim=1, keepdim=True), target.mean(dim=1, keepdim=True)
    cc, tc = carrier - cm, target - tm
    amp = (cc * tc).sum(dim=1) / cc.pow(2).sum(dim=1).clamp_min(1e-300)
    return amp, (tm - amp[:, None] * cm).squeeze(1)


def _starts(maps: torch.Tensor, orientations: int, phases: int) -> torch.Tensor:
    """Internal start parameters ``Tensor[N, S, 9]``."""
    n, h, w = maps.shape
    freq, theta_peak = _spectral_peak(maps)
    freq = freq.clamp(1.0 / max(h, w), 0.5)
    x, y = grid((h, w), maps.dtype, maps.device)
    energy = (maps - maps.mean(dim=(1, 2), keepdim=True)).pow(2)
    mass = energy.sum(dim=(1, 2)).clamp_min(1e-300)
    cx = (energy * x).sum(dim=(1, 2)) / mass
    cy = (energy * y).sum(dim=(1, 2)) / mass
    sigma = torch.minimum(0.5 / freq, torch.full_like(freq, max(min(h, w) / 4, 0.5)))
    grid_theta = torch.arange(orientations, dtype=maps.dtype, device=maps.device) \
        * math.pi / orientations
    thetas = torch.cat([theta_peak[:, None], grid_theta.expand(n, -1)], dim=1)  # [N, T]
    phis = torch.arange(phases, dtype=maps.dtype, device=maps.device) * 2 * math.pi / phases
    t, p = thetas.shape[1], phis.shape[0]
    q = torch.zeros(n, t, p, len(PARAMS), dtype=maps.dtype, device=maps.device)
    q[..., 0] = cx[:, None, None]
    q[..., 1] = cy[:, None, None]
    q[..., 2] = thetas[:, :, None]
    q[..., 3] = freq[:, None, None]
    q[..., 4] = phis[None, None, :]
    q[..., 5] = sigma.log()[:, None, None]
    q[..., 6] = sigma.log()[:, None, None]
    q[..., 7] = 1.0
    q = q.reshape(n, t * p, len(PARAMS))
    carrier = gabor(_unpack(q), (h, w)).reshape(n * t * p, -1)
    target = maps.reshape(n, 1, -1).expand(n, t * p, -1).reshape(n * t * p, -1)
    amp, off = _linear_amplitude(carrier, target)
    q[..., 7] = amp.reshape(n, t * p)
    q[..., 8] = off.reshape(n, t * p)
    return q


def _model_and_jacobian(q: torch.Tensor, size: tuple[int, int]
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gabor values ``Tensor[B, D]`` and their analytic Jacobian ``Tensor[B, D, 9]``
    with respect to the internal parameters (σ in log space)."""
    x, y = grid(size, q.dtype, q.device)
    x, y = x.reshape(1, -1), y.reshape(1, -1)
    x0, y0, theta, freq, phase, lsx, lsy, amp, off = (q[:, i:i + 1] for i in range(9))
    sx2, sy2 = (2 * lsx).exp(), (2 * lsy).exp()
    cos, sin = torch.cos(theta), torch.sin(theta)
    dx, dy = x - x0, y - y0
    xr = dx * cos + dy * sin
    yr = -dx * sin + dy * cos
    env = torch.exp(-0.5 * (xr * xr / sx2 + yr * yr / sy2))
    arg = 2 * math.pi * freq * xr + phase
    carrier_cos, carrier_sin = torch.cos(arg), torch.sin(arg)
    ec, es = env * carrier_cos, env * carrier_sin
    value = off + amp * ec
    d_xr = amp * (-ec * xr / sx2 - es * 2 * math.pi * freq)
    d_yr = -amp * ec * yr / sy2
    jac = torch.stack([
        -d_xr * cos + d_yr * sin,               # x0
        -d_xr * sin - d_yr * cos,               # y0
        d_xr * yr - d_yr * xr,                  # theta
        -amp * es * 2 * math.pi * xr,           # frequency
        -amp * es,                              # phase
        amp * ec * xr * xr / sx2,               # log sigma_x
        amp * ec * yr * yr / sy2,               # log sigma_y
        ec,                                     # amplitude
        torch.ones_like(ec),                    # offset
    ], dim=2)
    return value, jac


def _levenberg_marquardt(q: torch.Tensor, target: torch.Tensor, size: tuple[int, int],
                         iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise ``Σ (gabor − target)²`` for every row; returns ``(q, sse)``."""
    eye = torch.eye(q.shape[1], dtype=q.dtype, device=q.device)
    value, jmat = _model_and_jacobian(q, size)
    resid = value - target
    sse = resid.pow(2).sum(dim=1)
    lam = torch.full_like(sse, 1e-2)
    for step_index in range(iterations):
        if step_index % 10 == 9 and bool((lam >= 1e9).all()):
            break  # every problem has stalled: more steps cannot lower any SSE
        jtj = jmat.transpose(1, 2) @ jmat
        grad = (jmat.transpose(1, 2) @ resid[:, :, None]).squeeze(2)
        damp = torch.diagonal(jtj, dim1=1, dim2=2).clamp_min(1e-12)
        system = jtj + lam[:, None, None] * (torch.diag_embed(damp) + 1e-12 * eye)
        chol, info = torch.linalg.cholesky_ex(system)
        step = torch.cholesky_solve(-grad[:, :, None], chol).squeeze(2)
        step = torch.where((info == 0)[:, None], step, torch.zeros_like(step))
        step = torch.nan_to_num(step, nan=0.0, posinf=0.0, neginf=0.0)
        trial = _project(q + step, size)
        trial_value, trial_jac = _model_and_jacobian(trial, size)
        trial_resid = trial_value - target
        trial_sse = trial_resid.pow(2).sum(dim=1)
        better = trial_sse < sse
        stalled = better & ((sse - trial_sse) <= 1e-12 * sse)
        q = torch.where(better[:, None], trial, q)
        resid = torch.where(better[:, None], trial_resid, resid)
        jmat = torch.where(better[:, None, None], trial_jac, jmat)
        sse = torch.where(better, trial_sse, sse)
        lam = torch.where(better, lam / 3, lam * 4).clamp(1e-9, 1e9)
        lam = torch.where(stalled, torch.full_like(lam, 1e9), lam)
    return q, sse


def fit_gabors(maps: torch.Tensor, orientations: int = 4, phases: int = 2,
               iterations: int = 40, chunk: int = 8192) -> GaborFit:
    """Fit a 9-parameter Gabor function to each map by multi-start least squares.

    Args:
        maps: ``Tensor[N, h, w]`` spatial filters (computed in float64 on their device).
        orientations: Grid orientations per filter (plus the spectral-peak one).
        phases: Starting carrier phases per orientation.
        iterations: Levenberg–Marquardt iterations (fixed count, batched).
        chunk: Largest number of (filter, start) problems solved at once.

    Returns:
        A :class:`GaborFit`; filters with status other than ``ok`` have ``nan``
        parameters and R² and a zero fitted map.
    """
    if maps.dim() != 3:
        raise ValueError(f"maps must be Tensor[N, h, w], got shape {tuple(maps.shape)}")
    if orientations < 1 or phases < 1 or iterations < 0:
        raise ValueError(f"orientations and phases must be >= 1 and iterations >= 0, got "
                         f"{orientations}, {phases}, {iterations}")
    maps = maps.to(torch.float64)
    n, h, w = maps.shape
    params = torch.full((n, len(PARAMS)), float("nan"), dtype=maps.dtype, device=maps.device)
    r2 = torch.full((n,), float("nan"), dtype=maps.dtype, device=maps.device)
    fitted = torch.zeros_like(maps)
    sst = (maps - maps.mean(dim=(1, 2), keepdim=True)).pow(2).sum(dim=(1, 2))
    scale = maps.flatten(1).abs().amax(dim=1)
    flat = sst <= (1e-12 * scale.clamp_min(1e-300)) ** 2 * h * w
    if min(h, w) < MIN_FIT_SIZE:
        return GaborFit(params, r2, fitted, ["too_small"] * n)
    status = ["flat" if f else "ok" for f in flat.tolist()]
    todo = torch.nonzero(~flat).flatten()
    if todo.numel():
        # Fit unit-scale problems so one damping schedule suits every filter.
        norm = scale[todo].clamp_min(1e-300)[:, None, None]
        work = maps[todo] / norm
        starts = _starts(work, orientations, phases)  # [M, S, 9]
        m, s, _ = starts.shape
        per = max(1, chunk // s)
        for lo in range(0, m, per):
            hi = min(m, lo + per)
            target = work[lo:hi].reshape(hi - lo, 1, -1).expand(hi - lo, s, -1)
            q, sse = _levenberg_marquardt(starts[lo:hi].reshape(-1, len(PARAMS)),
                                          target.reshape((hi - lo) * s, -1), (h, w),
                                          iterations)
            best = sse.reshape(hi - lo, s).argmin(dim=1)
            q = q.reshape(hi - lo, s, -1)[torch.arange(hi - lo, device=q.device), best]
            p = _unpack(q)
            p[:, 7:] = p[:, 7:] * norm[lo:hi, 0]
            index = todo[lo:hi]
            params[index] = canonical(p)
            fitted[index] = gabor(p, (h, w))
        sse_all = (fitted[todo] - maps[todo]).pow(2).sum(dim=(1, 2))
        r2[todo] = 1 - sse_all / sst[todo]
    return GaborFit(params, r2, fitted, status)
