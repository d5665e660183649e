"""Layers: per layer the hierarchy-of-parts chart, unique concepts, equivariance, filters."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import dash
from dash import Input, Output, State, callback, dcc, html
from dash.exceptions import PreventUpdate

from probe.dashboards.components import graph, missing, notice, run_dropdown, table
from probe.dashboards.data import RunSource, get_source
from probe.dashboards.figures import (
    make_activation_figure,
    make_equivariance_figure,
    make_filter_figure,
    make_hierarchy_figure,
)
from probe.dashboards.layers_data import layer_summary, run_tables
from probe.dashboards.plugin_pages import panels
from probe.errors import ProbeError

dash.register_page(__name__, path="/layers", name="Layers", title="probe: layers", nav=True,
                   order=1)


def layout(run: str | None = None, **_: Any) -> html.Div:
    """The layers page; ``?run=RUN`` preselects."""
    source = get_source()
    return html.Div([
        html.H2("Layers"),
        html.Div([run_dropdown("layers-run", source.run_names(), source.default_run(run))],
                 className="controls"),
        html.Div(id="layers-content"),
        dcc.Location(id="layers-goto", refresh=True),
    ])


def units_href(run: str, click: dict[str, Any] | None) -> str | None:
    """Where a click on a hierarchy bar leads: that layer's units of that category."""
    if not isinstance(run, str) or not run or not isinstance(click, dict):
        return None
    points = click.get("points")
    if not isinstance(points, list) or not points or not isinstance(points[0], dict):
        return None
    point = points[0]
    layer = str(point.get("x", ""))
    category = str(point.get("customdata", "") or "")
    if not layer:
        return None
    href = f"/units?run={quote(run)}&layer={quote(layer)}"
    return href + (f"&category={quote(category)}" if category else "")


@callback(Output("layers-goto", "href"), Input("layers-hierarchy", "clickData"),
          State("layers-run", "value"), prevent_initial_call=True)
def open_units(click: dict[str, Any] | None, run: str | None) -> str:
    """Clicking a bar of the hierarchy chart opens those units."""
    href = units_href(run if isinstance(run, str) else "", click)
    if href is None:
        raise PreventUpdate
    return href


@callback(Output("layers-content", "children"), Input("layers-run", "value"))
def layers_content(run: str | None) -> Any:
    """Everything about the layers of one run."""
    if not run:
        return notice("No runs found.")
    source = get_source()
    try:
        run_obj = source.run(run)
    except ProbeError as exc:
        return notice(str(exc))
    problems: dict[str, str] = {}
    try:
        content = source.memo(run_obj, ("layers-page",),
                              lambda: layers_view(source, run_obj, problems),
                              keep=lambda _: not problems)
    except ProbeError as exc:
        return notice(str(exc), id="layers-error")
    # a unit page is likely next: decode its exemplar tables in the background
    source.prefetch(run_obj, [("unit-stats", "top_images"), ("dissection", "exemplars")])
    return content


def layers_view(source: RunSource, run_obj: Any,
                problems: dict[str, str] | None = None) -> list[Any]:
    """Summary table, hierarchy chart, equivariance, filters, activations and plugin panels.

    A table that cannot be read is named in its section's place (and in ``problems``);
    the other sections are drawn.
    """
    run = run_obj.name
    problems = {} if problems is None else problems
    tables = run_tables(source, run_obj, problems)
    layers = source.layers(run_obj)
    out: list[Any] = [html.H3("Summary per layer")]
    if problems:  # the summary needs every table
        out += [notice(message, id=f"layers-problem-{key}") for key, message in problems.items()]
    else:
        summary = layer_summary(source, run_obj)
        summary.insert(1, "open", [f"[units](/units?run={quote(run)}&layer={quote(layer)})"
                                   if layer in layers else "" for layer in summary["layer"]])
        out.append(table(summary, "layers-summary", page_size=50, markdown=("open",)))
    out.append(html.H3("Hierarchy of parts"))
    if "dissection" in problems:
        out.append(notice(problems["dissection"]))
    elif tables["dissection"] is None:
        out.append(missing("dissection", run, "no concept detectors per category"))
    else:
        out.append(graph(make_hierarchy_figure(tables["dissection"], layers), "layers-hierarchy"))
    row = []
    if "equivariance" in problems:
        row.append(html.Div([html.H3("Equivariance"), notice(problems["equivariance"])],
                            className="col"))
    elif tables["equivariance"] is None:
        row.append(html.Div([html.H3("Equivariance"), missing("equivariance", run)],
                            className="col"))
    else:
        row.append(html.Div([graph(make_equivariance_figure(tables["equivariance"], layers),
                                   "layers-equivariance")], className="col"))
    if "filters" in problems:
        row.append(html.Div([html.H3("Filters"), notice(problems["filters"])], className="col"))
    elif tables["filters"] is None:
        row.append(html.Div([html.H3("Filters"), missing("filters", run)], className="col"))
    else:
        row.append(html.Div([graph(make_filter_figure(tables["filters"], layers),
                                   "layers-filters")], className="col"))
    out.append(html.Div(row, className="row"))
    if "units" in problems:
        out.append(notice(problems["units"]))
    elif tables["units"] is not None:
        out.append(graph(make_activation_figure(tables["units"], layers), "layers-activation"))
    else:
        out.append(missing("unit-stats", run))
    for layer in layers:
        out.extend(panels("layer", run_obj, layer=layer))
    return out
