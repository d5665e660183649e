"""``filters``: learned filters against Gabor functions, PCA of image patches and
Gaussian derivatives (weights only by default; one data pass for a data-set PCA)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from probe import Accumulator, Analysis, Batch, Option, RunContext
from probe.architecture import conv_for_layer
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

#: Largest number of seeded random filters used for the Gabor-fit chance level.
RANDOM_FIT_LIMIT = 32
#: Largest n²·transforms·C·k² for which redundancy compares whole filters.
REDUNDANCY_BUDGET = 2e10


def layer_filters(conv: nn.Module) -> tuple[torch.Tensor, str]:
    """The filters of a convolution as cross-correlation kernels, one per output unit.

    ``Conv2d`` and ``DeformConv2d`` store ``[out, in/groups, h, w]`` already.
    ``ConvTranspose2d`` stores ``[in, out/groups, h, w]`` and applies each kernel
    flipped; its unit ``o`` is given the equivalent correlation kernel
    ``weight[group's inputs, o].flip(h, w)``.

    Returns:
        ``(Tensor[out, in/groups, h, w], kind)`` with kind ``conv``, ``transposed``
        or ``deformable``.
    """
    weight = conv.weight.detach()
    if weight.dim() != 4:
        raise ValueError(f"only 2-D convolutions have spatial filters, got weight shape "
                         f"{tuple(weight.shape)}")
    if isinstance(conv, nn.ConvTranspose2d):
        groups = conv.groups
        cin, out_per, h, w = weight.shape
        grouped = weight.reshape(groups, cin // groups, out_per, h, w).permute(0, 2, 1, 3, 4)
        return grouped.reshape(groups * out_per, cin // groups, h, w).flip(-2, -1), "transposed"
    kind = "deformable" if type(conv).__name__ == "DeformConv2d" else "conv"
    return weight, kind


def window(size: tuple[int, int], fraction: float, device: torch.device) -> torch.Tensor:
    """Gaussian window ``Tensor[h·w]`` with σ = ``fraction`` × half-width (all ones if 0)."""
    x, y = grid(size, torch.float64, device)
    if fraction <= 0:
        return torch.ones(size[0] * size[1], dtype=torch.float64, device=device)
    sigma = fraction * max((min(size) - 1) / 2, 0.5)
    return torch.exp(-(x ** 2 + y ** 2) / (2 * sigma ** 2)).reshape(-1)


def _filters_module(model: nn.Module, path: str) -> nn.Module | None:
    """The 2-D convolution whose filters make a layer, or ``None``.

    Uses ``probe.architecture.conv_for_layer``, but a fully connected layer (or any
    layer after one, such as its ReLU) has no spatial filters even though a
    convolution precedes it in module order: those get ``None``.
    """
    try:
        conv = conv_for_layer(model, path)
    except KeyError:
        return None
    if conv is None or getattr(conv, "weight", None) is None or conv.weight.dim() != 4:
        return None
    last = None
    for name, module in model.named_modules():
        if module is conv or isinstance(module, nn.Linear):
            last = module
        if name == path:
            break
    return conv if last is conv else None


@lru_cache(maxsize=16)
def _natural_moments(size: tuple[int, int], count: int, seed: int, color: bool = False
                     ) -> tuple[np.ndarray, np.ndarray, int]:
    from probe.plugins.analyses.filters.natural import sample_patches

    flat = sample_patches(size, count, seed, color=color).reshape(count, -1)
    return flat.sum(axis=0), flat.T @ flat, count


@dataclass
class _Moments:
    """Sums for an exact, mergeable patch covariance: Σx ``[D]``, Σxxᵀ ``[D, D]``, n."""

    total: torch.Tensor
    outer: torch.Tensor
    count: float = 0.0

    def covariance(self) -> torch.Tensor:
        n = max(self.count, 2.0)
        mean = self.total / n
        return (self.outer - n * torch.outer(mean, mean)) / (n - 1)


class FiltersAccumulator(Accumulator):
    """Weights are analysed in ``finalize``; ``update`` only gathers data-set patches."""

    def __init__(self, analysis: Filters, context: RunContext) -> None:
        self.settings = dict(analysis.settings)
        self.device = context.device
        self.seed = context.seed
        self.layers: dict[str, tuple[str, nn.Module | None]] = {}
        for name, path in context.layers.items():
            self.layers[name] = (path, _filters_module(context.model, path))
        self.sizes = sorted({tuple(c.weight.shape[-2:]) for _, c in self.layers.values()
                             if c is not None})
        self.moments: dict[tuple[int, int], _Moments] = {}
        if self.settings["pca_source"] == "dataset":
            for size in self.sizes:
                d = size[0] * size[1]
                self.moments[size] = _Moments(
                    torch.zeros(d, dtype=torch.float64, device=self.device),
                    torch.zeros(d, d, dtype=torch.float64, device=self.device))

    # -- data pass (pca_source="dataset" only) -------------------------------------------
    def update(self, batch: Batch) -> None:
        if not self.moments:
            return
        images = batch.images.to(torch.float64)
        if images.shape[1] == 3:
            weights = torch.tensor([0.299, 0.587, 0.114], dtype=images.dtype,
                                   device=images.device)
            gray = (images * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        else:
            gray = images.mean(dim=1, keepdim=True)
        for size, moments in self.moments.items():
            if size[0] > gray.shape[2] or size[1] > gray.shape[3]:
                continue
            stride = max(1, min(size) // 2)
            cols = torch.nn.functional.unfold(gray, size, stride=stride)  # [B, D, L]
            flat = cols.transpose(1, 2).reshape(-1, size[0] * size[1])
            moments.total += flat.sum(dim=0)
            moments.outer += flat.T @ flat
            moments.count += flat.shape[0]

    def merge(self, other: Accumulator) -> None:
        if not isinstance(other, FiltersAccumulator):
            raise TypeError(f"cannot merge {type(other).__name__} into FiltersAccumulator")
        for size, moments in other.moments.items():
            mine = self.moments[size]
            mine.total += moments.total.to(mine.total.device)
            mine.outer += moments.outer.to(mine.outer.device)
            mine.count += moments.count

    # -- analysis --------------------------------------------------------------------------
    def _covariance(self, size: tuple[int, int]) -> tuple[torch.Tensor, int]:
        if self.settings["pca_source"] == "dataset":
            moments = self.moments[size]
            if moments.count < 2:
                raise ValueError(f"the data set's images are smaller than the {size} kernels; "
                                 f"no patches for a PCA (use filters.pca_source=natural)")
            return moments.covariance(), int(moments.count)
        total, outer, n = _natural_moments(size, self.settings["patches"], self.seed)
        moments = _Moments(torch.from_numpy(total).to(self.device),
                           torch.from_numpy(outer).to(self.device), float(n))
        return moments.covariance(), n

    def _bases(self, size: tuple[int, int]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{basis: (functions Tensor[M, h, w], variance Tensor[M])}`` for a kernel size."""
        cov, _ = self._covariance(size)
        win = window(size, self.settings["pca_window"], self.device)
        pca, var = pca_from_covariance(cov, size)
        pca_w, var_w = pca_from_covariance(win[:, None] * cov * win[None, :], size)
        deriv = gaussian_derivatives(size, device=self.device)
        nan = torch.full((deriv.shape[0],), float("nan"), dtype=torch.float64)
        return {"derivative": (deriv, nan), "pca": (pca, var), "pca_windowed": (pca_w, var_w)}

    def _color_pca(self, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """PCA of RGB natural patches: ``(Tensor[3·h·w, 3, h, w], Tensor[3·h·w])``."""
        total, outer, n = _natural_moments(size, self.settings["patches"], self.seed, True)
        moments = _Moments(torch.from_numpy(total).to(self.device),
                           torch.from_numpy(outer).to(self.device), float(n))
        comps, var = pca_from_covariance(moments.covariance(), (3 * size[0], size[1]))
        return comps.reshape(-1, 3, *size), var

    def finalize(self) -> dict[str, pd.DataFrame]:
        frames: dict[str, list[pd.DataFrame]] = {name: [] for name in Filters.tables}
        done: dict[int, tuple[str, dict[str, pd.DataFrame]]] = {}
        for layer, (path, conv) in self.layers.items():
            if conv is None:
                frames["layers"].append(pd.DataFrame([{
                    "layer": layer, "module": path, "kind": "none", "units": 0,
                    "status": "no_convolution"}]))
                continue
            if id(conv) in done:
                # Another layer name for the same filters (conv → ReLU → pool): same numbers.
                first, tables = done[id(conv)]
                result = {name: frame.assign(layer=layer) for name, frame in tables.items()}
                result["layers"] = result["layers"].assign(module=path, same_filters_as=first)
                result["units"] = result["units"].assign(module=path)
            else:
                # One generator per filter bank: results do not depend on layer order.
                generator = torch.Generator().manual_seed(self.seed)
                result = self._layer(layer, path, conv, generator)
                done[id(conv)] = (layer, result)
            for name, frame in result.items():
                frames[name].append(frame)
        out = {}
        for name, columns in Filters.tables.items():
            parts = [f for f in frames[name] if len(f)]
            out[name] = pd.concat(parts, ignore_index=True) if parts else \
                pd.DataFrame(columns=list(columns))
        # Layers without filters still carry every declared column (NaN there).
        extra = [c for c in out["layers"].columns if c not in Filters.tables["layers"]]
        out["layers"] = out["layers"].reindex(columns=[*Filters.tables["layers"], *extra])
        return out

    def _layer(self, layer: str, path: str, conv: nn.Module,
               generator: torch.Generator) -> dict[str, pd.DataFrame]:
        s = self.settings
        weights, kind = layer_filters(conv)
        filters = weights.to(self.device, torch.float64)
        n, c, h, w = filters.shape
        size, dim = (h, w), h * w
        maps, sep = reduce_channels(filters)
        fit = fit_gabors(maps, s["orientations"], s["phases"], s["iterations"])
        status = fit.status

        # Seeded random filters of the same shape: the empirical chance level.
        count = s["random_filters"]
        rand = torch.randn(count, c, h, w, generator=generator,
                           dtype=torch.float64).to(self.device)
        rand_maps, _ = reduce_channels(rand)
        rand_fit = fit_gabors(rand_maps[:RANDOM_FIT_LIMIT], s["orientations"], s["phases"],
                              s["iterations"])
        pairs, bank = quadrature_bank(size, s["bank_orientations"], device=self.device)
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

        bases = self._bases(size)
        match_idx, match_cos = hungarian_match(maps, bases["pca"][0])
        slices = filters.reshape(n * c, dim)
        _, sv, layer_vh = torch.linalg.svd(slices, full_matrices=False)
        rank = int((sv > 1e-10 * sv.max().clamp_min(1e-300)).sum())
        curve_rows, unit_energy, sub_rows, comp_rows = [], [], [], []
        functions = {name: f for name, (f, _) in bases.items()} | {"layer_svd": None}
        if c == 3 and s["pca_source"] == "natural":
            # Colour filters against the PCA of RGB patches (colour-opponent blobs etc.).
            bases["pca_color"] = self._color_pca(size)
            functions["pca_color"] = bases["pca_color"][0]
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
                variance = bases[basis][1].cpu().numpy()
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


class Filters(Analysis):
    """Learned filters against engineered bases: Gabor fits and banks, PCA of image
    patches, Gaussian derivatives, and redundancy under rotations.

    Per layer (any 2-D convolution, found with ``probe.architecture.conv_for_layer``):

    * **Gabor fit** — 9-parameter Gabor (REFERENCE §2) fitted by batched
      Levenberg–Marquardt from orientation × phase starts to each filter's
      spatial map; R² = 1 − SSE/SST, parameters, Ringach's ``nx = σx·f``,
      ``ny = σy·f`` (Ringach 2002). Colour (multi-channel) filters are reduced to
      one signed map by SVD of the ``C × k²`` matrix; ``σ₁²/Σσ²`` is their
      separability. Kernels under 5 px get status ``too_small`` and no fit.
    * **Gabor bank** — best phase-invariant |cos| over a bank of centred
      quadrature pairs (8 orientations, octave-spaced frequencies).
    * **PCA** — principal components of natural image patches at the kernel
      size (Hancock, Baddeley & Smith 1992), plain (``pca``) and under a Gaussian
      window (``pca_windowed``, Hancock's setting), sign-canonicalised; from the
      images bundled with scikit-image/scikit-learn, or (``pca_source=dataset``)
      from the run's data set in one pass (exact, mergeable covariance sums).
    * **Gaussian derivatives** — orders 0–4, standard order, half-width 3σ
      (Jacobsen et al. 2016).
    * Per filter: energy fraction in each basis span next to the chance level
      ``dim/k²`` and the mean over seeded random Gaussian filters; Hungarian
      one-to-one matching to the PCA components. Per layer: principal angles
      (``scipy.linalg.subspace_angles``, radians, largest first) between the top
      ``m`` singular directions of the layer's channel slices and each basis.
    * **Redundancy** — for each filter, the best |cos| with another filter of the
      layer under the 8 rotations/flips of the square (and optionally
      interpolated rotations), so rotated copies are found.

    Departures: the Gabor fit is on the SVD-reduced map, not the colour filter;
    the bank is centred only (no positional search); energy in a span counts all
    channel slices of a filter; the layer's "own" basis (``layer_svd``) is its
    top singular directions, an upper bound for the curves. See docs/filters.md.
    """

    name = "filters"
    description = "learned filters vs Gabor fits/banks, natural-patch PCA, Gaussian derivatives"
    options = (
        Option("pca_source", str, "natural", "patches for the PCA basis: bundled natural "
               "images, or the run's data set (one pass)", choices=("natural", "dataset")),
        Option("patches", int, 20000, "natural patches sampled per kernel size", minimum=100,
               maximum=1_000_000),
        Option("pca_window", float, 0.5, "σ of the Gaussian window of pca_windowed, as a "
               "fraction of the kernel half-width", minimum=0.0),
        Option("orientations", int, 4, "grid orientations per Gabor fit (plus the spectral "
               "peak)", minimum=1, maximum=64),
        Option("phases", int, 4, "starting phases per orientation", minimum=1, maximum=16),
        Option("iterations", int, 40, "Levenberg–Marquardt iterations", minimum=0,
               maximum=1000),
        Option("bank_orientations", int, 8, "orientations of the quadrature Gabor bank",
               minimum=1, maximum=64),
        Option("rotations", int, 4, "rotations searched for redundancy (multiple of 4; "
               "> 4 adds interpolated angles)", minimum=4, maximum=64),
        Option("random_filters", int, 256, "seeded random filters for chance levels",
               minimum=2, maximum=100_000),
        Option("r2_threshold", float, 0.7, "R² above which a filter counts as Gabor-like",
               minimum=0.0, maximum=1.0),
    )
    passes = 0
    tables = {
        "units": ("layer", "unit", "kind", "channels", "kernel_h", "kernel_w", "separability",
                  "gabor_status", "gabor_r2", *(f"gabor_{p}" for p in PARAMS), "gabor_nx",
                  "gabor_ny", "bank_cos", "bank_theta", "bank_frequency", "redundancy_cos",
                  "redundancy_partner", "redundancy_transform", "pca_match", "pca_match_cos",
                  "map", "fit"),
        "layers": ("layer", "module", "kind", "units", "channels", "kernel_h", "kernel_w",
                   "rank", "status", "gabor_r2_median", "gabor_r2_random_median",
                   "gabor_fraction_above", "gabor_fraction_above_random", "r2_threshold",
                   "bank_cos_mean", "bank_cos_random", "redundancy_mean", "redundancy_random",
                   "redundancy_on", "separability_mean", "pca_source", "random_filters",
                   "same_filters_as"),
        "energy": ("layer", "basis", "dim", "order", "energy_mean", "energy_median", "chance",
                   "random_mean"),
        "unit_energy": ("layer", "unit", "basis", "dim", "energy", "chance", "random"),
        "subspaces": ("layer", "basis", "dim", "angles", "mean_cos2", "chance_cos2",
                      "energy_mean", "energy_chance", "energy_random"),
        "components": ("layer", "basis", "index", "name", "kernel_h", "kernel_w", "values"),
    }

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        if self.settings["rotations"] % 4:
            from probe.errors import OptionError

            raise OptionError(f"analysis filters option rotations must be a multiple of 4, "
                              f"got {self.settings['rotations']}")

    def num_passes(self) -> int:
        return 1 if self.settings["pca_source"] == "dataset" else 0

    def select_layers(self, context: RunContext) -> list[str]:
        return []  # weights only: nothing to capture

    def accumulator(self, context: RunContext) -> FiltersAccumulator:
        return FiltersAccumulator(self, context)

    @classmethod
    def figures(cls, tables: Mapping[str, pd.DataFrame]) -> list[Any]:
        from probe.plugins.analyses.filters.figures import make_figures

        return make_figures(tables)


__all__ = ["Filters", "FiltersAccumulator", "layer_filters", "window"]
