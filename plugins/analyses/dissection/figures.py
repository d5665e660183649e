"""Figures of ``dissection``: pure functions of its tables (dashboard and report share them).

Every category has the colour :func:`probe.views.plots.category_color` gives it, and
categories are stacked from low to high level (colour at the bottom, scenes on top).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from probe.views.plots import category_color

#: Concept categories from low to high level (stacking and legend order).
CATEGORY_ORDER = ("color", "texture", "material", "part", "object", "scene")


def ordered_categories(categories: Sequence[object]) -> list[str]:
    """``categories`` (distinct, as strings) in :data:`CATEGORY_ORDER`, others after."""
    names = [str(c) for c in dict.fromkeys(categories) if str(c)]
    known = [c for c in CATEGORY_ORDER if c in names]
    return known + [c for c in names if c not in known]


def _by_layer(counts: pd.DataFrame) -> tuple[list[str], list[str]]:
    ordered = counts.sort_values("layer_index", kind="stable") if "layer_index" in counts \
        else counts
    return (list(dict.fromkeys(ordered["layer"].astype(str))),
            ordered_categories(list(counts["category"])))


def _column(counts: pd.DataFrame, category: str, layers: list[str], column: str) -> list[Any]:
    """``column`` of ``category``'s row in each of ``layers`` (0 where absent or missing)."""
    values = {(str(layer), str(cat)): float(value) for layer, cat, value in zip(
        counts["layer"].to_numpy(dtype=object), counts["category"].to_numpy(dtype=object),
        counts[column].to_numpy(dtype=float), strict=True)}
    found = [values.get((layer, category), 0.0) for layer in layers]
    return [v if v == v else 0.0 for v in found]  # NaN: none


def hierarchy_figure(summary: pd.DataFrame) -> Any:
    """The hierarchy-of-parts chart: share of units detecting each category, per layer.

    Args:
        summary: ``layer, [layer_index,] category, detectors, unique_concepts,
            share_of_units`` (the ``summary`` table, one row per layer × category).

    Returns:
        Stacked bars, one per layer; a segment is detectors of the category / units
        of the layer, so a bar's height is the layer's share of detector units.
    """
    import plotly.graph_objects as go

    layers, categories = _by_layer(summary)
    fig = go.Figure()
    for i, category in enumerate(categories):
        detectors = _column(summary, category, layers, "detectors")
        unique = _column(summary, category, layers, "unique_concepts") \
            if "unique_concepts" in summary else detectors
        fig.add_trace(go.Bar(
            x=layers, y=_column(summary, category, layers, "share_of_units"), name=category,
            marker_color=category_color(category, i), customdata=[
                [category, int(d), int(u)] for d, u in zip(detectors, unique, strict=True)],
            hovertemplate="%{x}: %{y:.1%} of units<br>%{customdata[1]} detectors, "
                          "%{customdata[2]} unique concepts<extra>%{customdata[0]}</extra>"))
    fig.update_layout(barmode="stack", title="dissection: share of units detecting each "
                      "category, per layer", height=400, legend_title="category",
                      xaxis={"title": "layer", "categoryorder": "array", "categoryarray": layers},
                      yaxis={"title": "share of the layer's units", "tickformat": ".0%"})
    return fig


def detector_counts_figure(summary: pd.DataFrame) -> Any:
    """Detector units (left) and unique concepts (right) per layer, stacked by category."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    layers, categories = _by_layer(summary)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("detector units", "unique concepts"))
    for i, category in enumerate(categories):
        color = category_color(category, i)
        fig.add_trace(go.Bar(x=layers, y=_column(summary, category, layers, "detectors"),
                             name=category, legendgroup=category, marker_color=color),
                      row=1, col=1)
        fig.add_trace(go.Bar(x=layers, y=_column(summary, category, layers, "unique_concepts"),
                             name=category, legendgroup=category, marker_color=color,
                             showlegend=False), row=1, col=2)
    fig.update_layout(barmode="stack", height=380, legend_title="category",
                      title="dissection: detectors and unique concepts per layer")
    fig.update_xaxes(categoryorder="array", categoryarray=layers)
    return fig


def iou_distribution_figure(units: pd.DataFrame, iou_threshold: float | None = None,
                            layers: Sequence[str] | None = None) -> Any:
    """Box plot of each unit's best IoU per layer, with the detector threshold."""
    import plotly.graph_objects as go

    fig = go.Figure()
    order = list(layers) if layers is not None else \
        pd.unique(units["layer"].to_numpy(dtype=object)).tolist()
    by_layer = {str(layer): rows for layer, rows in units.groupby(
        units["layer"].astype(str), sort=False)["iou"]}
    for layer in order:
        rows = by_layer.get(str(layer))
        if rows is None or rows.empty:
            continue
        fig.add_trace(go.Box(y=rows.astype(float), name=str(layer),
                             boxpoints="outliers", showlegend=False, marker_color="#555555"))
    if iou_threshold is not None:
        fig.add_hline(y=iou_threshold, line_dash="dash", line_color="#d62728",
                      annotation_text=f"detector: IoU > {iou_threshold:g}")
    fig.update_layout(title="dissection: best IoU per unit", yaxis_title="best IoU",
                      xaxis_title="layer", height=380)
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
                                 mode="markers", text=text, hoverinfo="text",
                                 marker={"color": category_color("part"), "size": 9,
                                         "line": {"color": category_color("object"),
                                                  "width": 2}}))
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
