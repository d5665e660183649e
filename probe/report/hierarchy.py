"""The hierarchy-of-parts chart: detector units per layer and concept category.

Concept-detection analyses (``dissection`` and any third-party analysis that
writes the same shape) are found by their tables, not by name:

* a per-layer table with ``layer``, ``category`` and a detector count column
  (``detectors``, ``detector_units``, ``n_detectors`` or ``num_detectors``;
  optionally ``unique_concepts``), or
* a per-unit table with ``layer``, ``unit``, ``category`` and a boolean
  ``detector`` (or ``is_detector``) column, counted here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from probe.store import Run

COUNT_COLUMNS = ("detectors", "detector_units", "n_detectors", "num_detectors")
UNIQUE_COLUMNS = ("unique_concepts", "unique", "n_unique_concepts", "concepts")
FLAG_COLUMNS = ("detector", "is_detector")


def _first(columns: Sequence[str], candidates: Sequence[str]) -> str | None:
    return next((c for c in candidates if c in columns), None)


def detector_counts(run: Run) -> pd.DataFrame | None:
    """``layer, category, detectors[, unique_concepts]`` for a run, or ``None``.

    Per-layer tables are preferred over counting a per-unit table; layers keep
    the run's layer order.
    """
    per_unit: pd.DataFrame | None = None
    for analysis, table in run.tables():
        frame = run.table(analysis, table)
        columns = list(frame.columns)
        if "layer" not in columns or "category" not in columns:
            continue
        count = _first(columns, COUNT_COLUMNS)
        if count is not None and "unit" not in columns:
            out = frame[["layer", "category"]].copy()
            out["detectors"] = frame[count].astype(int)
            unique = _first(columns, UNIQUE_COLUMNS)
            if unique is not None:
                out["unique_concepts"] = frame[unique].astype(int)
            return _ordered(out, run.manifest.get("layers", []))
        flag = _first(columns, FLAG_COLUMNS)
        if flag is not None and "unit" in columns and per_unit is None:
            per_unit = frame[frame[flag].astype(bool)]
            label = _first(columns, ("label", "label_name", "concept"))
            grouped = per_unit.groupby(["layer", "category"], sort=False)
            counted = grouped.size().rename("detectors").reset_index()
            if label is not None:
                counted["unique_concepts"] = grouped[label].nunique().to_numpy()
            per_unit = counted
    if per_unit is None:
        return None
    return _ordered(per_unit, run.manifest.get("layers", []))


def _ordered(frame: pd.DataFrame, layers: Sequence[str]) -> pd.DataFrame:
    rank = {name: i for i, name in enumerate(layers)}
    key = frame["layer"].map(lambda x: rank.get(x, len(rank)))
    return frame.assign(_order=key).sort_values(["_order", "category"], kind="stable") \
        .drop(columns="_order").reset_index(drop=True)


def hierarchy_figure(counts: pd.DataFrame, title: str = "hierarchy of parts") -> Any:
    """Stacked bars: share of detector units per category in each layer (left), and counts.

    Args:
        counts: ``layer, category, detectors[, unique_concepts]`` as from
            :func:`detector_counts`.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    layers = list(dict.fromkeys(counts["layer"]))
    totals = counts.groupby("layer", sort=False)["detectors"].sum()
    has_unique = "unique_concepts" in counts.columns
    titles = ["share of detector units per category", "detector units"]
    if has_unique:
        titles.append("unique concepts")
    fig = make_subplots(rows=1, cols=len(titles), subplot_titles=titles)
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f")
    for i, category in enumerate(dict.fromkeys(counts["category"])):
        rows = counts[counts["category"] == category].set_index("layer").reindex(layers)
        detectors = rows["detectors"].fillna(0)
        share = (detectors / totals.reindex(layers).replace(0, float("nan"))).fillna(0)
        color = palette[i % len(palette)]
        fig.add_trace(go.Bar(x=layers, y=share, name=str(category), marker_color=color,
                             legendgroup=str(category)), row=1, col=1)
        fig.add_trace(go.Bar(x=layers, y=detectors, name=str(category), marker_color=color,
                             legendgroup=str(category), showlegend=False), row=1, col=2)
        if has_unique:
            fig.add_trace(go.Bar(x=layers, y=rows["unique_concepts"].fillna(0),
                                 name=str(category), marker_color=color,
                                 legendgroup=str(category), showlegend=False), row=1, col=3)
    fig.update_layout(barmode="stack", title=title, height=420, legend_title="category")
    fig.update_yaxes(range=[0, 1], row=1, col=1)
    return fig
