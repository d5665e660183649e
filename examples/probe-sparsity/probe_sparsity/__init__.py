"""probe-sparsity: how sparse are a network's activations?

For every captured layer: per unit, the fraction of activations at or below
``epsilon`` (a "dead" unit is one that never exceeds it), and per layer a
histogram of all activations over fixed bins. Both are declared sums, so
shards reduce exactly with no merge code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch

from probe import Accumulator, Analysis, Batch, Option, Register, RunContext, hookimpl, views
from probe.views import RunView


class SparsityAccumulator(Accumulator):
    """Per-layer counts on the model's device, declared as sums: no merge code."""

    def __init__(self, layers: list[str], units: dict[str, int], epsilon: float, bins: int,
                 low: float, high: float, device: torch.device) -> None:
        self.layers, self.epsilon = layers, epsilon
        self.bins, self.low, self.high = bins, low, high
        counts = {layer: torch.zeros(units[layer], dtype=torch.int64, device=device)
                  for layer in layers}
        self.add_state("quiet", counts, "sum")                     # [units] activations <= eps
        self.add_state("total", {k: v.clone() for k, v in counts.items()}, "sum")  # [units] seen
        self.add_state("histogram", {layer: torch.zeros(bins, dtype=torch.int64, device=device)
                                     for layer in layers}, "sum")  # [bins] over the layer

    def update(self, batch: Batch) -> None:
        for layer in self.layers:
            act = batch.activations[layer].float()
            per_unit = act.transpose(0, 1).reshape(act.shape[1], -1)   # [units, samples]
            self.quiet[layer] += (per_unit <= self.epsilon).sum(dim=1)
            self.total[layer] += per_unit.shape[1]
            clipped = act.clamp(self.low, self.high)
            self.histogram[layer] += torch.histc(clipped, self.bins, self.low,
                                                 self.high).long()

    def finalize(self, context: RunContext) -> dict[str, pd.DataFrame]:
        units, histograms = [], []
        edges = np.linspace(self.low, self.high, self.bins + 1)
        for layer in self.layers:
            fraction = (self.quiet[layer].double() / self.total[layer].double()).cpu().numpy()
            units.append(pd.DataFrame({"layer": layer, "unit": np.arange(len(fraction)),
                                       "fraction_quiet": fraction, "dead": fraction == 1.0}))
            histograms.append(pd.DataFrame({"layer": layer, "bin_low": edges[:-1],
                                            "bin_high": edges[1:],
                                            "count": self.histogram[layer].cpu().numpy()}))
        return {"units": pd.concat(units, ignore_index=True),
                "histogram": pd.concat(histograms, ignore_index=True)}


class Sparsity(Analysis):
    """Fraction of near-zero activations per unit, dead units, and activation histograms."""

    name = "sparsity"
    description = "per-unit fraction of activations <= epsilon, dead units, histograms"
    options = (
        Option("epsilon", float, 0.0, "activations at or below this count as quiet"),
        Option("bins", int, 50, "histogram bins", minimum=2, maximum=10_000),
        Option("low", float, -3.0, "histogram lower edge (values below are clipped)"),
        Option("high", float, 3.0, "histogram upper edge (values above are clipped)"),
    )
    passes = 1
    tables = {
        "units": ("layer", "unit", "fraction_quiet", "dead"),
        "histogram": ("layer", "bin_low", "bin_high", "count"),
    }

    def __init__(self, **settings: object) -> None:
        super().__init__(**settings)
        if self.settings["low"] >= self.settings["high"]:
            raise ValueError(f"sparsity.low must be < sparsity.high, got "
                             f"{self.settings['low']} >= {self.settings['high']}")

    def accumulator(self, context: RunContext) -> SparsityAccumulator:
        s = self.settings
        layers = self.select_layers(context)
        units = {layer: context.layer_shapes[layer][0] for layer in layers}
        return SparsityAccumulator(layers, units, s["epsilon"], s["bins"], s["low"], s["high"],
                                   context.device)

    # -- what the dashboard and the report show (probe.views hooks) ------------------
    @classmethod
    def figures(cls, tables: Mapping[str, pd.DataFrame]) -> list[Any]:
        import plotly.express as px

        units = tables["units"]
        return [px.box(units, x="layer", y="fraction_quiet",
                       title="sparsity: fraction of quiet activations per unit")]

    @classmethod
    def layer_views(cls, run: RunView, layer: str) -> list[Any]:
        import plotly.graph_objects as go

        hist = run.table("sparsity", "histogram", layer=layer)
        units = run.table("sparsity", "units", layer=layer)
        if hist is None or units is None:
            return []
        fig = go.Figure(go.Bar(x=(hist["bin_low"] + hist["bin_high"]) / 2, y=hist["count"]))
        fig.update_layout(title=f"activations of {layer}", xaxis_title="activation",
                          yaxis_title="count", height=300)
        rows = units.assign(href=[run.unit_link(layer, u) for u in units["unit"]])
        return [views.Figure(fig, caption="All activations of the layer (clipped to the "
                                          "histogram's range).", name="histogram"),
                views.Table(rows[["unit", "fraction_quiet", "dead", "href"]], name="units",
                            caption=f"{int(units['dead'].sum())} of {len(units)} units are dead",
                            labels={"fraction_quiet": "quiet share"},
                            formats={"fraction_quiet": "percent"}, links={"unit": "href"},
                            sort=("fraction_quiet", True))]

    @classmethod
    def unit_views(cls, run: RunView, layer: str, unit: int) -> list[Any]:
        rows = run.unit_rows("sparsity", "units", layer, unit)
        if rows is None or rows.empty:
            return []
        row = rows.iloc[0]
        return [views.Facts([("quiet share", float(row["fraction_quiet"])),
                             ("dead", bool(row["dead"]))], formats={"quiet share": "percent"})]

    @classmethod
    def unit_columns(cls, run: RunView, layer: str) -> views.UnitColumns | None:
        units = run.table("sparsity", "units", layer=layer)
        if units is None:
            return None
        return views.UnitColumns(units[["unit", "fraction_quiet", "dead"]],
                                 labels={"fraction_quiet": "quiet share"},
                                 formats={"fraction_quiet": "percent"})

    @classmethod
    def headlines(cls, run: RunView) -> list[views.Headline]:
        units = run.table("sparsity", "units")
        if units is None:
            return []
        return [views.Headline("dead units", int(units["dead"].sum()),
                               f"of {len(units)} (never above epsilon)")]


@hookimpl
def probe_register_analyses(register: Register) -> None:
    register(Sparsity)
