"""The per-layer measurement of the ``filters`` analysis: one filter bank in, its tables out.

:func:`measure_layer` takes one convolution's filters and the patch covariance
at its kernel size (from the bundled natural images or the run's data set) and
returns that layer's rows of every table (``units``, ``layers``, ``energy``,
``unit_energy``, ``subspaces``, ``components``). It keeps nothing: the
accumulator calls it once per distinct filter bank in ``finalize``.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from probe.plugins.analyses.filters.bases import (
    DERIVATIVE_ORDER,
    DERIVATIVES,
    DIMS_BY_ORDER,
    cumulative_energy,
    energy_fraction,
    gaussian_derivatives,
    orthonormal_span,
    pca_from_covariance,
    subspace_angles,
)
from probe.plugins.analyses.filters.fit import fit_gabors
from probe.plugins.analyses.filters.gabor import PARAMS, bank_match, grid, quadrature_bank
from probe.plugins.analyses.filters.metrics import hungarian_match, reduce_channels, redundancy
from probe.plugins.analyses.filters.weights import layer_filters

#: Largest number of seeded random filters used for the Gabor-fit chance level.
RANDOM_FIT_LIMIT = 32
#: Largest n²·transforms·C·k² for which redundancy compares whole filters.
REDUNDANCY_BUDGET = 2e10


def window(size: tuple[int, int], fraction: float, device: torch.device) -> torch.Tensor:
    """Gaussian window ``Tensor[h·w]`` with σ = ``fraction`` × half-width (all ones if 0)."""
    x, y = grid(size, torch.float64, device)
    if fraction <= 0:
        return torch.ones(size[0] * size[1], dtype=torch.float64, device=device)
    sigma = fraction * max((min(size) - 1) / 2, 0.5)
    return torch.exp(-(x ** 2 + y ** 2) / (2 * sigma ** 2)).reshape(-1)


def covariance(total: torch.Tensor, outer: torch.Tensor, count: float) -> torch.Tensor:
    """The sample covariance ``[D, D]`` from the sums Σx ``[D]``, Σxxᵀ ``[D, D]`` and n."""
    n = max(float(count), 2.0)
    mean = total / n
    return (outer - n * torch.outer(mean, mean)) / (n - 1)


@lru_cache(maxsize=16)
def _natural_moments(size: tuple[int, int], count: int, seed: int, color: bool = False
                     ) -> tuple[np.ndarray, np.ndarray, int]:
    from probe.plugins.analyses.filters.natural import sample_patches

    flat = sample_patches(size, count, seed, color=color).reshape(count, -1)
    return flat.sum(axis=0), flat.T @ flat, count


def natural_covariance(size: tuple[int, int], patches: int, seed: int, device: torch.device,
                       color: bool = False) -> tuple[torch.Tensor, int]:
    """Covariance of ``patches`` seeded natural patches (luminance, or RGB with ``color``)."""
    total, outer, n = _natural_moments(size, patches, seed, color)
    return covariance(torch.from_numpy(total).to(device), torch.from_numpy(outer).to(device),
                      float(n)), n


def bases(size: tuple[int, int], cov: torch.Tensor, window_fraction: float,
          device: torch.device) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{basis: (functions Tensor[M, h, w], variance Tensor[M])}`` for a kernel size."""
    win = window(size, window_fraction, device)
    pca, var = pca_from_covariance(cov, size)
    pca_w, var_w = pca_from_covariance(win[:, None] * cov * win[None, :], size)
    deriv = gaussian_derivatives(size, device=device)
    nan = torch.full((deriv.shape[0],), float("nan"), dtype=torch.float64)
    return {"derivative": (deriv, nan), "pca": (pca, var), "pca_windowed": (pca_w, var_w)}


def color_pca(size: tuple[int, int], patches: int, seed: int,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """PCA of RGB natural patches: ``(Tensor[3·h·w, 3, h, w], Tensor[3·h·w])``."""
    cov, _ = natural_covariance(size, patches, seed, device, color=True)
    comps, var = pca_from_covariance(cov, (3 * size[0], size[1]))
    return comps.reshape(-1, 3, *size), var


def measure_layer(layer: str, path: str, conv: nn.Module, cov: torch.Tensor,
                  settings: Mapping[str, Any], device: torch.device,
                  seed: int) -> dict[str, pd.DataFrame]:
    """Every table's rows for one filter bank.

    Args:
        layer, path: The layer's name and module path (written into the rows).
        conv: The convolution whose filters make the layer (see
            :func:`~probe.plugins.analyses.filters.weights.filters_module`).
        cov: Patch covariance ``[h·w, h·w]`` at the kernel size (the PCA bases).
        settings: The analysis's resolved options.
        device: Where to compute.
        seed: The run's seed; one generator per filter bank, so results do
            not depend on layer order.
    """
    s = settings
    generator = torch.Generator().manual_seed(seed)
    weights, kind = layer_filters(conv)
    filters = weights.to(device, torch.float64)
    n, c, h, w = filters.shape
    size, dim = (h, w), h * w
    maps, sep = reduce_channels(filters)
    fit = fit_gabors(maps, s["orientations"], s["phases"], s["iterations"])
    status = fit.status

    # Seeded random filters of the same shape: the empirical chance level.
    count = s["random_filters"]
    rand = torch.randn(count, c, h, w, generator=generator,
                       dtype=torch.float64).to(device)
    rand_maps, _ = reduce_channels(rand)
    rand_fit = fit_gabors(rand_maps[:RANDOM_FIT_LIMIT], s["orientations"], s["phases"],
                          s["iterations"])
    pairs, bank = quadrature_bank(size, s["bank_orientations"], device=device)
    bank_cos, bank_idx = bank_match(maps, pairs)
    rand_bank_cos, _ = bank_match(rand_maps, pairs)
    # Redundancy compares whole filters (channels rotate together); for very large
    # layers (n²·transforms·C·k² beyond REDUNDANCY_BUDGET) the SVD-reduced maps stand in.
    red_input = filters
    transforms_count = 8 * max(1, s["rotations"] // 4)
    redundancy_on = "filters"
    if n * n * transforms_count * c * dim > REDUNDANCY_BUDGET:
        red_input, redundancy_on = maps[:, None], "maps"
    red_cos, red_partner, red_transform = redundancy(red_input, s["rotations"])
    rand_in = rand if redundancy_on == "filters" else rand_maps[:, None]
    rand_red, _, _ = redundancy(rand_in[: max(n, 2)], s["rotations"]) if n > 1 else \
        (torch.tensor([float("nan")]), None, None)

    basis_sets = bases(size, cov, s["pca_window"], device)
    match_idx, match_cos = hungarian_match(maps, basis_sets["pca"][0])
    slices = filters.reshape(n * c, dim)
    _, sv, layer_vh = torch.linalg.svd(slices, full_matrices=False)
    rank = int((sv > 1e-10 * sv.max().clamp_min(1e-300)).sum())
    curve_rows, unit_energy, sub_rows, comp_rows = [], [], [], []
    functions = {name: f for name, (f, _) in basis_sets.items()} | {"layer_svd": None}
    if c == 3 and s["pca_source"] == "natural":
        # Colour filters against the PCA of RGB patches (colour-opponent blobs etc.).
        basis_sets["pca_color"] = color_pca(size, s["patches"], seed, device)
        functions["pca_color"] = basis_sets["pca_color"][0]
    whole = filters.reshape(n, 1, c * dim)
    _, whole_sv, whole_vh = torch.linalg.svd(whole[:, 0], full_matrices=False)
    whole_rank = int((whole_sv > 1e-10 * whole_sv.max().clamp_min(1e-300)).sum())
    for basis, funcs in functions.items():
        colour = basis == "pca_color"
        space = c * dim if colour else dim
        own, own_rank = (whole_vh, whole_rank) if colour else (layer_vh, rank)
        # Nested orthonormal spans: PCA components and the layer's singular directions
        # are orthonormal already (one product gives every size); the derivative spans
        # (orders ≤ n) are orthonormalised one by one, which also handles rank loss.
        if basis == "derivative":
            cuts = list(DIMS_BY_ORDER)
            spans = [orthonormal_span(funcs[:m]) for m in cuts]
            energies = torch.stack([energy_fraction(filters, q) for q in spans], dim=1)
            chance_energy = torch.stack([energy_fraction(rand, q) for q in spans], dim=1)
        else:
            ortho = layer_vh[:rank] if funcs is None else funcs.reshape(funcs.shape[0], -1)
            cuts = list(range(1, ortho.shape[0] + 1))
            spans = [ortho[:m] for m in cuts]
            energies = cumulative_energy(whole if colour else filters, ortho)
            chance_energy = cumulative_energy(
                rand.reshape(rand.shape[0], 1, -1) if colour else rand, ortho)
        random_means = chance_energy.nanmean(dim=0).cpu().numpy()
        means = energies.nanmean(dim=0).cpu().numpy()
        medians = energies.nanmedian(dim=0).values.cpu().numpy()
        for j, (m, span) in enumerate(zip(cuts, spans, strict=True)):
            chance = span.shape[0] / space
            random = float(random_means[j])
            order = DIMS_BY_ORDER.index(m) if basis == "derivative" else -1
            curve_rows.append({
                "layer": layer, "basis": basis, "dim": m, "span_dim": span.shape[0],
                "order": order, "energy_mean": float(means[j]),
                "energy_median": float(medians[j]), "chance": chance,
                "random_mean": random})
            summary = basis == "derivative" or m in DIMS_BY_ORDER or m == space
            if summary and funcs is not None:
                unit_energy.append(pd.DataFrame({
                    "layer": layer, "unit": np.arange(n), "basis": basis, "dim": m,
                    "energy": energies[:, j].cpu().numpy(), "chance": chance,
                    "random": random}))
                top = own[: min(m, own_rank)]
                angles = subspace_angles(top, span) if len(top) and len(span) else \
                    np.array([])
                sub_rows.append({
                    "layer": layer, "basis": basis, "dim": m, "order": order,
                    "layer_dim": top.shape[0], "basis_dim": span.shape[0],
                    "angles": angles.tolist(),
                    "mean_cos2": float(np.mean(np.cos(angles) ** 2)) if len(angles)
                    else float("nan"),
                    "chance_cos2": max(top.shape[0], span.shape[0]) / space,
                    "max_angle": float(angles.max()) if len(angles) else float("nan"),
                    "min_angle": float(angles.min()) if len(angles) else float("nan"),
                    "energy_mean": float(means[j]), "energy_chance": chance,
                    "energy_random": random})
        if funcs is not None:
            variance = basis_sets[basis][1].cpu().numpy()
            names = DERIVATIVES if basis == "derivative" else \
                tuple(f"PC{i + 1}" for i in range(funcs.shape[0]))
            for i in range(funcs.shape[0]):
                comp_rows.append({
                    "layer": layer, "basis": basis, "index": i, "name": names[i],
                    "order": DERIVATIVE_ORDER[i] if basis == "derivative" else -1,
                    "kernel_h": h, "kernel_w": w, "channels": 3 if colour else 1,
                    "variance": float(variance[i]),
                    "values": funcs[i].reshape(-1).cpu().numpy().astype(np.float32)})

    params = fit.params.cpu().numpy()
    units = pd.DataFrame({
        "layer": layer, "unit": np.arange(n), "module": path, "kind": kind,
        "channels": c, "kernel_h": h, "kernel_w": w,
        "norm": filters.reshape(n, -1).norm(dim=1).cpu().numpy(),
        "separability": sep.cpu().numpy(), "gabor_status": status,
        "gabor_r2": fit.r2.cpu().numpy(),
        **{f"gabor_{p}": params[:, i] for i, p in enumerate(PARAMS)},
    })
    units["gabor_nx"] = units["gabor_sigma_x"] * units["gabor_frequency"]
    units["gabor_ny"] = units["gabor_sigma_y"] * units["gabor_frequency"]
    bank_np = bank.cpu().numpy()[bank_idx.cpu().numpy()]
    units["bank_cos"] = bank_cos.cpu().numpy()
    units["bank_theta"] = bank_np[:, 0]
    units["bank_frequency"] = bank_np[:, 1]
    units["redundancy_cos"] = red_cos.cpu().numpy()
    units["redundancy_partner"] = red_partner.cpu().numpy()
    units["redundancy_transform"] = red_transform
    units["pca_match"] = match_idx
    units["pca_match_cos"] = match_cos
    units["map"] = list(maps.reshape(n, -1).cpu().numpy().astype(np.float32))
    units["fit"] = list(fit.fitted.reshape(n, -1).cpu().numpy().astype(np.float32))
    units["weights"] = list(filters.reshape(n, -1).cpu().numpy().astype(np.float32)) \
        if c <= 3 else [np.zeros(0, np.float32)] * n
    ok = [st == "ok" for st in status]
    r2 = fit.r2[torch.tensor(ok, dtype=torch.bool, device=fit.r2.device)] if any(ok) \
        else torch.tensor([float("nan")])
    rand_r2 = rand_fit.r2
    threshold = s["r2_threshold"]
    summary = pd.DataFrame([{
        "layer": layer, "module": path, "kind": kind, "units": n, "channels": c,
        "kernel_h": h, "kernel_w": w, "rank": rank,
        "status": "ok" if all(ok) else ("too_small" if status and status[0] == "too_small"
                                        else "partly_flat"),
        "gabor_r2_median": r2.nanmedian().item() if any(ok) else float("nan"),
        "gabor_r2_random_median": rand_r2.nanmedian().item(),
        "gabor_fraction_above": (r2 > threshold).double().mean().item() if any(ok)
        else float("nan"),
        "gabor_fraction_above_random": (rand_r2 > threshold).double().mean().item()
        if rand_fit.status[0] == "ok" else float("nan"),
        "r2_threshold": threshold,
        "bank_cos_mean": bank_cos.mean().item(),
        "bank_cos_random": rand_bank_cos.mean().item(),
        "redundancy_mean": red_cos.nanmean().item() if n > 1 else float("nan"),
        "redundancy_random": rand_red.nanmean().item(),
        "separability_mean": sep.nanmean().item(), "redundancy_on": redundancy_on,
        "pca_source": s["pca_source"], "random_filters": count, "same_filters_as": layer,
    }])
    return {"units": units, "energy": pd.DataFrame(curve_rows),
            "unit_energy": pd.concat(unit_energy, ignore_index=True),
            "subspaces": pd.DataFrame(sub_rows), "components": pd.DataFrame(comp_rows),
            "layers": summary}
