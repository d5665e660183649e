"""Shared pieces of the dashboard's figure builders: colours, layer order, column picks.

Pure functions of DataFrames (no files), used by :mod:`.run_figures`,
:mod:`.layer_figures`, :mod:`.unit_figures` and :mod:`.compare_figures`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

#: Fixed colours per concept category, so every chart agrees.
CATEGORY_COLORS = {"color": "#8c564b", "texture": "#bcbd22", "material": "#17becf",
                   "part": "#ff7f0e", "object": "#1f77b4", "scene": "#2ca02c"}
_FALLBACK_COLORS = ("#9467bd", "#e377c2", "#7f7f7f", "#d62728", "#aec7e8", "#98df8a")


def category_color(category: str, index: int = 0) -> str:
    """Colour of a concept category (stable for the known ones)."""
    return CATEGORY_COLORS.get(category, _FALLBACK_COLORS[index % len(_FALLBACK_COLORS)])


def ordered_unique(series: pd.Series) -> list[str]:
    """Distinct values as strings, in order of first appearance (vectorised)."""
    return [str(x) for x in pd.unique(series.to_numpy(dtype=object))]


def by_layer(frame: pd.DataFrame, column: str) -> dict[str, np.ndarray]:
    """``{layer: values of column}`` in one grouping pass."""
    values = frame[column].to_numpy()
    keys = frame["layer"].astype(str).to_numpy(dtype=object)
    codes, names = pd.factorize(keys)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
    return {str(n): values[order[bounds[i]:bounds[i + 1]]] for i, n in enumerate(names)}


def layer_order(*frames: pd.DataFrame | None, layers: Sequence[str] | None = None) -> list[str]:
    """Layers in network order: ``layers`` first, then any others by first appearance."""
    out = list(layers or [])
    for frame in frames:
        if frame is not None and "layer" in frame:
            out.extend(x for x in ordered_unique(frame["layer"]) if x not in out)
    return out


def empty_figure(message: str, title: str = "") -> go.Figure:
    """A blank figure that says ``message`` (no data for this chart)."""
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper",
                       yref="paper", font={"size": 14})
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False},
                      height=260)
    return fig


def error_column(frame: pd.DataFrame) -> str:
    """The error column of an equivariance table (``relative_error``, else ``error``)."""
    return "relative_error" if "relative_error" in frame else "error"


def r2_column(frame: pd.DataFrame | None) -> str | None:
    """The Gabor goodness-of-fit column of a filters table, if any."""
    if frame is None:
        return None
    return next((c for c in ("gabor_r2", "r2") if c in frame), None)


def finite_errors(frame: pd.DataFrame) -> pd.DataFrame:
    """An equivariance table with infinite errors turned into NaN (left out of means)."""
    column = error_column(frame)
    if column not in frame:
        return frame
    return frame.assign(**{column: frame[column].replace([np.inf, -np.inf], np.nan)})
