"""A large table as an AG Grid whose rows stay on the server (AG Grid's infinite row model).

The browser asks for a block of rows (``getRowsRequest``: start, end, the sort
and filter models); :func:`rows_response` answers with those rows only, sorted
and filtered in pandas. A 2,048-unit layer costs the browser one block of 100
rows, not the whole table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dash_ag_grid as dag
import numpy as np
import pandas as pd

from probe.views.format import DECIMALS, grid_formatter, grid_number, heading

#: Rows per block the grid asks for.
BLOCK = 100
#: The tests of AG Grid's number filter, as numpy functions.
NUMBER_TESTS = {"equals": np.equal, "notEqual": np.not_equal, "lessThan": np.less,
                "lessThanOrEqual": np.less_equal, "greaterThan": np.greater,
                "greaterThanOrEqual": np.greater_equal}


def column_defs(frame: pd.DataFrame, labels: Mapping[str, str], formats: Mapping[str, str],
                links: Sequence[str] = ()) -> list[dict[str, Any]]:
    """AG Grid column definitions of ``frame`` (numbers filter as numbers, links as markdown)."""
    defs = []
    for column in frame.columns:
        spec: dict[str, Any] = {"field": column, "headerName": heading(column, labels)
                                + (" (%)" if formats.get(column) == "percent" else ""),
                                "headerTooltip": column}
        if column in links:
            spec["cellRenderer"] = "markdown"
            spec["filter"] = "agNumberColumnFilter"
        elif pd.api.types.is_bool_dtype(frame[column]):
            spec["filter"] = "agTextColumnFilter"
        elif pd.api.types.is_numeric_dtype(frame[column]):
            spec["filter"] = "agNumberColumnFilter"
            spec["type"] = "numericColumn"
            formatter = grid_formatter(formats.get(column, ""))
            if formatter:
                spec["valueFormatter"] = formatter
        else:
            spec["filter"] = "agTextColumnFilter"
        defs.append(spec)
    return defs


def server_grid(ident: Any, defs: list[dict[str, Any]], rows: int, muted: bool,
                file: str) -> dag.AgGrid:
    """An empty grid that fetches its rows from the server block by block."""
    props: dict[str, Any] = {}
    if muted:
        props["rowClassRules"] = {"muted-row": "params.data && params.data._muted"}
    return dag.AgGrid(
        id=ident, columnDefs=defs, rowModelType="infinite",
        defaultColDef={"sortable": True, "filter": True, "resizable": True, "flex": 1,
                       "minWidth": 90, "wrapHeaderText": True, "autoHeaderHeight": True,
                       "filterParams": {"maxNumConditions": 1}},
        dashGridOptions={"cacheBlockSize": BLOCK, "maxBlocksInCache": 20,
                         "rowBuffer": 0, "infiniteInitialRowCount": min(rows, BLOCK),
                         "enableCellTextSelection": True},
        csvExportParams={"fileName": f"{file}.csv"}, columnSize="responsiveSizeToFit",
        className="ag-theme-alpine probe-grid", style={"width": "100%", "height": "520px"},
        **props)


def _one_filter(series: pd.Series, spec: Mapping[str, Any]) -> pd.Series:
    kind, test = spec.get("filterType"), spec.get("type")
    if test == "blank":
        return series.isna()
    if test == "notBlank":
        return series.notna()
    if kind == "number":
        numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=float)
        value = spec.get("filter")
        if not isinstance(value, int | float) or isinstance(value, bool):
            return pd.Series(True, index=series.index)
        if test == "inRange":
            upper = spec.get("filterTo")
            upper = float(upper) if isinstance(upper, int | float) else np.inf
            return pd.Series((numbers >= value) & (numbers <= upper), index=series.index)
        function = NUMBER_TESTS.get(str(test))
        if function is None:
            return pd.Series(True, index=series.index)
        return pd.Series(function(numbers, float(value)), index=series.index)
    text = series.astype(str).str.lower()
    value = str(spec.get("filter") or "").lower()
    tests = {"contains": lambda: text.str.contains(value, regex=False),
             "notContains": lambda: ~text.str.contains(value, regex=False),
             "equals": lambda: text == value, "notEqual": lambda: text != value,
             "startsWith": lambda: text.str.startswith(value),
             "endsWith": lambda: text.str.endswith(value)}
    return tests.get(str(test), lambda: pd.Series(True, index=series.index))()


def filtered(frame: pd.DataFrame, model: Any, values: Mapping[str, str] | None = None
             ) -> pd.DataFrame:
    """``frame`` with AG Grid's filter model applied (unknown columns and tests ignored).

    Args:
        values: ``{shown column: column holding its value}`` for columns shown as
            links (the unit number behind ``[3](/unit/...)``).
    """
    if not isinstance(model, dict):
        return frame
    keep = pd.Series(True, index=frame.index)
    for column, spec in model.items():
        source = (values or {}).get(column, column)
        if source not in frame.columns or not isinstance(spec, dict):
            continue
        conditions = spec.get("conditions")
        if isinstance(conditions, list) and conditions:
            parts = [_one_filter(frame[source], c) for c in conditions if isinstance(c, dict)]
            if not parts:
                continue
            joined = parts[0]
            for part in parts[1:]:
                joined = (joined | part) if spec.get("operator") == "OR" else (joined & part)
            keep &= joined
        else:
            keep &= _one_filter(frame[source], spec)
    return frame[keep.to_numpy()]


def sorted_by(frame: pd.DataFrame, model: Any) -> pd.DataFrame:
    """``frame`` sorted by AG Grid's sort model (``[{colId, sort: asc|desc}]``)."""
    if not isinstance(model, list):
        return frame
    keys = [(m["colId"], m.get("sort") != "desc") for m in model
            if isinstance(m, dict) and m.get("colId") in frame.columns
            and m.get("sort") in ("asc", "desc")]
    if not keys:
        return frame
    return frame.sort_values([k for k, _ in keys], ascending=[a for _, a in keys],
                             kind="stable", na_position="last")


def _round(values: np.ndarray) -> list[Any]:
    """Floats to 4 significant digits (NaN and infinities as empty cells), vectorised."""
    out = np.full(values.shape, None, dtype=object)
    finite = np.isfinite(values)
    if finite.any():
        picked = values[finite]
        magnitude = np.floor(np.log10(np.abs(np.where(picked == 0, 1, picked))))
        factor = 10.0 ** (3 - magnitude)
        out[finite] = np.round(picked * factor) / factor
    return out.tolist()


def _fixed(values: np.ndarray, decimals: int) -> list[Any]:
    """Floats rounded to ``decimals`` decimals (NaN and infinities as empty cells), as
    :func:`probe.views.format.grid_number` rounds them (Python's correctly rounded
    ``round``: ``np.round`` scales first, and 0.0125 would become 0.012, not 0.013)."""
    return [grid_number(v, f"fixed{decimals}") for v in values.tolist()]


def rows_response(frame: pd.DataFrame, request: Any, formats: Mapping[str, str],
                  links: Mapping[str, str], muted: str | None = None,
                  values: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The rows one ``getRowsRequest`` asks for, and how many rows the filter leaves.

    Args:
        frame: Every row, with the href columns named in ``links`` values.
        links: ``{shown column: href column}``: the cell becomes ``[value](href)``.
        muted: A boolean column sent as ``_muted`` (the row is greyed).
        values: As in :func:`filtered` (the sort and filter act on the plain value).
    """
    request = request if isinstance(request, dict) else {}
    start = request.get("startRow")
    end = request.get("endRow")
    start = start if isinstance(start, int) and start >= 0 else 0
    end = end if isinstance(end, int) and end > start else start + BLOCK
    end = min(end, start + 10 * BLOCK)
    chosen = sorted_by(filtered(frame, request.get("filterModel"), values),
                       [dict(m, colId=(values or {}).get(m.get("colId"), m.get("colId")))
                        for m in request.get("sortModel") or [] if isinstance(m, dict)])
    block = chosen.iloc[start:end]
    columns: dict[str, list[Any]] = {}
    shown = [c for c in block.columns if c not in set(links.values()) and c != muted]
    for column in shown:
        series = block[column]
        if column in links:
            columns[column] = [f"[{v}]({h})" for v, h in zip(series, block[links[column]],
                                                                strict=True)]
        elif pd.api.types.is_bool_dtype(series):
            columns[column] = ["yes" if v else "no" for v in series]
        elif pd.api.types.is_float_dtype(series):
            numbers = series.to_numpy(dtype=float)
            fmt = formats.get(column, "")
            if fmt == "percent":
                columns[column] = _round(numbers * 100)
            elif fmt in DECIMALS:
                columns[column] = _fixed(numbers, DECIMALS[fmt])
            else:
                columns[column] = _round(numbers)
        elif pd.api.types.is_integer_dtype(series):
            columns[column] = [None if pd.isna(v) else int(v) for v in series]
        else:
            columns[column] = [None if v is None or v is pd.NA else str(v) for v in series]
    if muted:
        columns["_muted"] = [bool(v) for v in block[muted]]
    rows = [dict(zip(columns, cells, strict=True)) for cells in zip(*columns.values(),
                                                                   strict=True)] \
        if columns else []
    return {"rowData": rows, "rowCount": len(chosen)}
