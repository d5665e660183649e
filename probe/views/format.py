"""Numbers and names for people: no ``5.74970006942749``, headings instead of raw names."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

#: Formats a view may ask for (see :class:`probe.views.Table`).
FORMATS = ("int", "percent", "fixed2", "fixed3", "sci", "text", "")


def format_value(value: Any, fmt: str = "") -> str:
    """``value`` as a person reads it.

    Floats get 4 significant digits (float32 rounding noise disappears), large
    integers thousands separators, booleans ``yes``/``no``, missing values an
    empty string. ``fmt`` (one of :data:`FORMATS`) overrides the default.
    """
    if value is None or (isinstance(value, float | np.floating) and math.isnan(value)):
        return ""
    if value is pd.NA or value is pd.NaT:
        return ""
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if fmt == "text" or isinstance(value, str):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview | list | tuple | np.ndarray | dict):
        return ""
    if not isinstance(value, int | float | np.integer | np.floating):
        return str(value)
    number = float(value)
    if math.isinf(number):
        return "∞" if number > 0 else "−∞"
    if fmt == "percent":
        return f"{number:.1%}"
    if fmt == "int" or (isinstance(value, int | np.integer) and fmt == ""):
        return f"{round(number):,}"
    if fmt == "fixed2":
        return f"{number:.2f}"
    if fmt == "fixed3":
        return f"{number:.3f}"
    if fmt == "sci":
        return f"{number:.3e}"
    if number == 0:
        return "0"
    if number.is_integer() and abs(number) < 1e15:
        return f"{int(number):,}"
    if 1e-3 <= abs(number) < 1e6:
        return f"{number:.4g}"
    return f"{number:.3g}"


#: Decimals of the fixed-point formats.
DECIMALS = {"fixed2": 2, "fixed3": 3}
#: JavaScript a grid writes the numbers of a column of each format with (as
#: :func:`format_value` does: ``fixed3`` 0.006 → ``0.006``, 0.5 → ``0.500``).
JS_FORMATS = {"fixed2": "params.value.toFixed(2)", "fixed3": "params.value.toFixed(3)",
              "sci": "params.value.toExponential(3)"}


def grid_number(value: float, fmt: str = "") -> float | None:
    """A float as a grid cell of format ``fmt``: ``percent`` × 100 to 3 significant digits,
    ``fixed2``/``fixed3`` rounded to 2/3 decimals, otherwise 4 significant digits (no
    float32 noise); ``None`` for NaN and infinities. The cell stays a number (the grid sorts
    and searches it as one); :func:`grid_formatter` writes it as :func:`format_value` would."""
    number = float(value)
    if not math.isfinite(number):
        return None
    if fmt == "percent":
        number *= 100
        return float(f"{number:.3g}") if number else 0.0
    if fmt in DECIMALS:
        return round(number, DECIMALS[fmt]) + 0.0  # no -0.0
    return float(f"{number:.4g}") if number else 0.0


def grid_formatter(fmt: str) -> dict[str, str] | None:
    """An AG Grid ``valueFormatter`` showing a column's numbers in format ``fmt`` (``None``:
    the number as it is)."""
    code = JS_FORMATS.get(fmt)
    if code is None:
        return None
    return {"function": f"params.value == null ? '' : {code}"}


def heading(column: str, labels: Mapping[str, str] | None = None) -> str:
    """A column's heading: the view's label, else the name with ``_`` as spaces."""
    if labels and column in labels:
        return labels[column]
    return str(column).replace("_", " ")


def scalar_columns(frame: pd.DataFrame) -> list[str]:
    """Columns whose cells are scalars (stored maps, masks and lists are left out)."""
    keep = []
    for column in frame.columns:
        series = frame[column]
        if series.dtype == object and len(series):
            first = series.dropna().head(1)
            if len(first) and isinstance(first.iloc[0], list | tuple | np.ndarray | dict | bytes
                                         | bytearray | memoryview):
                continue
        keep.append(column)
    return keep


def shown_columns(frame: pd.DataFrame, hidden: Any = ()) -> list[str]:
    """The columns a table shows: scalar, not hidden, and not empty in every row."""
    out = []
    for column in scalar_columns(frame):
        if column in hidden:
            continue
        series = frame[column]
        if len(series) and series.isna().all():
            continue  # a column that is always empty says nothing
        if series.dtype == object and len(series) and (series.astype(str) == "").all():
            continue
        out.append(column)
    return out


def formatted_frame(frame: pd.DataFrame, formats: Mapping[str, str] | None = None,
                    columns: list[str] | None = None) -> pd.DataFrame:
    """A copy of ``frame`` (``columns`` only) with every cell formatted as text."""
    formats = formats or {}
    columns = columns if columns is not None else list(frame.columns)
    return pd.DataFrame({c: [format_value(v, formats.get(c, "")) for v in frame[c]]
                         for c in columns}, index=frame.index)


def layer_depth(layers: list[str]) -> dict[str, float]:
    """Relative depth of each layer: first 0, last 1 (runs of different depth line up)."""
    if len(layers) <= 1:
        return {layer: 0.0 for layer in layers}
    return {layer: i / (len(layers) - 1) for i, layer in enumerate(layers)}


def table_layout(block: Any) -> tuple[pd.DataFrame, list[str]]:
    """A :class:`~probe.views.Table`'s rows in its order and the columns it shows.

    The rows are sorted by ``block.sort``; the columns are the scalar ones that are
    not empty everywhere, without the hidden, link-target and muted columns.
    """
    frame = block.frame
    if block.sort is not None and block.sort[0] in frame.columns:
        frame = frame.sort_values(block.sort[0], ascending=not block.sort[1], kind="stable")
    hidden = set(block.hidden) | set(block.links.values())
    if block.muted:
        hidden.add(block.muted)
    return frame, shown_columns(frame, hidden)
