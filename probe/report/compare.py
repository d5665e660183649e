"""The comparison section of a report over several runs.

A table of the runs (architecture, weights, data, accuracy from the
checkpoint's sidecar where present, detector totals), the hierarchy of parts
side by side, and per analysis that several runs share, one chart of a
per-layer mean against relative depth (so runs of different architectures
line up). An analysis class may provide ``compare_figures({run name: tables})``
to draw its own comparison instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from probe.report.assets import escape, figure_html
from probe.report.hierarchy import detector_counts
from probe.report.sections import analysis_class
from probe.report.tables import INDEX_COLUMNS, frame_html, scalar_columns
from probe.store import Run


def checkpoint_metrics(run: Run) -> dict[str, Any]:
    """Metrics from the checkpoint's JSON sidecar (written by ``probe train``), if any."""
    checkpoint = (run.manifest.get("arch") or {}).get("checkpoint")
    if not checkpoint:
        return {}
    sidecar = Path(checkpoint).with_suffix(".json")
    try:
        return dict(json.loads(sidecar.read_text()).get("metrics", {}))
    except (OSError, ValueError, AttributeError):
        return {}


def runs_table(runs: Sequence[Run]) -> pd.DataFrame:
    """One row per run: what it is and its headline numbers."""
    rows = []
    for run in runs:
        arch = run.manifest.get("arch") or {}
        data = run.manifest.get("dataset") or {}
        row: dict[str, Any] = {
            "run": run.name, "architecture": arch.get("name") or arch.get("class"),
            "checkpoint": Path(arch["checkpoint"]).name if arch.get("checkpoint") else "none",
            "data set": data.get("name"), "images": data.get("size"),
            "layers": len(run.manifest.get("layers", [])),
            "analyses": ", ".join(run.analyses), "status": run.status,
        }
        for key, value in checkpoint_metrics(run).items():
            row[key] = value
        counts = detector_counts(run)
        if counts is not None:
            row["detector units"] = int(counts["detectors"].sum())
        rows.append(row)
    return pd.DataFrame(rows)


def _depth_profile(run: Run, frame: pd.DataFrame, column: str) -> pd.DataFrame:
    layers = [layer for layer in run.manifest.get("layers", []) if layer in set(frame["layer"])]
    means = frame.groupby("layer")[column].mean()
    depth = [i / max(len(layers) - 1, 1) for i in range(len(layers))]
    return pd.DataFrame({"layer": layers, "depth": depth,
                         "value": [float(means[layer]) for layer in layers]})


#: Measurements compared across runs when an analysis's tables have them, best first.
PREFERRED_MEASURES = ("iou", "gabor_r2", "relative_error", "one_minus_r2", "max",
                      "fraction_positive", "energy", "value")
#: Columns that parametrise rows (sizes, sweep values, positions): never compared.
PARAMETER_COLUMNS = (*INDEX_COLUMNS, "magnitude", "index", "layer_index", "pixels", "stride",
                     "cells", "images", "units", "height", "width", "dim", "order", "kernel_h",
                     "kernel_w", "channels", "step", "mask_height", "mask_width", "threshold")


def measure_column(frame: pd.DataFrame) -> str | None:
    """The measurement of a per-layer table to compare: a preferred one, else the first
    numeric column that is not a parameter; ``None`` without a ``layer`` column."""
    if "layer" not in frame.columns:
        return None
    for column in PREFERRED_MEASURES:
        if column in frame.columns and pd.api.types.is_numeric_dtype(frame[column]):
            return column
    for column in scalar_columns(frame):
        if column not in PARAMETER_COLUMNS and pd.api.types.is_numeric_dtype(frame[column]) \
                and not pd.api.types.is_bool_dtype(frame[column]):
            return column
    return None


def _pick_table(run: Run, name: str) -> tuple[str, str] | None:
    """``(table, column)`` of one analysis to compare: the best preferred measure first."""
    found: list[tuple[int, bool, str, str]] = []
    for _, table in run.tables(name):
        frame = run.table(name, table)
        column = measure_column(frame)
        if column is not None:
            rank = PREFERRED_MEASURES.index(column) if column in PREFERRED_MEASURES else \
                len(PREFERRED_MEASURES)
            found.append((rank, "rank" in frame.columns, table, column))  # one row per unit
    if not found:
        return None
    _, _, table, column = min(found, key=lambda item: item[:2])
    return table, column


def shared_analysis_figures(runs: Sequence[Run], name: str) -> list[Any]:
    """Comparison figures of one analysis over the runs that completed it."""
    import plotly.graph_objects as go

    having = [r for r in runs if r.analysis_status(name) == "complete"]
    cls = analysis_class(name)
    compare = getattr(cls, "compare_figures", None) if cls else None
    if callable(compare):
        return list(compare({r.name: r.all_tables(name) for r in having}) or [])
    picked = _pick_table(having[0], name)
    if picked is None:
        return []
    table, column = picked
    fig = go.Figure()
    for run in having:
        if not run.has_table(name, table) or column not in run.table(name, table).columns:
            continue
        profile = _depth_profile(run, run.table(name, table), column)
        fig.add_trace(go.Scatter(x=profile["depth"], y=profile["value"], mode="lines+markers",
                                 name=run.name, text=profile["layer"],
                                 hovertemplate="%{text}: %{y:.4g}"))
    fig.update_layout(title=f"{name}: mean {column} per layer (table {table}) by relative depth",
                      xaxis_title="relative depth (first layer 0, last layer 1)",
                      yaxis_title=f"mean {column}", height=380)
    return [fig]


def hierarchy_comparison(runs: Sequence[Run]) -> Any | None:
    """Detector units per category for each run, side by side (``None`` without any)."""
    import plotly.graph_objects as go

    frames = []
    for run in runs:
        counts = detector_counts(run)
        if counts is not None:
            frames.append(counts.groupby("category")["detectors"].sum().rename(run.name))
    if not frames:
        return None
    table = pd.concat(frames, axis=1).fillna(0)
    fig = go.Figure([go.Bar(x=list(table.columns), y=table.loc[c], name=str(c))
                     for c in table.index])
    fig.update_layout(barmode="stack", title="detector units per concept category, per run",
                      height=380)
    return fig


def comparison_section(runs: Sequence[Run]) -> str:
    """The ``<section class="comparison">`` of a multi-run report."""
    parts = ['<section class="comparison" id="comparison"><h2>Comparison</h2>',
             frame_html(runs_table(runs), max_rows=len(runs), caption="runs")]
    figure = hierarchy_comparison(runs)
    if figure is not None:
        parts.append(figure_html(figure))
    names = list(dict.fromkeys(n for r in runs for n in r.analyses))
    for name in names:
        having = [r for r in runs if r.analysis_status(name) == "complete"]
        if len(having) < 2:
            continue
        try:
            figures = shared_analysis_figures(runs, name)
        except Exception as exc:  # one odd table must not lose the report
            parts.append(f'<p class="note">comparison of {escape(name)} failed: '
                         f'{escape(type(exc).__name__)}: {escape(exc)}</p>')
            continue
        parts.extend(figure_html(f) for f in figures)
    parts.append("</section>")
    return "\n".join(parts)
