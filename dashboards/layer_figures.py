"""Per-layer figures and the layer summary (layers page, compare page, ``probe report``).

* ``unit-stats/units``: ``layer, unit, mean, std, max, fraction_positive``.
* ``dissection/units``: ``layer, unit, label, category, is_detector``.
* ``equivariance/errors``: ``layer, transform, magnitude, relative_error``.
* ``filters/units``: ``layer, unit, gabor_r2, gabor_status, separability``.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import plotly.graph_objects as go

from probe.dashboards.plotting import (
    by_layer,
    category_color,
    empty_figure,
    error_column,
    finite_errors,
    layer_order,
    ordered_unique,
    r2_column,
)


def make_hierarchy_figure(dissection: pd.DataFrame | None, layers: Sequence[str] | None = None,
                          title: str = "share of detector units per category") -> go.Figure:
    """The hierarchy-of-parts chart: per layer, the share of units detecting each category.

    Args:
        dissection: Per-unit table with ``layer, unit, category, is_detector``.
        layers: Network order of the layers (default: order of appearance).

    Returns:
        Stacked bars, one per layer; a bar segment is
        ``#detector units of that category / #units of the layer``.
    """
    if dissection is None or dissection.empty:
        return empty_figure("no dissection in this run", title)
    share = detector_shares(dissection, layers)
    order = layer_order(dissection, layers=layers)
    fig = go.Figure()
    for i, category in enumerate(c for c in share.columns if c != "layer"):
        fig.add_trace(go.Bar(x=order, y=share.set_index("layer").loc[order, category],
                             name=category, marker_color=category_color(category, i),
                             customdata=[category] * len(order)))
    fig.update_layout(barmode="stack", title=title, yaxis_title="fraction of units",
                      yaxis_tickformat=".0%", xaxis_title="layer", height=360)
    return fig


def detector_shares(dissection: pd.DataFrame, layers: Sequence[str] | None = None
                    ) -> pd.DataFrame:
    """Per layer, the fraction of all its units that are detectors of each category.

    Returns:
        DataFrame ``layer, <category>...`` (categories in order of appearance).
    """
    order = layer_order(dissection, layers=layers)
    frame = dissection.assign(layer=dissection["layer"].astype(str))
    totals = frame.groupby("layer").size()
    detectors = frame[frame["is_detector"].astype(bool)]
    categories = ordered_unique(detectors["category"])
    counts = detectors.groupby(["layer", "category"]).size().unstack(fill_value=0)
    counts = counts.reindex(index=order, columns=categories, fill_value=0)
    share = counts.div(totals.reindex(order).replace(0, 1), axis=0).fillna(0.0)
    return share.reset_index().rename(columns={"index": "layer"})


def make_layer_summary(units: pd.DataFrame | None, dissection: pd.DataFrame | None = None,
                       equivariance: pd.DataFrame | None = None,
                       filters: pd.DataFrame | None = None,
                       layers: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per layer: units, detectors, unique concepts, equivariance, filter fit.

    Columns present depend on the tables given: ``units`` and activation
    statistics from unit-stats; ``detectors``, ``detector_share`` and
    ``unique_concepts`` from dissection (unique concepts = distinct best
    labels among detectors); ``equivariance_error`` (mean error over every
    transform and magnitude) from equivariance; ``filter_r2`` (median Gabor
    R²) and ``filter_separability`` (median colour separability) from filters.
    """
    order = layer_order(units, dissection, equivariance, filters, layers=layers)
    out = pd.DataFrame({"layer": order})
    if units is not None and not units.empty:
        g = units.assign(layer=units["layer"].astype(str)).groupby("layer")
        out["units"] = out["layer"].map(g.size())
        if "max" in units:
            out["mean_max_activation"] = out["layer"].map(g["max"].mean())
        if "fraction_positive" in units:
            out["mean_fraction_positive"] = out["layer"].map(g["fraction_positive"].mean())
    if dissection is not None and not dissection.empty:
        d = dissection.assign(layer=dissection["layer"].astype(str))
        det = d[d["is_detector"].astype(bool)]
        if "units" not in out:
            out["units"] = out["layer"].map(d.groupby("layer").size())
        dissected = out["layer"].isin(set(d["layer"]))  # other layers stay blank, not 0
        out["detectors"] = out["layer"].map(det.groupby("layer").size()).fillna(0).where(
            dissected).astype("Int64")
        out["detector_share"] = out["detectors"] / out["units"].where(out["units"] > 0)
        out["unique_concepts"] = out["layer"].map(
            det.groupby("layer")["label"].nunique()).fillna(0).where(dissected).astype("Int64")
    if equivariance is not None and not equivariance.empty:
        e = finite_errors(equivariance.assign(layer=equivariance["layer"].astype(str)))
        out["equivariance_error"] = out["layer"].map(
            e.groupby("layer")[error_column(e)].mean())
    fit = r2_column(filters)
    if filters is not None and not filters.empty and fit:
        f = filters.assign(layer=filters["layer"].astype(str))
        out["filter_r2"] = out["layer"].map(f.groupby("layer")[fit].median())
        if "separability" in f:
            out["filter_separability"] = out["layer"].map(
                f.groupby("layer")["separability"].median())
    return out.round(4)


def make_equivariance_figure(equivariance: pd.DataFrame | None,
                             layers: Sequence[str] | None = None,
                             title: str = "equivariance error per layer") -> go.Figure:
    """Error per layer, one line per transform (mean over magnitudes)."""
    if equivariance is None or equivariance.empty:
        return empty_figure("no equivariance in this run", title)
    order = layer_order(equivariance, layers=layers)
    frame = finite_errors(equivariance.assign(layer=equivariance["layer"].astype(str)))
    key = "transform" if "transform" in frame else None
    column = error_column(frame)
    fig = go.Figure()
    groups = frame.groupby(key) if key else [("all", frame)]
    for name, rows in groups:
        mean = rows.groupby("layer")[column].mean().reindex(order)
        fig.add_trace(go.Scatter(x=order, y=mean.values, mode="lines+markers", name=str(name)))
    fig.update_layout(title=title, xaxis_title="layer", yaxis_title="relative error",
                      height=340)
    return fig


def make_filter_figure(filters: pd.DataFrame | None, layers: Sequence[str] | None = None,
                       column: str | None = None,
                       title: str = "filter fit (Gabor R²) per layer") -> go.Figure:
    """Box plot of a per-unit filter statistic per layer.

    By default the Gabor R²; when no filter could be fitted (3×3 kernels are too
    small for a 9-parameter Gabor), the colour separability instead.
    """
    column = column or r2_column(filters)
    if (filters is not None and column in (filters.columns if column else ())
            and filters[column].notna().sum() == 0 and "separability" in filters):
        column, title = "separability", "filter colour separability (σ₁²/Σσ²) per layer"
    if filters is None or filters.empty or not column or column not in filters:
        return empty_figure("no filter analysis in this run", title)
    fig = go.Figure()
    groups = by_layer(filters, column)
    for layer in layer_order(filters, layers=layers):
        if layer in groups:
            fig.add_trace(go.Box(y=groups[layer], name=layer, showlegend=False))
    fig.update_layout(title=title, yaxis_title=column, height=340)
    return fig


def make_activation_figure(units: pd.DataFrame | None, layers: Sequence[str] | None = None,
                           title: str = "maximum activation per unit") -> go.Figure:
    """Box plot of each unit's maximum activation, per layer (from unit-stats)."""
    if units is None or units.empty:
        return empty_figure("no unit-stats in this run", title)
    fig = go.Figure()
    groups = by_layer(units, "max")
    for layer in layer_order(units, layers=layers):
        if layer in groups:
            fig.add_trace(go.Box(y=groups[layer], name=layer, showlegend=False))
    fig.update_layout(title=title, yaxis_title="max activation", height=340)
    return fig
