"""Units: one layer's units as cards (exemplar, name, score, flag) and as a table.

What each card says comes from the analyses' ``unit_columns`` hooks (the title,
the default sort, the flag of units meeting its criterion) and ``unit_thumbnails``; the
page names no analysis. A search box finds a concept in every layer.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import dash
import pandas as pd
from dash import ALL, MATCH, Dash, Input, Output, State, dcc, html
from dash.exceptions import PreventUpdate

from probe.dashboards.components import layer_choices, layer_dropdown, notice, run_dropdown
from probe.dashboards.data import get_source
from probe.dashboards.render import grid, slug
from probe.dashboards.run_view import DashRunView, unit_href
from probe.dashboards.server_grid import column_defs, rows_response, server_grid
from probe.dashboards.unit_data import UnitGrid, card_pictures, search_units, unit_grid
from probe.errors import ProbeError
from probe.views import Table
from probe.views.format import format_value, scalar_columns
from probe.views.images import data_uri

#: Cards per page.
CARDS = 48
#: Longest search text accepted from the browser.
MAX_SEARCH = 200


def layout(
    run: str | None = None,
    layer: str | None = None,
    flagged: str | None = None,
    q: str | None = None,
    **_: Any,
) -> html.Div:
    """The units page; ``?run=RUN&layer=LAYER&flagged=1&q=TEXT`` preselects. It comes with
    its sort choices, first cards and grid (the callbacks answer changes only)."""
    source = get_source()
    run = source.default_run(run)
    layer = layer_choices(run, layer)[1]
    flag_value = ["flagged"] if flagged else []
    sort_options, sort_value, flag_options = sort_choices(run, layer, None)
    cards, count = units_content(run, layer, flag_value, sort_value, 0)
    return html.Div(
        [
            html.H2("Units"),
            html.Div(
                [
                    run_dropdown("units-run", source.run_names(), run),
                    layer_dropdown("units-layer", run, layer),
                    html.Div([html.Label("sort by"), dcc.Dropdown(
                        id="units-sort", clearable=False, options=sort_options,
                        value=sort_value)]),
                    html.Div(
                        [
                            dcc.Checklist(
                                id="units-flagged",
                                options=flag_options,
                                inline=True,
                                value=flag_value,
                            )
                        ]
                    ),
                    html.Div(
                        [
                            html.Label("search a concept in every layer"),
                            dcc.Input(
                                id="units-search",
                                type="search",
                                debounce=True,
                                value=q if isinstance(q, str) else "",
                                placeholder="e.g. wheel",
                                maxLength=MAX_SEARCH,
                            ),
                        ]
                    ),
                ],
                className="controls",
            ),
            html.Div(id="units-search-results"),
            html.Div(
                [
                    html.Button("← previous cards", id="units-prev", n_clicks=0),
                    html.Span(count, id="units-count", className="caption"),
                    html.Button("next cards →", id="units-next", n_clicks=0),
                ],
                className="grid-bar",
            ),
            dcc.Store(id="units-page", data=0),
            dcc.Loading(html.Div(cards, id="units-cards", className="cards"), type="dot"),
            html.H3("All columns"),
            dcc.Loading(html.Div(units_table(run, layer, flag_value), id="units-table"),
                        type="dot"),
        ]
    )




def _grid(run: str | None, layer: str | None) -> tuple[DashRunView, UnitGrid]:
    source = get_source()
    run_obj = source.run(run)
    layer = source.check_layer(run_obj, layer)
    view = DashRunView(source, run_obj)
    return view, unit_grid(view, layer)


def sort_choices(
    run: str | None, layer: str | None, current: str | None
) -> tuple[list[dict[str, str]], str | None, list[dict[str, str]]]:
    """Numeric columns to sort by (default: the analyses' score), and the flag toggle."""
    if not run or not layer:
        return [], None, []
    try:
        _, units = _grid(run, layer)
    except ProbeError:
        return [], None, []
    frame = units.frame
    numeric = [
        c
        for c in frame.columns
        if pd.api.types.is_numeric_dtype(frame[c]) and frame[c].dtype != bool
    ]
    options = [{"label": units.labels.get(c, c), "value": c} for c in numeric]
    value = current if current in numeric else (units.score if units.score in numeric else "unit")
    flag = (
        [{"label": f" {units.flag_label or units.flag} only", "value": "flagged"}]
        if units.flag
        else []
    )
    return options, value, flag


def turn_page(_prev: Any, _next: Any, _layer: Any, _flag: Any, _sort: Any, page: Any) -> int:
    """Previous/next card page; a new layer, filter or sort starts at the first page."""
    trigger = dash.ctx.triggered_id
    page = page if isinstance(page, int) and page >= 0 else 0
    if trigger == "units-next":
        return page + 1
    if trigger == "units-prev":
        return max(0, page - 1)
    return 0


def selected_units(units: UnitGrid, flagged: bool, sort: str | None) -> pd.DataFrame:
    """The units shown: flagged ones only when asked, sorted (descending except by unit)."""
    frame = units.frame
    if flagged and units.flag:
        frame = frame[frame[units.flag].astype(bool)]
    if sort and sort in frame.columns:
        frame = frame.sort_values(sort, ascending=sort == "unit", kind="stable", na_position="last")
    return frame


def units_content(
    run: str | None, layer: str | None, flagged: Any, sort: Any, page: Any
) -> tuple[Any, str]:
    """One page of cards, and the count that follows the filter."""
    if not run or not layer:
        return notice("Pick a run and a layer."), ""
    try:
        view, units = _grid(run, layer)
    except ProbeError as exc:
        return notice(str(exc), id="units-error"), ""
    problems = [notice(p) for p in units.problems]
    if units.frame.empty:
        return (
            [*problems, notice(f"No analysis of run {run} lists the units of {layer}.")],
            "0 units",
        )
    flag_only = isinstance(flagged, list) and "flagged" in flagged
    sort = sort if isinstance(sort, str) and sort in units.frame.columns else None
    # the layer's units in the order shown, sorted once per run, layer, filter and sort
    shown = view.source.memo(view.run, ("units-shown", layer, flag_only, sort),
                             lambda: selected_units(units, flag_only, sort))
    pages = max(1, -(-len(shown) // CARDS))
    page = min(page if isinstance(page, int) and page >= 0 else 0, pages - 1)

    def page_cards() -> tuple[list[Any], int]:
        chunk = shown.iloc[page * CARDS : (page + 1) * CARDS]
        return [card(view, units, layer, record) for record in chunk.to_dict("records")], \
            len(chunk)

    # a page of cards is built once per run (going back and forth costs nothing)
    cards, size = view.source.memo(view.run, ("units-cards", layer, flag_only, sort, page),
                                   page_cards)
    what = f"{units.flag_label or 'flagged'} " if flag_only else ""
    count = (
        f"{len(shown)} {what}units of {units.units} in {layer} · cards "
        f"{page * CARDS + 1 if len(shown) else 0}–{page * CARDS + size} "
        f"(page {page + 1} of {pages})"
    )
    return [*problems, *cards], count


def card(view: DashRunView, units: UnitGrid, layer: str, record: dict[str, Any]) -> html.A:
    """One unit's card: picture, title, score and flag; a click opens the unit page.

    The picture comes after the cards, all of a page's in one request
    (:func:`card_thumbnails`), so the cards show at once.
    """
    unit = int(record["unit"])
    flagged = bool(record.get(units.flag)) if units.flag else None
    lines: list[Any] = [html.Img(id=thumb_id(view.run.name, layer, unit), alt=f"unit {unit}",
                                 className="thumb")]
    title = record.get(units.title) if units.title else None
    lines.append(html.Div(html.B(f"unit {unit}" + (f" · {title}" if title else ""))))
    if units.score:
        label = units.labels.get(units.score, units.score)
        lines.append(
            html.Div(f"{label} {format_value(record.get(units.score))}", className="score")
        )
    if flagged:
        lines.insert(0, html.Span(units.flag_label or "flagged", className="badge"))
    elif flagged is False:
        lines.append(
            html.Div(f"not a {units.flag_label}" if units.flag_label else "", className="caption")
        )
    muted = " muted" if flagged is False else ""
    return dcc.Link(
        html.Div(lines, className="card" + muted, id=f"unit-card-{unit}"),
        href=unit_href(view.run.name, layer, unit),
    )


def thumb_id(run: str, layer: str, unit: int) -> dict[str, Any]:
    """The id of a card's picture (its run, layer and unit: what fills it)."""
    return {"type": "card-thumb", "run": run, "layer": layer, "unit": unit}


def card_thumbnails(ids: Any) -> list[Any]:
    """The pictures of every card on the page, as ``data:`` URIs in the cards' order (left
    empty where no analysis has a picture of the unit)."""
    ids = [i for i in ids if isinstance(i, dict)] if isinstance(ids, list) else []
    if not ids:
        return []
    run, layer = str(ids[0].get("run")), str(ids[0].get("layer"))
    try:
        view, units = _grid(run, layer)
        wanted = [int(i["unit"]) for i in ids]
    except (ProbeError, KeyError, TypeError, ValueError):
        return [dash.no_update] * len(ids)
    pictures = card_pictures(view, units, layer, wanted)
    # a unit page is likely next: decode its tables in the background, from the page's
    # last request on (started with the cards, the decoding took the cores their grid
    # and pictures were computed on)
    view.source.prefetch(view.run)
    return [data_uri(pictures[u]) if u in pictures else dash.no_update for u in wanted]


def table_frame(view: DashRunView, units: UnitGrid, layer: str, flagged: bool) -> pd.DataFrame:
    """Every column of the layer's units (flagged ones only when asked), with each unit's link
    and whether it is greyed (cached per run, layer and toggle)."""
    def compute() -> pd.DataFrame:
        frame = selected_units(units, flagged, None).copy()
        prefix = f"/unit/{quote(view.run.name)}/{quote(layer)}/"
        frame["href"] = [prefix + str(u) for u in frame["unit"].tolist()]
        frame["_unit"] = frame["unit"]
        if units.flag:
            frame["_not_flagged"] = ~frame[units.flag].astype(bool)
        scalars = scalar_columns(frame)
        present = frame[scalars].notna().any()
        return frame[[c for c in scalars if c == "unit" or present[c]]]
    return view.source.memo(view.run, ("units-table", layer, flagged), compute)


def _flag_only(flagged: Any) -> bool:
    return isinstance(flagged, list) and "flagged" in flagged


def units_table(run: str | None, layer: str | None, flagged: Any) -> Any:
    """The grid of every column: rows are fetched block by block (see :func:`units_rows`)."""
    if not run or not layer:
        return []
    try:
        view, units = _grid(run, layer)
    except ProbeError:
        return []
    if units.frame.empty:
        return []
    return view.source.memo(view.run, ("units-grid-shell", layer, _flag_only(flagged)),
                            lambda: _units_table(view, units, run, layer, flagged))


def _units_table(view: DashRunView, units: UnitGrid, run: str, layer: str, flagged: Any
                 ) -> list[Any]:
    frame = table_frame(view, units, layer, _flag_only(flagged))
    shown = frame.drop(columns=[c for c in ("href", "_unit", "_not_flagged") if c in frame])
    key = slug(run, layer, "flagged" if _flag_only(flagged) else "all")
    caption = f"{len(frame)} units; sort and filter act on all of them."
    if units.flag_label:
        caption += f" Greyed rows: not a {units.flag_label}."
    return [html.Div([html.Span(caption, className="caption"),
                      html.Button("CSV", id="units-csv", className="download-csv",
                                  title="download every row as CSV"),
                      dcc.Download(id="units-download")], className="grid-bar"),
            server_grid({"type": "units-rows", "key": key},
                        column_defs(shown, units.labels, units.formats, links=("unit",)),
                        len(frame), muted=bool(units.flag), file=f"units-{layer}")]


def units_rows(request: Any, run: str | None, layer: str | None, flagged: Any) -> dict:
    """One block of the grid's rows, sorted and filtered on the server."""
    try:
        view, units = _grid(run, layer)
    except ProbeError:
        return {"rowData": [], "rowCount": 0}
    frame = table_frame(view, units, str(layer), _flag_only(flagged))
    return rows_response(frame, request, units.formats, links={"unit": "href"},
                         muted="_not_flagged" if units.flag else None,
                         values={"unit": "_unit"})


def units_csv(clicks: Any, run: str | None, layer: str | None, flagged: Any) -> Any:
    """Every row of the grid as a CSV download."""
    if not clicks:
        raise PreventUpdate
    try:
        view, units = _grid(run, layer)
    except ProbeError:
        raise PreventUpdate from None
    frame = table_frame(view, units, str(layer), _flag_only(flagged))
    frame = frame.drop(columns=[c for c in ("href", "_unit", "_not_flagged") if c in frame])
    return dcc.send_data_frame(frame.to_csv, f"{run}-{layer}-units.csv", index=False)


def search_results(run: str | None, text: Any) -> Any:
    """Units in every layer whose concept matches the search text."""
    if not run or not isinstance(text, str) or not text.strip():
        return []
    text = text[:MAX_SEARCH]
    source = get_source()
    try:
        view = DashRunView(source, source.run(run))
    except ProbeError as exc:
        return notice(str(exc))
    hits = search_units(view, text)
    if hits.empty:
        return html.P(
            f"No unit of run {run} is labelled with a concept matching {text!r}.",
            id="units-search-count",
        )
    table = Table(
        hits,
        name="units-search",
        links={"unit": "href"},
        labels={"flagged": "flagged", "score": "score"},
    )
    return html.Div(
        [
            html.P(f"{len(hits)} units match {text!r} across layers:", id="units-search-count"),
            grid(table, "units-search"),
        ]
    )


def units_href(run: str, layer: str) -> str:
    """The units page of one layer."""
    return f"/units?run={quote(run)}&layer={quote(layer)}"


def register(app: Dash) -> None:
    """Add this page and its callbacks to ``app`` (once per app)."""
    dash.register_page(__name__, path="/units", name="Units", title="probe: units", nav=True,
                       order=2, layout=layout)
    run, layer, flagged = (State("units-run", "value"), State("units-layer", "value"),
                           State("units-flagged", "value"))
    app.callback(Output("units-layer", "options"), Output("units-layer", "value"),
                 Input("units-run", "value"), layer, prevent_initial_call=True)(layer_choices)
    app.callback(Output("units-sort", "options"), Output("units-sort", "value"),
                 Output("units-flagged", "options"), Input("units-run", "value"),
                 Input("units-layer", "value"), State("units-sort", "value"),
                 prevent_initial_call=True)(sort_choices)  # the layout holds the first ones
    app.callback(Output("units-page", "data"), Input("units-prev", "n_clicks"),
                 Input("units-next", "n_clicks"), Input("units-layer", "value"),
                 Input("units-flagged", "value"), Input("units-sort", "value"),
                 State("units-page", "data"), prevent_initial_call=True)(turn_page)
    app.callback(Output("units-cards", "children"), Output("units-count", "children"),
                 Input("units-run", "value"), Input("units-layer", "value"),
                 Input("units-flagged", "value"), Input("units-sort", "value"),
                 Input("units-page", "data"), prevent_initial_call=True)(units_content)
    thumbs = {"type": "card-thumb", "run": ALL, "layer": ALL, "unit": ALL}
    app.callback(Output(thumbs, "src"), Input(thumbs, "id"))(card_thumbnails)
    app.callback(Output("units-table", "children"), Input("units-run", "value"),
                 Input("units-layer", "value"), Input("units-flagged", "value"),
                 prevent_initial_call=True)(units_table)
    app.callback(Output({"type": "units-rows", "key": MATCH}, "getRowsResponse"),
                 Input({"type": "units-rows", "key": MATCH}, "getRowsRequest"),
                 run, layer, flagged)(units_rows)
    app.callback(Output("units-download", "data"), Input("units-csv", "n_clicks"),
                 run, layer, flagged, prevent_initial_call=True)(units_csv)
    app.callback(Output("units-search-results", "children"), Input("units-run", "value"),
                 Input("units-search", "value"))(search_results)
