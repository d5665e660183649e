"""Figures of ``dissection``: pure functions of its tables (dashboard and report share them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd


def hierarchy_figure(summary: pd.DataFrame) -> Any:
    """The hierarchy-of-parts chart: share of units detecting each category, per layer."""
    import plotly.graph_objects as go

    fig = go.Figure()
    ordered = summary.sort_values("layer_index", kind="stable")
    layers = list(dict.fromkeys(ordered["layer"]))
    for category, rows in ordered.groupby("category", sort=False):
        fig.add_trace(go.Scatter(x=rows["layer"], y=rows["share_of_units"], mode="lines+markers",
                                 name=str(category),
                                 customdata=rows[["detectors", "unique_concepts"]].to_numpy(),
                                 hovertemplate="%{x}: %{y:.1%} of units<br>detectors "
                                               "%{customdata[0]}, unique concepts "
                                               "%{customdata[1]}<extra>%{fullData.name}</extra>"))
    fig.update_layout(title="dissection: share of units detecting each category, per layer",
                      xaxis={"title": "layer", "categoryorder": "array", "categoryarray": layers},
                      yaxis={"title": "share of units", "tickformat": ".0%"}, height=400)
    return fig


def detector_counts_figure(summary: pd.DataFrame) -> Any:
    """Detector units (bars) and unique concepts (markers) per layer and category."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    ordered = summary.sort_values("layer_index", kind="stable")
    fig = make_subplots(rows=1, cols=2, subplot_titles=("detector units",
                                                        "unique concepts"))
    for category, rows in ordered.groupby("category", sort=False):
        fig.add_trace(go.Bar(x=rows["layer"], y=rows["detectors"], name=str(category),
                             legendgroup=str(category)), row=1, col=1)
        fig.add_trace(go.Bar(x=rows["layer"], y=rows["unique_concepts"], name=str(category),
                             legendgroup=str(category), showlegend=False), row=1, col=2)
    fig.update_layout(barmode="stack", height=380,
                      title="dissection: detectors and unique concepts per layer")
    return fig


def iou_distribution_figure(units: pd.DataFrame, iou_threshold: float | None = None) -> Any:
    """Box plot of each unit's best IoU per layer, with the detector threshold."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for layer in dict.fromkeys(units["layer"]):
        rows = units[units["layer"] == layer]
        fig.add_trace(go.Box(y=rows["iou"], name=str(layer), boxpoints="outliers",
                             showlegend=False))
    if iou_threshold is not None:
        fig.add_hline(y=iou_threshold, line_dash="dash",
                      annotation_text=f"detector: IoU > {iou_threshold:g}")
    fig.update_layout(title="dissection: best IoU per unit", yaxis_title="IoU", height=380)
    return fig


def edges_figure(edges: pd.DataFrame) -> Any:
    """Part→object edges: weight-path share against the ablation drop."""
    import plotly.graph_objects as go

    fig = go.Figure()
    if not edges.empty:
        text = (edges["part_layer"].astype(str) + ":" + edges["part_unit"].astype(str) + " "
                + edges["part_name"].astype(str) + " → " + edges["object_layer"].astype(str)
                + ":" + edges["object_unit"].astype(str) + " "
                + edges["object_name"].astype(str))
        fig.add_trace(go.Scatter(x=edges["weight_path"], y=edges["ablation_drop"],
                                 mode="markers", text=text, hoverinfo="text"))
    fig.update_layout(title="dissection: part → object edges",
                      xaxis_title="weight-path share", yaxis_title="relative activation drop "
                      "when the part unit is ablated", height=380)
    return fig


def dissection_figures(tables: Mapping[str, pd.DataFrame]) -> list[Any]:
    """Every figure of a dissection run, in display order."""
    figures = []
    if "summary" in tables and not tables["summary"].empty:
        figures += [hierarchy_figure(tables["summary"]),
                    detector_counts_figure(tables["summary"])]
    if "units" in tables and not tables["units"].empty:
        threshold = None
        layers = tables.get("layers")
        if layers is not None and not layers.empty:
            threshold = float(layers["iou_threshold"].iloc[0])
        figures.append(iou_distribution_figure(tables["units"], threshold))
    if "edges" in tables and not tables["edges"].empty:
        figures.append(edges_figure(tables["edges"]))
    return figures
