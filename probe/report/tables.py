"""DataFrames as small HTML tables, and per-layer summaries of large tables."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from probe.report.assets import escape

#: Columns that index rows rather than measure something; never averaged.
INDEX_COLUMNS = ("layer", "unit", "rank", "image", "label", "count", "map_height", "map_width")


def scalar_columns(frame: pd.DataFrame) -> list[str]:
    """Columns whose cells are scalars (arrays and lists, e.g. stored maps, are dropped)."""
    keep = []
    for column in frame.columns:
        series = frame[column]
        if series.dtype == object and len(series):
            first = series.dropna().head(1)
            if len(first) and isinstance(first.iloc[0], (list, tuple, np.ndarray, dict, bytes,
                                                      bytearray)):
                continue
        keep.append(column)
    return keep


def _cell(value: object) -> str:
    if isinstance(value, (float, np.floating)):
        if np.isnan(value):
            return ""
        return f"{value:.4g}"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    return escape(value)


def frame_html(frame: pd.DataFrame, max_rows: int = 15, caption: str | None = None) -> str:
    """An HTML ``<table>`` of the first ``max_rows`` rows of the scalar columns."""
    columns = scalar_columns(frame)
    shown = frame[columns].head(max_rows)
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>"
                   for row in shown.itertuples(index=False, name=None))
    note = ""
    if len(frame) > max_rows:
        note = f" (first {max_rows} of {len(frame)} rows)"
    cap = f"<caption>{escape(caption or '')}{escape(note)}</caption>" if caption or note else ""
    return f'<table class="data">{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def layer_summary(frame: pd.DataFrame, layer_order: Sequence[str] = ()) -> pd.DataFrame | None:
    """Per-layer row count and mean of every numeric measurement column.

    Returns ``None`` when the table has no ``layer`` column or nothing numeric
    to average.
    """
    if "layer" not in frame.columns or frame.empty:
        return None
    numeric = [c for c in scalar_columns(frame) if c not in INDEX_COLUMNS
               and pd.api.types.is_numeric_dtype(frame[c])]
    if not numeric:
        return None
    grouped = frame.groupby("layer", sort=False)
    summary = grouped[numeric].mean(numeric_only=True)
    summary.columns = [f"mean {c}" if not pd.api.types.is_bool_dtype(frame[c]) else
                       f"share {c}" for c in numeric]
    summary.insert(0, "rows", grouped.size())
    order = [layer for layer in layer_order if layer in summary.index]
    order += [layer for layer in summary.index if layer not in order]
    return summary.loc[order].reset_index()


def table_summary_html(name: str, frame: pd.DataFrame, layer_order: Sequence[str] = (),
                       max_rows: int = 15) -> str:
    """A table as the report shows it: whole when short, else summarised per layer."""
    if len(frame) <= max_rows:
        return frame_html(frame, max_rows, caption=f"table {name}")
    summary = layer_summary(frame, layer_order)
    if summary is not None:
        return frame_html(summary, max_rows=60,
                          caption=f"table {name}: {len(frame)} rows, summarised per layer")
    return frame_html(frame, max_rows, caption=f"table {name}")
