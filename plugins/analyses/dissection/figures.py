"""Figures of ``dissection``: pure functions of its tables (dashboard and report share them).

Every category has the colour :func:`probe.views.plots.category_color` gives it, and
categories are stacked from low to high level (colour at the bottom, scenes on top).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from probe.views.plots import axes, category_color, cell, figure, hline, subplots

#: Concept categories from low to high level (stacking and legend order).
CATEGORY_ORDER = ("color", "texture", "material", "part", "object", "scene")


#: Legend of the stacked category charts: categories top to bottom as in the stack
#: (plotly reverses a stacked chart's legend on its own only without legend groups, so
#: the two charts listed the categories in opposite orders).
STACK_LEGEND: dict[str, Any] = {"title": {"text": "category"}, "traceorder": "reversed"}


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
    layers, categories = _by_layer(summary)
    traces = []
    for i, category in enumerate(categories):
        detectors = _column(summary, category, layers, "detectors")
        unique = _column(summary, category, layers, "unique_concepts") \
            if "unique_concepts" in summary else detectors
        traces.append({
            "type": "bar", "x": layers, "y": _column(summary, category, layers, "share_of_units"),
            "name": category, "marker": {"color": category_color(category, i)}, "customdata": [
                [category, int(d), int(u)] for d, u in zip(detectors, unique, strict=True)],
            "hovertemplate": "%{x}: %{y:.1%} of units<br>%{customdata[1]} detectors, "
                             "%{customdata[2]} unique concepts<extra>%{customdata[0]}</extra>"})
    return figure(traces, {
        "barmode": "stack", "height": 400, "legend": STACK_LEGEND,
        "title": {"text": "dissection: share of units detecting each category, per layer"},
        "xaxis": {"title": {"text": "layer"}, "categoryorder": "array", "categoryarray": layers},
        "yaxis": {"title": {"text": "share of the layer's units"}, "tickformat": ".0%"}})


def detector_counts_figure(summary: pd.DataFrame) -> Any:
    """Detector units (left) and unique concepts (right) per layer, stacked by category."""
    layers, categories = _by_layer(summary)
    layout = subplots(1, 2, subplot_titles=("detector units", "unique concepts"))
    traces = []
    for i, category in enumerate(categories):
        color = category_color(category, i)
        for col, column in ((1, "detectors"), (2, "unique_concepts")):
            traces.append({"type": "bar", "x": layers,
                           "y": _column(summary, category, layers, column), "name": category,
                           "legendgroup": category, "marker": {"color": color},
                           **({"showlegend": False} if col == 2 else {}), **cell(1, col, 2)})
    layout.update(barmode="stack", height=380, legend=STACK_LEGEND,
                  title={"text": "dissection: detectors and unique concepts per layer"})
    for axis in axes(layout, "x"):
        layout[axis].update(categoryorder="array", categoryarray=layers)
    return figure(traces, layout)


def iou_distribution_figure(units: pd.DataFrame, iou_threshold: float | None = None,
                            layers: Sequence[str] | None = None) -> Any:
    """Box plot of each unit's best IoU per layer, with the detector threshold."""
    order = list(layers) if layers is not None else \
        pd.unique(units["layer"].to_numpy(dtype=object)).tolist()
    by_layer = {str(layer): rows for layer, rows in units.groupby(
        units["layer"].astype(str), sort=False)["iou"]}
    traces = []
    for layer in order:
        rows = by_layer.get(str(layer))
        if rows is None or rows.empty:
            continue
        traces.append({"type": "box", "y": rows.to_numpy(dtype=float), "name": str(layer),
                       "boxpoints": "outliers", "showlegend": False,
                       "marker": {"color": "#555555"}})
    layout: dict[str, Any] = {}
    if iou_threshold is not None:
        shape, note = hline(iou_threshold, f"detector: IoU > {iou_threshold:g}", "#d62728")
        layout.update(shapes=[shape], annotations=[note])
    layout.update(title={"text": "dissection: best IoU per unit"},
                  yaxis={"title": {"text": "best IoU"}},
                  xaxis={"title": {"text": "layer"}}, height=380)
    return figure(traces, layout)


def edges_figure(edges: pd.DataFrame) -> Any:
    """Part→object edges: weight-path share against the ablation drop."""
    traces = []
    if not edges.empty:
        text = (edges["part_layer"].astype(str) + ":" + edges["part_unit"].astype(str) + " "
                + edges["part_name"].astype(str) + " → " + edges["object_layer"].astype(str)
                + ":" + edges["object_unit"].astype(str) + " "
                + edges["object_name"].astype(str))
        traces.append({"type": "scatter", "x": edges["weight_path"].to_numpy(),
                       "y": edges["ablation_drop"].to_numpy(), "mode": "markers",
                       "text": text.to_numpy(dtype=object), "hoverinfo": "text",
                       "marker": {"color": category_color("part"), "size": 9,
                                  "line": {"color": category_color("object"), "width": 2}}})
    return figure(traces, {
        "title": {"text": "dissection: part → object edges"},
        "xaxis": {"title": {"text": "weight-path share"}},
        "yaxis": {"title": {"text": "relative activation drop when the part unit is ablated"}},
        "height": 380})


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
