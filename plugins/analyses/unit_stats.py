"""``unit-stats``: per-unit activation statistics and top-activating images.

For every captured layer and unit: mean, standard deviation, maximum and
fraction of positive activations over every position of every image, and the
``top_k`` images ranked by their maximum activation, each kept with its
activation map (downsampled to at most ``map_size`` pixels a side). Streamed
with exact mergeable state: memory is ``O(units · top_k · map_size²)``,
independent of the number of images.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F

from probe import Accumulator, Analysis, Batch, Option, Register, RunContext, hookimpl
from probe.stats import RunningMoments, TopK, as_maps, as_units_by_samples


class UnitStatsAccumulator(Accumulator):
    """Running moments and top-k buffers for each layer, allocated from the layer shapes.

    State (declared, so shards reduce with no merge code): per layer a
    :class:`RunningMoments` (sums and maxima) and a :class:`TopK` (the top-k
    merge), and the class label of every data-set image (``-1`` = not seen by
    this shard; the shards' labels reduce with ``max``).
    """

    def __init__(self, layers: list[str], shapes: Mapping[str, tuple[int, ...]],
                 num_images: int, top_k: int, map_size: int, device: torch.device) -> None:
        self.layers = layers
        self.top_k = top_k
        self.map_size = map_size
        moments, top = {}, {}
        for layer in layers:
            units = shapes[layer][0]
            moments[layer] = RunningMoments(units, device)
            top[layer] = TopK(units, top_k, device, self._map_shape(shapes[layer]))
        self.add_state("moments", moments)
        self.add_state("top", top, "merge")
        self.add_state("labels", torch.full((num_images,), -1, dtype=torch.int64,
                                            device=device), "max")

    def _map_shape(self, shape: tuple[int, ...]) -> tuple[int, int]:
        h, w = as_maps(torch.empty((1, *shape), device="meta")).shape[-2:]
        if max(h, w) > self.map_size:
            scale = self.map_size / max(h, w)
            return (max(1, round(h * scale)), max(1, round(w * scale)))
        return (h, w)

    def _maps(self, activation: torch.Tensor) -> torch.Tensor:
        maps = as_maps(activation)
        size = self._map_shape(tuple(activation.shape[1:]))
        if tuple(maps.shape[-2:]) != size:
            maps = F.adaptive_avg_pool2d(maps, size)
        return maps

    def update(self, batch: Batch) -> None:
        for layer in self.layers:
            act = batch.activations[layer].float()
            self.moments[layer].update(as_units_by_samples(act))
            peak = as_maps(act).flatten(2).amax(dim=2).T  # [K, B]
            self.top[layer].update(peak, batch.indices, self._maps(act).transpose(0, 1))
        self.labels[batch.indices] = batch.labels.to(torch.int64)

    def _labels_of(self, indices: np.ndarray) -> np.ndarray:
        table = self.labels.cpu().numpy()
        inside = (indices >= 0) & (indices < len(table))
        return np.where(inside, table[np.clip(indices, 0, max(len(table) - 1, 0))], -1) \
            if len(table) else np.full(len(indices), -1)

    def finalize(self, context: RunContext) -> dict[str, pd.DataFrame]:
        unit_rows, top_rows = [], []
        for layer in self.layers:
            m, top = self.moments[layer], self.top[layer]
            units = m.count.shape[0]
            unit_rows.append(pd.DataFrame({
                "layer": layer, "unit": np.arange(units),
                "mean": m.mean().cpu().numpy(), "std": m.std().cpu().numpy(),
                "max": m.maximum.cpu().numpy(),
                "fraction_positive": (m.positive.double() / m.count.clamp(min=1)).cpu().numpy(),
                "count": m.count.cpu().numpy(),
            }))
            values, indices = top.values.cpu().numpy(), top.indices.cpu().numpy()
            payload = top.payload.cpu().numpy() if top.payload is not None else None
            kept = values.shape[1]
            unit_idx, rank = np.meshgrid(np.arange(units), np.arange(kept), indexing="ij")
            h, w = (payload.shape[2:] if payload is not None else (0, 0))
            top_rows.append(pd.DataFrame({
                "layer": layer, "unit": unit_idx.ravel(), "rank": rank.ravel(),
                "image": indices.ravel(), "value": values.ravel(),
                "label": self._labels_of(indices.ravel()),
                "map_height": h, "map_width": w,
                "map": list(payload.reshape(units * kept, -1).astype(np.float32))
                if payload is not None else None,
            }))
        return {
            "units": pd.concat(unit_rows, ignore_index=True) if unit_rows else
            pd.DataFrame(columns=list(UnitStats.tables["units"])),
            "top_images": pd.concat(top_rows, ignore_index=True) if top_rows else
            pd.DataFrame(columns=list(UnitStats.tables["top_images"])),
        }


def activation_summary_figure(units: pd.DataFrame):
    """Box plot of per-unit maximum activation and fraction positive, per layer."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("max activation per unit",
                                                        "fraction of positive activations"))
    layers = pd.unique(units["layer"].to_numpy(dtype=object)).tolist()
    for layer in layers:
        rows = units[units["layer"] == layer]
        fig.add_trace(go.Box(y=rows["max"], name=layer, showlegend=False), row=1, col=1)
        fig.add_trace(go.Box(y=rows["fraction_positive"], name=layer, showlegend=False),
                      row=1, col=2)
    fig.update_layout(title="unit-stats: activation summary per layer", height=380)
    return fig


class UnitStats(Analysis):
    """Per-unit activation statistics and the top-k images of each unit (one pass)."""

    name = "unit-stats"
    description = "per-unit mean/std/max/fraction positive and top-k images with maps"
    options = (
        Option("top_k", int, 8, "images kept per unit", minimum=1, maximum=256),
        Option("map_size", int, 16, "largest side of stored activation maps", minimum=1),
    )
    passes = 1
    tables = {
        "units": ("layer", "unit", "mean", "std", "max", "fraction_positive", "count"),
        "top_images": ("layer", "unit", "rank", "image", "value", "label", "map"),
    }

    #: The view hooks, as plain functions (see probe.views.AnalysisViews.views_from).
    views_from = ("probe.plugins.analyses.unit_stats_views",)

    def accumulator(self, context: RunContext) -> UnitStatsAccumulator:
        size = len(context.dataset) if context.dataset is not None else 0
        return UnitStatsAccumulator(self.select_layers(context), context.layer_shapes, size,
                                    self.settings["top_k"], self.settings["map_size"],
                                    context.device)

    @classmethod
    def figures(cls, tables: Mapping[str, pd.DataFrame]) -> list[Any]:
        return [activation_summary_figure(tables["units"])]

    # -- views (probe.views hooks; the work is in unit_stats_views) ----------------------









@hookimpl
def probe_register_analyses(register: Register) -> None:
    register(UnitStats)
