"""Per-unit views: the units page's table and the unit page's figures."""

from __future__ import annotations

import functools
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from probe.dashboards.plotting import (
    category_color,
    empty_figure,
    error_column,
    finite_errors,
    ordered_unique,
)


def make_unit_table(units: pd.DataFrame | None, dissection: pd.DataFrame | None = None,
                    filters: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per unit of one layer: statistics, best concept and filter fit.

    Args:
        units: unit-stats rows of the layer.
        dissection: dissection per-unit rows of the layer.
        filters: filters per-unit rows of the layer.

    Returns:
        DataFrame with ``unit`` and whichever of ``label, category, iou,
        is_detector, mean, std, max, fraction_positive, r2`` are available.
    """
    frames = []
    keep = {"units": ["unit", "mean", "std", "max", "fraction_positive"],
            "dissection": ["unit", "label", "category", "iou", "is_detector"],
            "filters": ["unit", "gabor_r2", "gabor_status", "separability"]}
    for key, frame in (("dissection", dissection), ("units", units), ("filters", filters)):
        if frame is not None and not frame.empty:
            if key == "dissection" and "name" in frame:
                # the grid shows concept names; ids stay in the analysis tables
                frame = frame.drop(columns=["label"]).rename(columns={"name": "label"})
            frames.append(frame[[c for c in keep[key] if c in frame]].copy())
    if not frames:
        return pd.DataFrame({"unit": pd.Series([], dtype=int)})
    table = frames[0]
    for frame in frames[1:]:
        table = table.merge(frame, on="unit", how="outer")
    table["unit"] = table["unit"].astype(int)
    if "is_detector" in table:
        table["is_detector"] = table["is_detector"].fillna(False).astype(bool)
    for column in ("mean", "std", "max", "fraction_positive", "iou", "gabor_r2",
                   "separability"):
        if column in table:
            table[column] = table[column].astype(float).round(4)
    return table.sort_values("unit").reset_index(drop=True)


def make_concept_ranking_figure(ranking: pd.DataFrame | None, top: int = 10,
                                threshold: float | None = None,
                                title: str = "concept ranking (IoU)") -> go.Figure:
    """Horizontal bars of a unit's best concepts by IoU.

    Args:
        ranking: Rows ``name`` (or ``label``), ``category, iou`` of one unit.
        top: How many concepts to show.
        threshold: Detector threshold drawn as a vertical line.
    """
    spec = concept_ranking_spec(ranking, top, threshold, title)
    return go.Figure(spec) if spec is not None else empty_figure(
        "no concept ranking (run dissection)", title)


def concept_ranking_json(ranking: pd.DataFrame | None, top: int = 10,
                         threshold: float | None = None,
                         title: str = "concept ranking (IoU)") -> dict[str, object]:
    """:func:`make_concept_ranking_figure` in JSON form, with the default template.

    The same figure without building (validating, then copying) a plotly
    ``Figure``: the unit page draws one per unit.
    """
    spec = concept_ranking_spec(ranking, top, threshold, title)
    if spec is None:
        return make_concept_ranking_figure(ranking, top, threshold, title).to_plotly_json()
    spec["layout"]["template"] = default_template()
    return spec


@functools.cache
def default_template() -> dict[str, object]:
    """Plotly's default template in JSON form (what a ``Figure`` fills in; shared, read-only)."""
    import plotly.io as pio

    return pio.templates[pio.templates.default].to_plotly_json()


def concept_ranking_spec(ranking: pd.DataFrame | None, top: int = 10,
                         threshold: float | None = None,
                         title: str = "concept ranking (IoU)") -> dict[str, Any] | None:
    """The data and layout of the concept ranking as plain values (``None``: no ranking)."""
    if ranking is None or ranking.empty:
        return None
    rows = ranking.sort_values("iou", ascending=False).head(top).iloc[::-1]
    has_category = "category" in rows
    categories = list(dict.fromkeys(rows["category"].astype(str))) if has_category else []
    colors = ([category_color(c, categories.index(c)) for c in rows["category"].astype(str)]
              if has_category else None)
    labels = rows["name"] if "name" in rows else rows["label"]
    names = ([f"{lab} ({cat})" for lab, cat in zip(labels, rows["category"], strict=True)]
             if has_category else [str(lab) for lab in labels])
    layout: dict[str, Any] = {"title": {"text": title}, "xaxis": {"title": {"text": "IoU"}},
                              "height": max(220, 28 * len(rows) + 90), "margin": {"l": 160}}
    if threshold is not None:  # a dotted vertical line, as add_vline draws it (but cheaper)
        layout["shapes"] = [{"type": "line", "x0": threshold, "x1": threshold, "xref": "x",
                             "y0": 0, "y1": 1, "yref": "y domain",
                             "line": {"dash": "dot"}}]
        layout["annotations"] = [{"x": threshold, "xref": "x", "y": 1, "yref": "y domain",
                                  "text": f"IoU {threshold}", "showarrow": False,
                                  "xanchor": "left", "yanchor": "top"}]
    bar: dict[str, Any] = {"type": "bar", "x": [float(x) for x in rows["iou"]], "y": names,
                           "orientation": "h"}
    if colors is not None:
        bar["marker"] = {"color": colors}
    return {"data": [bar], "layout": layout}


def make_layer_equivariance_figure(errors: pd.DataFrame | None, layer: str,
                                   title: str | None = None) -> go.Figure:
    """One layer's equivariance error against each transform's magnitude.

    One small panel per transform, because magnitudes come in different units
    (pixels, fractions of the image, degrees).

    Args:
        errors: ``equivariance/errors`` rows (``layer, transform, magnitude,
            relative_error``, optionally the magnitude's ``unit``); other
            layers' rows are ignored.
        layer: The layer to show.
    """
    from plotly.subplots import make_subplots

    title = title or f"equivariance error of layer {layer}"
    if errors is None or errors.empty:
        return empty_figure("no equivariance in this run", title)
    rows = finite_errors(errors[errors["layer"].astype(str) == layer])
    if rows.empty:
        return empty_figure(f"no equivariance rows for layer {layer}", title)
    column = error_column(rows)
    transforms = ordered_unique(rows["transform"])
    fig = make_subplots(rows=1, cols=len(transforms), subplot_titles=transforms,
                        shared_yaxes=True)
    for i, name in enumerate(transforms, start=1):
        group = rows[rows["transform"].astype(str) == name].sort_values("magnitude")
        fig.add_trace(go.Scatter(x=group["magnitude"], y=group[column], mode="lines+markers",
                                 name=name, showlegend=False), row=1, col=i)
        unit = str(group["unit"].iloc[0]) if "unit" in group and len(group) else ""
        fig.update_xaxes(title_text=unit or "magnitude", row=1, col=i)
    fig.update_yaxes(title_text="relative error", row=1, col=1)
    fig.update_layout(title=title, height=320)
    return fig
