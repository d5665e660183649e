"""The ``filters`` accumulator: declared patch sums for a data-set PCA; weights in ``finalize``.

Weight-only by default (no state at all). With ``pca_source=dataset`` it
declares, per kernel size of the run's filters (keyed ``"7x7"``), the exact
sums Σx, Σxxᵀ and n of the run's luminance patches (:class:`PatchMoments`,
every tensor reduced with ``"sum"``), so shards merge with no code here and
a sharded run gives the same covariance. It keeps no module: ``finalize``
finds each layer's convolution from ``context.model`` and ``context.layers``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch.nn import functional as F

from probe import Accumulator, Batch, RunContext, State
from probe.plugins.analyses.filters.gabor import PARAMS
from probe.plugins.analyses.filters.measure import covariance, measure_layer, natural_covariance
from probe.plugins.analyses.filters.weights import filters_module, size_key

#: ``{table: declared columns}`` of the ``filters`` analysis.
TABLES: dict[str, tuple[str, ...]] = {
    "units": ("layer", "unit", "kind", "channels", "kernel_h", "kernel_w", "separability",
              "gabor_status", "gabor_r2", *(f"gabor_{p}" for p in PARAMS), "gabor_nx",
              "gabor_ny", "bank_cos", "bank_theta", "bank_frequency", "redundancy_cos",
              "redundancy_partner", "redundancy_transform", "pca_match", "pca_match_cos",
              "map", "fit", "weights"),
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

#: Luminance weights of RGB images (ITU-R BT.601).
LUMA = (0.299, 0.587, 0.114)


class PatchMoments(State):
    """Sums for an exact, mergeable patch covariance: Σx ``[D]``, Σxxᵀ ``[D, D]``, n.

    All three are declared ``"sum"`` (float64, n as int64), so two shards add.
    """

    def __init__(self, size: tuple[int, int], device: torch.device) -> None:
        d = size[0] * size[1]
        self.add_state("total", torch.zeros(d, dtype=torch.float64, device=device), "sum")
        self.add_state("outer", torch.zeros(d, d, dtype=torch.float64, device=device), "sum")
        self.add_state("count", torch.zeros((), dtype=torch.int64, device=device), "sum")

    def update(self, flat: torch.Tensor) -> None:
        """Add patches ``Tensor[N, D]`` (float64)."""
        self.total += flat.sum(dim=0)
        self.outer += flat.T @ flat
        self.count += flat.shape[0]

    def covariance(self) -> torch.Tensor:
        """The sample covariance ``[D, D]`` (n taken as at least 2)."""
        return covariance(self.total, self.outer, float(self.count))


def luminance(images: torch.Tensor) -> torch.Tensor:
    """``Tensor[B, 1, H, W]`` float64 luminance of ``[B, C, H, W]`` images (mean if C ≠ 3)."""
    images = images.to(torch.float64)
    if images.shape[1] == 3:
        weights = torch.tensor(LUMA, dtype=images.dtype, device=images.device)
        return (images * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
    return images.mean(dim=1, keepdim=True)


class FiltersAccumulator(Accumulator):
    """Weights are analysed in ``finalize``; ``update`` only gathers data-set patches.

    Args:
        settings: The analysis's resolved options.
        sizes: Kernel sizes ``(h, w)`` of the run's filters; with
            ``settings["pca_source"] == "dataset"`` the state ``patches`` holds a
            :class:`PatchMoments` for each (keyed ``"7x7"``), else it is empty.
        device: The run's device (where the sums live).
    """

    def __init__(self, settings: Mapping[str, Any], sizes: Sequence[tuple[int, int]],
                 device: torch.device) -> None:
        self.settings = dict(settings)
        self.sizes = {size_key(size): tuple(size) for size in sizes}
        dataset = self.settings["pca_source"] == "dataset"
        self.add_state("patches", {key: PatchMoments(size, device)
                                   for key, size in self.sizes.items()} if dataset else {})

    # -- data pass (pca_source="dataset" only) -------------------------------------------
    def update(self, batch: Batch) -> None:
        if not self.patches:
            return
        gray = luminance(batch.images)
        for key, moments in self.patches.items():
            size = self.sizes[key]
            if size[0] > gray.shape[2] or size[1] > gray.shape[3]:
                continue
            stride = max(1, min(size) // 2)
            cols = F.unfold(gray, size, stride=stride)  # [B, D, L]
            moments.update(cols.transpose(1, 2).reshape(-1, size[0] * size[1]))

    # -- analysis --------------------------------------------------------------------------
    def _covariance(self, size: tuple[int, int], context: RunContext) -> torch.Tensor:
        if self.settings["pca_source"] == "dataset":
            moments = self.patches[size_key(size)]
            if int(moments.count) < 2:
                raise ValueError(f"the data set's images are smaller than the {size} kernels; "
                                 f"no patches for a PCA (use filters.pca_source=natural)")
            return moments.covariance().to(context.device)
        cov, _ = natural_covariance(size, self.settings["patches"], context.seed,
                                    context.device)
        return cov

    def finalize(self, context: RunContext) -> dict[str, pd.DataFrame]:
        frames: dict[str, list[pd.DataFrame]] = {name: [] for name in TABLES}
        done: dict[int, tuple[str, dict[str, pd.DataFrame]]] = {}
        for layer, path in context.layers.items():
            conv = filters_module(context.model, path)
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
                size = tuple(int(v) for v in conv.weight.shape[-2:])
                result = measure_layer(layer, path, conv, self._covariance(size, context),
                                       self.settings, context.device, context.seed)
                done[id(conv)] = (layer, result)
            for name, frame in result.items():
                frames[name].append(frame)
        out = {}
        for name, columns in TABLES.items():
            parts = [f for f in frames[name] if len(f)]
            out[name] = pd.concat(parts, ignore_index=True) if parts else \
                pd.DataFrame(columns=list(columns))
        # Layers without filters still carry every declared column (NaN there).
        extra = [c for c in out["layers"].columns if c not in TABLES["layers"]]
        out["layers"] = out["layers"].reindex(columns=[*TABLES["layers"], *extra])
        return out
