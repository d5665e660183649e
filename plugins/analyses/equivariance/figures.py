"""Figures of the ``equivariance`` tables (pure functions of the DataFrames)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from probe.views.columns import distinct, positions
from probe.views.plots import figure


def _named(layer: object, stride: object) -> str:
    """A layer's legend entry: its name, and its cumulative stride when it is known."""
    return f"{layer} (stride {stride:g})" if isinstance(stride, float) and \
        math.isfinite(stride) else str(layer)


def error_vs_shift_figure(errors: pd.DataFrame, transform: str) -> Any:
    """Relative error vs input shift in pixels, one line per layer.

    Filled markers: shifts that are whole cells of the layer's grid (the action
    is exact there), so the period of the cumulative stride shows as dips.
    """
    rows = errors[errors["transform"] == transform]
    # in order of first appearance, missing ones left out: as groupby(sort=False)
    layers = [x for x in distinct(rows["layer"]) if not pd.isna(x)]
    where = positions(rows["layer"], layers)
    pixels, error = rows["pixels"].to_numpy(), rows["relative_error"].to_numpy()
    exact, stride = rows["exact_action"].to_numpy(), rows["stride"].to_numpy()
    traces = []
    for i, layer in enumerate(layers):
        mine = np.flatnonzero(where == i)
        mine = mine[np.argsort(pixels[mine], kind="stable")]  # the sweep, by shift
        symbols = ["circle" if e else "circle-open" for e in exact[mine].tolist()]
        traces.append({"type": "scatter", "x": pixels[mine], "y": error[mine],
                       "mode": "lines+markers", "name": _named(layer, stride[mine[0]]),
                       "marker": {"symbol": symbols, "size": 8}})
    # tall enough for one legend entry per layer
    height = max(400, 22 * len(layers) + 120)
    return figure(traces, {
        "title": {"text": f"equivariance: {transform} — error vs shift (filled: whole cells)"},
        "xaxis": {"title": {"text": "input shift (pixels)"}},
        "yaxis": {"title": {"text": "relative error"}}, "height": height})


def error_vs_magnitude_figure(errors: pd.DataFrame, transform: str) -> Any:
    """Relative error vs magnitude (rotations, scalings, user transforms), one line per layer."""
    rows = errors[errors["transform"] == transform]
    unit = rows["unit"].iloc[0] if len(rows) else ""
    traces = []
    for layer, part in rows.groupby("layer", sort=False):
        part = part.sort_values("magnitude")
        traces.append({"type": "scatter", "x": part["magnitude"].to_numpy(),
                       "y": part["relative_error"].to_numpy(), "mode": "lines+markers",
                       "name": str(layer)})
    return figure(traces, {
        "title": {"text": f"equivariance: {transform} — error vs magnitude"},
        "xaxis": {"title": {"text": f"magnitude ({unit})"}},
        "yaxis": {"title": {"text": "relative error"}}, "height": 400})


def discrete_error_figure(errors: pd.DataFrame, transforms: list[str]) -> Any:
    """Grouped bars: error per layer for each discrete transformation element."""
    traces = []
    for name in transforms:
        rows = errors[(errors["transform"] == name) & (errors["magnitude"] != 0)]
        for magnitude, part in rows.groupby("magnitude", sort=True):
            traces.append({"type": "bar", "x": part["layer"].to_numpy(),
                           "y": part["relative_error"].to_numpy(),
                           "name": f"{name} {magnitude:g}"})
    return figure(traces, {
        "title": {"text": "equivariance: flips and quarter turns — error per layer"},
        "barmode": "group", "yaxis": {"title": {"text": "relative error"}}, "height": 400})


def learned_map_figure(maps: pd.DataFrame) -> Any:
    """1 − R² of the learned map next to the spatial-only and identity baselines."""
    import plotly.express as px

    long = maps.melt(id_vars=["layer", "transform", "magnitude"],
                     value_vars=["one_minus_r2", "spatial_one_minus_r2",
                                 "identity_one_minus_r2"], var_name="map", value_name="value")
    long["map"] = long["map"].map({"one_minus_r2": "learned (spatial + 1×1 mixing)",
                                   "spatial_one_minus_r2": "spatial only",
                                   "identity_one_minus_r2": "identity (invariance)"})
    long["element"] = long["transform"] + " " + long["magnitude"].map(lambda m: f"{m:g}")
    fig = px.bar(long, x="layer", y="value", color="map", barmode="group",
                 facet_col="element", facet_col_wrap=3,
                 title="learned equivariance maps (Lenc & Vedaldi): held-out 1 − R²")
    fig.update_layout(height=420)
    return fig


def lie_figure(lie: pd.DataFrame, attribution: pd.DataFrame) -> Any:
    """Relative Lie derivative per layer, and each layer's share of the output's."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "representation: ‖Lφ‖ / ‖φ‖", "share of the output Lie derivative (sums to 1)"))
    for name in dict.fromkeys(lie["transform"]):
        part = lie[(lie["transform"] == name) & lie["relative"].notna()]
        fig.add_trace(go.Scatter(x=part["layer"], y=part["relative"], mode="lines+markers",
                                 name=f"{name} (per {part['per'].iloc[0] if len(part) else ''})"),
                      row=1, col=1)
        share = attribution[attribution["transform"] == name]
        fig.add_trace(go.Bar(x=share["layer"], y=share["share"], name=f"{name} share"),
                      row=1, col=2)
    relative = lie["relative"].dropna()
    if len(relative) and (relative > 0).all():  # units differ per transform: log scale
        fig.update_yaxes(type="log", row=1, col=1)
    fig.update_layout(title="Lie derivative (Gruver et al.) and chain-rule attribution",
                      barmode="group", height=420)
    return fig


def consistency_figure(summary: pd.DataFrame, curve: pd.DataFrame) -> Any:
    """Accuracy, consistency and neighbouring-shift stability of the outputs."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    task = summary["task"].iloc[0] if len(summary) else ""
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        f"{task}: accuracy and consistency", "neighbouring 1-px diagonal shifts"))
    if len(summary):
        row = summary.iloc[0]
        fig.add_trace(go.Bar(x=["accuracy", "consistency", "P(top-1 change)"],
                             y=[row["accuracy"], row["consistency"], row["top1_change"]],
                             name="summary"), row=1, col=1)
    fig.add_trace(go.Scatter(x=curve["to_pixels"], y=curve["top1_change"],
                             mode="lines+markers", name="P(top-1 change)"), row=1, col=2)
    fig.add_trace(go.Scatter(x=curve["to_pixels"], y=curve["mean_abs_change"],
                             mode="lines+markers", name="mean |Δp|"), row=1, col=2)
    fig.update_xaxes(title_text="to diagonal shift (pixels)", row=1, col=2)
    fig.update_layout(title="output stability (Zhang 2019; Azulay & Weiss 2019)", height=400)
    return fig


def equivariance_figures(tables: Mapping[str, pd.DataFrame]) -> list[Any]:
    """Every figure the tables support, in reading order."""
    figures: list[Any] = []
    errors = tables.get("errors")
    if errors is not None and len(errors):
        discrete = []
        for name in dict.fromkeys(errors["transform"]):
            rows = errors[errors["transform"] == name]
            if rows["pixels"].notna().any():
                figures.append(error_vs_shift_figure(errors, name))
            elif set(rows["magnitude"]) <= {0.0, 1.0, 2.0, 3.0}:
                discrete.append(name)
            else:
                figures.append(error_vs_magnitude_figure(errors, name))
        if discrete:
            figures.append(discrete_error_figure(errors, discrete))
    maps = tables.get("learned_maps")
    if maps is not None and len(maps):
        figures.append(learned_map_figure(maps))
    lie, attribution = tables.get("lie"), tables.get("lie_attribution")
    if lie is not None and attribution is not None and len(lie):
        figures.append(lie_figure(lie, attribution))
    summary, curve = tables.get("consistency"), tables.get("shift_curve")
    if summary is not None and curve is not None and len(summary):
        figures.append(consistency_figure(summary, curve))
    return figures
