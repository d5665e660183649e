"""Units: one layer's units as a grid, sorted, filtered and paged on the server."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import dash
import pandas as pd
from dash import Input, Output, State, callback, dash_table, html

from probe.dashboards.components import missing, notice, run_dropdown
from probe.dashboards.data import UNIT_PAGE_TABLES, RunSource, get_source
from probe.dashboards.figures import filter_sort_page, make_unit_table
from probe.dashboards.layers_data import DISSECTION_COLUMNS, FILTER_COLUMNS
from probe.errors import ProbeError

dash.register_page(__name__, path="/units", name="Units", title="probe: units", nav=True,
                   order=2)

PAGE_SIZE = 25
#: Most rows one grid page may ask for, and the longest filter accepted.
MAX_PAGE_SIZE = 500
MAX_FILTER = 2000


def unit_rows(source: RunSource, run_name: str, layer: str) -> pd.DataFrame:
    """The unit grid of one layer: unit-stats, dissection and filter columns merged (cached)."""
    run = source.run(run_name)
    source.check_layer(run, layer)
    return source.memo(run, ("unit-grid", layer), lambda: _unit_rows(source, run, layer))


def _unit_rows(source: RunSource, run: Any, layer: str) -> pd.DataFrame:
    run_name = run.name
    units = source.optional(run, "unit-stats", "units", layer=layer)
    dissection = source.optional(run, "dissection", "units", DISSECTION_COLUMNS, layer)
    filters = source.optional(run, "filters", "units", FILTER_COLUMNS, layer)
    frame = make_unit_table(units, dissection, filters)
    frame.insert(1, "open", [f"[unit {u}](/unit/{quote(run_name)}/{quote(layer)}/{u})"
                             for u in frame["unit"]])
    return frame


def initial_filter(category: str | None) -> str:
    """The grid's filter for ``?category=NAME`` (letters, digits, ``_``, ``-`` only)."""
    if not category or not all(c.isalnum() or c in "_-" for c in category):
        return ""
    return f"{{category}} = {category}"


def layout(run: str | None = None, layer: str | None = None, category: str | None = None,
           **_: Any) -> html.Div:
    """The units page; ``?run=RUN&layer=LAYER&category=CATEGORY`` preselects."""
    source = get_source()
    names = source.run_names()
    selected = source.default_run(run)
    columns: list[dict[str, str]] = []
    if selected and layer:
        # Known columns from the start: DataTable keeps a preset filter only on
        # columns it already has.
        try:
            columns = grid_columns(unit_rows(source, selected, layer))
        except ProbeError:
            columns = []
    return html.Div([
        html.H2("Units"),
        html.Div([run_dropdown("units-run", names, selected),
                  html.Div([html.Label("layer"),
                            dash.dcc.Dropdown(id="units-layer", value=layer, clearable=False)])],
                 className="controls"),
        html.Div(id="units-notice"),
        dash_table.DataTable(
            id="units-table", columns=columns, page_current=0, page_size=PAGE_SIZE,
            page_action="custom",
            sort_action="custom", sort_mode="multi", sort_by=[], filter_action="custom",
            filter_query=initial_filter(category), markdown_options={"link_target": "_self"},
            style_cell={"fontSize": "0.85rem", "padding": "2px 6px", "textAlign": "left"},
            style_table={"overflowX": "auto"}),
    ])


@callback(Output("units-layer", "options"), Output("units-layer", "value"),
          Input("units-run", "value"), State("units-layer", "value"))
def layer_choices(run: str | None, current: str | None) -> tuple[list[str], str | None]:
    """Layers of the chosen run; keeps the current layer when the run has it."""
    if not run:
        return [], None
    try:
        source = get_source()
        layers = source.layers(source.run(run))
    except ProbeError:
        return [], None
    return layers, current if current in layers else (layers[0] if layers else None)


@callback(Output("units-table", "data"), Output("units-table", "columns"),
          Output("units-table", "page_count"), Output("units-notice", "children"),
          Input("units-run", "value"), Input("units-layer", "value"),
          Input("units-table", "page_current"), Input("units-table", "page_size"),
          Input("units-table", "sort_by"), Input("units-table", "filter_query"))
def units_page(run: str | None, layer: str | None, page: int | None, page_size: int | None,
               sort_by: list[dict[str, str]] | None, filter_query: str | None
               ) -> tuple[list[dict[str, Any]], list[dict[str, str]], int, Any]:
    """One page of the unit grid (filtered and sorted on the server).

    Every input comes from the browser: run and layer are checked against the
    runs, the paging, sorting and filter inputs by :func:`grid_request`.
    """
    if not run or not layer:
        return [], [], 1, notice("Pick a run and a layer.")
    source = get_source()
    try:
        frame = unit_rows(source, run, layer)
    except ProbeError as exc:
        return [], [], 1, notice(str(exc))
    messages = []
    run_obj = source.run(run)
    # the next click is likely a unit page: read its exemplar tables meanwhile
    source.prefetch(run_obj, UNIT_PAGE_TABLES)
    if not run_obj.has_table("dissection", "units"):
        messages.append(missing("dissection", run, "no concept labels, categories or IoU"))
    page, page_size, sort_by, filter_query = grid_request(page, page_size, sort_by,
                                                          filter_query)
    try:
        rows, pages = filter_sort_page(frame, filter_query, sort_by, page, page_size)
    except ValueError as exc:
        rows, pages = frame.iloc[:0], 1
        messages.append(notice(f"filter: {exc}"))
    messages.append(html.P(f"{len(frame)} units in {layer}", id="units-count"))
    return rows.to_dict("records"), grid_columns(frame), pages, messages


def grid_request(page: Any, page_size: Any, sort_by: Any, filter_query: Any
                 ) -> tuple[int, int, list[dict[str, str]], str]:
    """The grid's page, page size, sorting and filter as sent, or their defaults.

    The browser sends these, so anything is possible: a page that is not a
    non-negative integer is 0, a page size outside 1..:data:`MAX_PAGE_SIZE` is
    :data:`PAGE_SIZE`, sorting keeps only ``{"column_id": str, "direction":
    "asc"|"desc"}`` entries (anything but a list of them sorts nothing), a
    filter that is not a string (or longer than :data:`MAX_FILTER` characters)
    filters nothing.
    """
    def whole(value: Any) -> int | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return int(value) if float(value).is_integer() else None

    number = whole(page)
    page = number if number is not None and 0 <= number < 10**9 else 0
    size = whole(page_size)
    page_size = size if size is not None and 1 <= size <= MAX_PAGE_SIZE else PAGE_SIZE
    sorts = []
    for entry in sort_by if isinstance(sort_by, list) else []:
        if (isinstance(entry, dict) and isinstance(entry.get("column_id"), str)
                and entry.get("direction", "asc") in ("asc", "desc")):
            sorts.append({"column_id": entry["column_id"],
                          "direction": entry.get("direction", "asc")})
    if not isinstance(filter_query, str) or len(filter_query) > MAX_FILTER:
        filter_query = ""
    return page, page_size, sorts, filter_query


def grid_columns(frame: pd.DataFrame) -> list[dict[str, str]]:
    """DataTable column specs of the unit grid (markdown links, numeric types)."""
    return [{"name": c, "id": c, **({"presentation": "markdown"} if c == "open" else {}),
             **({"type": "numeric"} if pd.api.types.is_numeric_dtype(frame[c])
                and frame[c].dtype != bool else {})}
            for c in frame.columns]
