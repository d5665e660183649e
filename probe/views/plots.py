"""Shared pieces of every figure: one colour per concept category, one per layer, layer
order, empty figures. Dashboard and report draw with these, so legends agree."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

#: One colour per concept category, used by every chart, table and card.
CATEGORY_COLORS = {"color": "#8c564b", "texture": "#bcbd22", "material": "#17becf",
                   "part": "#ff7f0e", "object": "#1f77b4", "scene": "#2ca02c",
                   "none": "#c7c7c7"}
_OTHER_CATEGORIES = ("#9467bd", "#e377c2", "#7f7f7f", "#d62728", "#aec7e8", "#98df8a")

#: Twenty distinguishable colours for layers (Kelly's list without white and black).
LAYER_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                "#7f7f7f", "#bcbd22", "#17becf", "#393b79", "#ad494a", "#637939", "#8c6d31",
                "#7b4173", "#3182bd", "#e6550d", "#31a354", "#756bb1", "#636363")


def category_color(category: object, index: int = 0) -> str:
    """The colour of a concept category (fixed for the known ones)."""
    return CATEGORY_COLORS.get(str(category), _OTHER_CATEGORIES[index % len(_OTHER_CATEGORIES)])


def layer_color(index: int) -> str:
    """The colour of the ``index``-th layer (distinct for up to 20)."""
    return LAYER_COLORS[index % len(LAYER_COLORS)]


def ordered_unique(series: pd.Series) -> list[str]:
    """Distinct values as strings, in order of first appearance."""
    return [str(x) for x in pd.unique(series.to_numpy(dtype=object))]


def layer_order(*frames: pd.DataFrame | None, layers: Sequence[str] | None = None) -> list[str]:
    """Layers in network order: ``layers`` first, then any others by first appearance."""
    out = list(layers or [])
    for frame in frames:
        if frame is not None and "layer" in frame:
            out.extend(x for x in ordered_unique(frame["layer"]) if x not in out)
    return out


def empty_figure(message: str, title: str = "") -> Any:
    """A blank figure that says ``message``."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper",
                       yref="paper", font={"size": 14})
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False},
                      height=260)
    return fig


def legend_below(figure: Any, most: int = 6) -> Any:
    """``figure`` (a plotly figure or its dict) with its legend under the plot when it has more
    than ``most`` entries, taller by the rows it takes, so a legend never scrolls.

    A figure's JSON form (``to_plotly_json()``, template included) comes back a dict
    (a new one: the one given is left as it is), a figure the same figure, updated.
    """
    if isinstance(figure, dict) and "template" in (figure.get("layout") or {}):
        return _legend_below_plain(figure, most)
    import plotly.graph_objects as go

    fig = go.Figure(figure) if isinstance(figure, dict) else figure
    entries = sum(1 for trace in fig.data if trace.showlegend is not False)
    if entries <= most:
        return figure
    rows = entries // 4 + 1
    change = _legend_below(rows)
    fig.update_layout(legend=change["legend"], height=(fig.layout.height or 400) + 24 * rows,
                      margin=change["margin"])
    return fig


def _legend_below(rows: int) -> dict[str, Any]:
    return {"legend": {"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0,
                       "xanchor": "left"},
            "margin": {"b": 60 + 24 * rows}}


def _legend_below_plain(figure: dict[str, Any], most: int) -> dict[str, Any]:
    """:func:`legend_below` of a figure's JSON form, without building a plotly figure."""
    traces = figure.get("data") or []
    entries = sum(1 for trace in traces
                  if not (isinstance(trace, dict) and trace.get("showlegend") is False))
    if entries <= most:
        return figure
    rows = entries // 4 + 1
    change = _legend_below(rows)
    layout = dict(figure.get("layout") or {})
    layout["legend"] = {**(layout.get("legend") or {}), **change["legend"]}
    layout["height"] = (layout.get("height") or 400) + 24 * rows
    layout["margin"] = {**(layout.get("margin") or {}), **change["margin"]}
    return {**figure, "layout": layout}
