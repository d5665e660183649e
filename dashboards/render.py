"""Blocks (:mod:`probe.views.blocks`) as Dash components.

Every figure gets PNG and SVG download, every table is a Dash AG Grid with
sorting, filtering and a CSV button, muted rows are greyed and marked,
pictures enlarge on click (``assets/probe.js``). Nothing here knows any analysis.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Sequence
from typing import Any

import dash_ag_grid as dag
import numpy as np
import pandas as pd
from dash import dcc, html

from probe.views import blocks
from probe.views.format import format_value, grid_formatter, grid_number, heading, table_layout
from probe.views.images import data_uri
from probe.views.plots import legend_below

#: Rows of a table sent to the browser at most (the caption says when it cuts).
MAX_ROWS = 5000


#: Rows per page of a grid, then the sizes its page-size selector offers.
PAGE_SIZES = (25, 50, 100)
#: The narrowest a grid column gets (px).
MIN_COLUMN_PX = 90


def slug(*parts: object) -> str:
    """An element id from ``parts`` (letters, digits and ``-``)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", "-".join(str(p) for p in parts)).strip("-").lower()


def render(block: Any, key: str = "") -> Any:
    """One block as a Dash component (``key`` keeps element ids unique on a page)."""
    if isinstance(block, blocks.Section):
        return section(block, key)
    if isinstance(block, blocks.Figure):
        return graph(block.figure, slug(key, block.name), block.caption, block.name)
    if isinstance(block, blocks.Table):
        return grid(block, slug(key, block.name))
    if isinstance(block, blocks.Pictures):
        return pictures(block, slug(key, block.name))
    if isinstance(block, blocks.Facts):
        return facts(block, slug(key, block.name))
    if isinstance(block, blocks.Note):
        return note(block.text, block.level)
    if isinstance(block, blocks.Headline):
        return facts(blocks.Facts([(block.label, block.value)],
                                  formats={block.label: block.format}), slug(key, block.label))
    if isinstance(block, blocks.Choice):
        return choice(block, slug(key, block.name))
    return note(f"a view returned {type(block).__name__}, which is not a view block",
                "warning")


def render_all(items: Any, key: str) -> list[Any]:
    """Each block of ``items`` rendered, ids prefixed with ``key`` and the position."""
    return [render(b, f"{key}-{i}") for i, b in enumerate(items or [])]


def view_section(heading: str, items: Any, ident: str, analysis: str,
                 layer: str | None = None, level: int = 3) -> html.Section:
    """One analysis's blocks on a page: a panel headed ``heading`` with id ``ident``."""
    title = html.H3(heading) if level == 3 else html.H4(heading)
    data = {"data-analysis": analysis, **({"data-layer": layer} if layer else {})}
    return html.Section([title, *render_all(items, ident)], className="panel view-section",
                        id=ident, **data)


def section(block: blocks.Section, key: str = "") -> html.Section:
    """A titled section (``<h3>``) of rendered blocks."""
    ident = slug("section", key, block.analysis, block.layer or "", block.title)
    return html.Section([html.H3(block.title), *render_all(block.blocks, ident)],
                        className="panel view-section", id=ident,
                        **{"data-analysis": block.analysis, "data-layer": block.layer or ""})


def choice(block: blocks.Choice, id: str) -> html.Div:
    """One tab per option (the first open); every option's blocks are sent at once, so
    switching happens in the browser."""
    tabs = [dcc.Tab(label=label, value=slug(id, k), className="choice-tab",
                    selected_className="choice-tab-selected",
                    children=render_all(inner, slug(id, k)))
            for k, (label, inner) in enumerate(block.options)]
    head = [html.Span(f"{block.label}:", className="choice-label")] if block.label else []
    return html.Div([*head, dcc.Tabs(tabs, value=slug(id, 0), id=id, className="choice")],
                    className="view-choice", **{"data-choice": block.label or block.name})


def note(text: str, level: str = "info", id: str | None = None) -> html.Div:
    """A highlighted sentence; warnings stand out."""
    props = {"id": id} if id else {}
    return html.Div(text, className=f"notice notice-{level}", **props)


def graph(figure: Any, id: str, caption: str = "", name: str = "figure") -> html.Figure:
    """A plotly figure with PNG download in its mode bar and an SVG button, and its caption."""
    file = slug(name) or "figure"
    config = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": file,
                                                              "scale": 2}}
    children: list[Any] = [dcc.Graph(id=id, figure=legend_below(plain_figure(figure)),
                                     config=config),
                           html.Button("SVG", className="download-svg", title="download as SVG",
                                       **{"data-graph": id, "data-file": file})]
    if caption:
        children.append(html.Figcaption(caption))
    return html.Figure(children, className="view-figure")


def _cell(value: Any) -> Any:
    """A JSON cell: numbers rounded to 4 significant digits (no float32 noise), text as is."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        if math.isnan(number):
            return None
        if math.isinf(number) or number == 0:
            return None if math.isinf(number) else 0.0
        return float(f"{number:.4g}")
    return str(value)


def number_width(cells: Sequence[Any], sample: int = 500) -> int:
    """Pixels a numeric column needs so its longest cell shows whole (not ``-0.008…``).

    About 8 px per character of the rounded number plus the cell's padding and the
    filter icon; never below :data:`MIN_COLUMN_PX`. Long columns are measured on
    ``sample`` evenly spaced cells plus the largest, the smallest and the smallest
    non-zero magnitude (where the widest numbers are), so a 5,000-row grid costs no
    more than a 500-row one.
    """
    numbers = [v for v in cells if v is not None]
    if len(numbers) > sample:
        values = np.asarray(numbers, dtype=float)
        magnitude = np.abs(values)
        nonzero = magnitude > 0
        extremes = [int(values.argmax()), int(values.argmin())]
        if nonzero.any():
            smallest = np.flatnonzero(nonzero)[magnitude[nonzero].argmin()]
            extremes.append(int(smallest))
        spaced = np.linspace(0, len(numbers) - 1, sample).astype(int).tolist()
        numbers = [numbers[i] for i in spaced + extremes]
    longest = max((len(str(v)) for v in numbers), default=0)
    return max(MIN_COLUMN_PX, 8 * longest + 44)


def grid(block: blocks.Table, id: str) -> html.Div:
    """A table as a Dash AG Grid: labelled headers, sort, filter, muted rows, CSV download."""
    frame, columns = table_layout(block)
    cut = len(frame) > MAX_ROWS
    shown = frame.head(MAX_ROWS)
    cells = grid_cells(block, shown, columns)
    rows = grid_rows(block, shown, columns, cells)
    defs = []
    for column in columns:
        title = heading(column, block.labels)
        if block.formats.get(column) == "percent":
            title += " (%)"
        spec: dict[str, Any] = {"field": column, "headerName": title, "headerTooltip": column}
        if column in block.links:
            spec["cellRenderer"] = "markdown"
        elif pd.api.types.is_numeric_dtype(frame[column]) and frame[column].dtype != bool:
            spec["filter"] = "agNumberColumnFilter"
            spec["type"] = "numericColumn"
            spec["minWidth"] = number_width(cells[column])
            formatter = grid_formatter(block.formats.get(column, ""))
            if formatter:
                spec["valueFormatter"] = formatter
        defs.append(spec)
    file = slug(block.name) or "table"
    options: dict[str, Any] = {"pagination": len(rows) > PAGE_SIZES[0],
                               "paginationPageSize": PAGE_SIZES[0],
                               # the selector must list the page size, or AG Grid shows it empty
                               "paginationPageSizeSelector": list(PAGE_SIZES),
                               "domLayout": "autoHeight", "enableCellTextSelection": True}
    grid_props: dict[str, Any] = {}
    if block.muted:
        grid_props["rowClassRules"] = {"muted-row": "params.data._muted"}
    caption = block.caption + (f" (first {MAX_ROWS} of {len(frame)} rows)" if cut else "")
    if block.muted and block.muted_label:
        caption += f" Greyed rows: {block.muted_label}."
    table = dag.AgGrid(
        id={"type": "probe-grid", "id": id}, rowData=rows, columnDefs=defs,
        defaultColDef={"sortable": True, "filter": True, "resizable": True, "flex": 1,
                       "minWidth": MIN_COLUMN_PX, "wrapHeaderText": True,
                       "autoHeaderHeight": True},
        dashGridOptions=options, csvExportParams={"fileName": f"{file}.csv"},
        columnSize="responsiveSizeToFit", className="ag-theme-alpine probe-grid",
        style={"width": "100%"}, **grid_props)
    bar = html.Div([html.Span(caption.strip(), className="caption"),
                    html.Button("CSV", id={"type": "probe-grid-csv", "id": id},
                                className="download-csv", title="download as CSV")],
                   className="grid-bar")
    return html.Div([bar, table], className="view-table", id=f"table-{id}")


def grid_rows(block: blocks.Table, shown: pd.DataFrame, columns: list[str],
              cells: dict[str, list[Any]] | None = None) -> list[dict[str, Any]]:
    """The grid's rows of ``shown``: numbers rounded as :func:`grid_number` rounds them (a
    float column's cells), other cells as :func:`_cell` makes them, links as markdown.

    Assembled from :func:`grid_cells` (``cells``, when the caller has them already), the
    same cells as converting ``shown.to_dict("records")`` one by one.
    """
    if cells is None:
        cells = grid_cells(block, shown, columns)
    rows = [dict(zip(columns, values, strict=True)) for values in zip(
        *(cells[c] for c in columns), strict=True)] if columns else [{} for _ in range(len(shown))]
    if block.muted:
        flags = shown[block.muted].tolist() if block.muted in shown else [None] * len(rows)
        for row, flag in zip(rows, flags, strict=True):
            row["_muted"] = bool(flag)
    return rows


def grid_cells(block: blocks.Table, shown: pd.DataFrame,
               columns: list[str]) -> dict[str, list[Any]]:
    """``{column: its cells}`` of the grid, built column by column (one conversion per
    column, not a dict per row and a type test per cell)."""
    records = shown.to_dict("records") if len(shown) and any(
        column in block.links for column in columns) else None
    cells: dict[str, list[Any]] = {}
    for column in columns:
        values = shown[column].tolist()
        fmt = block.formats.get(column, "")
        cells[column] = [grid_number(v, fmt) if isinstance(v, float | np.floating) else _cell(v)
                         for v in values]
        if column in block.links and records is not None:
            target = block.links[column]
            cells[column] = [
                f"[{format_value(record.get(column))}]({record[target]})"
                if record.get(target) else value
                for record, value in zip(records, cells[column], strict=True)]
    return cells


def pictures(block: blocks.Pictures, id: str) -> html.Div:
    """Pictures in a wrapping row; a click opens the unit (``href``) or enlarges the picture."""
    items = []
    for i, picture in enumerate(block.items):
        image = html.Img(src=data_uri(picture.png), alt=picture.caption or f"picture {i}",
                         className="zoomable" if picture.href is None else "")
        body: Any = dcc.Link(image, href=picture.href) if picture.href else image
        children: list[Any] = [body]
        if picture.badge:
            children.insert(0, html.Span(picture.badge, className="badge"))
        if picture.caption:
            children.append(html.Figcaption(picture.caption))
        items.append(html.Figure(children, id=f"{id}-{i}",
                                 className="exemplar" + (" muted" if picture.muted else "")))
    out: list[Any] = [html.Div(items, className="pictures", id=id)]
    if block.caption:
        out.insert(0, html.P(block.caption, className="caption"))
    return html.Div(out)


def facts(block: blocks.Facts, id: str) -> html.Table:
    """``(label, value)`` pairs as a two-column table."""
    rows = [html.Tr([html.Th(label), html.Td(format_value(value, block.formats.get(label, "")))])
            for label, value in block.items]
    return html.Table(rows, className="stats", id=id)


def _structure(value: Any) -> Any:
    """A copy of the dicts, lists and tuples of ``value``; everything else shared."""
    if isinstance(value, dict):
        return {k: _structure(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_structure(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_structure(v) for v in value)
    return value


def plain_figure(figure: Any) -> Any:
    """A plotly figure in its JSON form (what ``figure.to_plotly_json()`` returns); a dict
    (or anything else) as it is.

    ``to_plotly_json`` deep-copies the figure, numeric arrays and the whole template
    included, only to encode the arrays; here the dicts and lists are copied and the
    arrays shared (encoding reads them), the same answer at a fraction of the cost.
    """
    if isinstance(figure, dict) or not hasattr(figure, "to_plotly_json"):
        return figure
    try:
        data, layout, frames = figure._data, figure._layout, figure._frame_objs
    except AttributeError:  # not a plotly BaseFigure: its own conversion
        return figure.to_plotly_json()
    out = {"data": _structure(data), "layout": _structure(layout)}
    frame_props = _structure([frame._props for frame in frames])
    if frame_props:
        out["frames"] = frame_props
    _encode_arrays(out)
    return out


#: Keys whose arrays plotly leaves as lists (``_plotly_utils.utils.is_skipped_key``).
_NOT_ENCODED = ("geojson", "layer", "layers", "range")
#: Integer dtypes narrowed before encoding: ``(dtype, [(narrower dtype, min, max)])``.
_NARROWER = {"int64": [("int8", -2**7, 2**7 - 1), ("int16", -2**15, 2**15 - 1),
                       ("int32", -2**31, 2**31 - 1)],
             "uint64": [("uint8", 0, 2**8 - 1), ("uint16", 0, 2**16 - 1),
                        ("uint32", 0, 2**32 - 1)]}


def _typed_array(values: np.ndarray) -> Any:
    """A numeric array as plotly.js's typed-array spec, as
    ``_plotly_utils.utils.to_typed_array_spec`` writes it (without its conversions,
    which a numeric numpy array does not need)."""
    from _plotly_utils.utils import plotlyjsShortTypes

    values = np.ascontiguousarray(values)
    if values.size == 0:
        return values
    dtype = str(values.dtype)
    if dtype in _NARROWER:
        low, high = values.min(), values.max()
        narrower = next((d for d, a, b in _NARROWER[dtype] if low >= a and high <= b), None)
        if narrower is None:
            return values
        values = values.astype(narrower)
        dtype = narrower
    if dtype not in plotlyjsShortTypes:
        return values
    spec = {"dtype": plotlyjsShortTypes[dtype],
            "bdata": base64.b64encode(values).decode("ascii")}
    if values.ndim > 1:
        spec["shape"] = str(values.shape)[1:-1]
    return spec


def _encode_arrays(node: Any) -> None:
    """``_plotly_utils.utils.convert_to_base64``, in place, with numeric numpy arrays encoded
    directly and plain values skipped (plotly asks narwhals about every value)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in _NOT_ENCODED or value is None or isinstance(value, str | int | float):
                continue
            if isinstance(value, dict | list | tuple):
                _encode_arrays(value)
            elif isinstance(value, np.ndarray) and value.dtype.kind in "uif":
                node[key] = _typed_array(value)
            else:
                from _plotly_utils.basevalidators import is_homogeneous_array
                from _plotly_utils.utils import to_typed_array_spec

                if is_homogeneous_array(value):
                    node[key] = to_typed_array_spec(value)
    elif isinstance(node, list | tuple):
        for value in node:
            _encode_arrays(value)


def plain_figures(component: Any) -> Any:
    """Replace every figure object in a layout by its JSON form, in place.

    A kept page is sent many times; a plotly ``Figure`` is converted (copied,
    validated, arrays encoded) on every send, its plain form once.
    """
    if isinstance(component, dcc.Graph) and hasattr(component.figure, "to_plotly_json"):
        component.figure = plain_figure(component.figure)
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list | tuple) else [children]:
        if hasattr(child, "to_plotly_json"):
            plain_figures(child)
    return component
