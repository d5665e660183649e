"""Layers: the per-layer summary of every analysis, their run-level views, one layer in detail.

The page's own answer is the summary table; each analysis's views come in a
slot of their own (:mod:`probe.dashboards.slots`). Everything comes from the
analyses' hooks (``layer_summary``, ``run_views``, ``layer_views``) and the
layer panels plugins register; this page names no analysis.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import dash
from dash import Dash, Input, Output, State, dcc, html

from probe.dashboards.components import layer_choices, layer_dropdown, notice, run_dropdown
from probe.dashboards.data import RunSource, get_source
from probe.dashboards.plugin_pages import panels
from probe.dashboards.render import grid, note, plain_figures, slug, view_section
from probe.dashboards.run_view import DashRunView
from probe.dashboards.slots import renders, run_section, slot
from probe.errors import ProbeError
from probe.views import Table
from probe.views.contributions import call_hook
from probe.views.summary import layer_summary


def layout(run: str | None = None, layer: str | None = None, **_: Any) -> html.Div:
    """The layers page; ``?run=RUN&layer=LAYER`` preselects.

    The page comes with its summary and the chosen layer's frame (their sections then
    fill their slots), so the browser needs no further round trip before asking for them.
    """
    source = get_source()
    run = source.default_run(run)
    layer = layer_choices(run, layer)[1]
    return html.Div(
        [
            html.H2("Layers"),
            html.Div(
                [
                    run_dropdown("layers-run", source.run_names(), run),
                    layer_dropdown("layers-layer", run, layer, "layer in detail"),
                ],
                className="controls",
            ),
            dcc.Loading(html.Div(layers_content(run), id="layers-content"), type="dot"),
            dcc.Loading(html.Div(layer_detail(run, layer), id="layers-detail"), type="dot"),
        ]
    )


def layers_content(run: str | None) -> Any:
    """The summary table, then a slot for each analysis's run-level views."""
    if not run:
        return notice("No runs found.")
    source = get_source()
    try:
        run_obj = source.run(run)
    except ProbeError as exc:
        return notice(str(exc), id="layers-error")
    problems: list[str] = []
    return source.memo(
        run_obj,
        ("layers-page",),
        lambda: plain_figures(html.Div(layers_frame(source, run_obj, problems))),
        keep=lambda _: not problems,
    )


def layer_detail(run: str | None, layer: str | None) -> Any:
    """One layer: a slot for each analysis's views of it, then plugin layer panels."""
    if not run or not layer:
        return []
    source = get_source()
    try:
        run_obj = source.run(run)
        layer = source.check_layer(run_obj, layer)
    except ProbeError as exc:
        return notice(str(exc), id="layers-detail-error")
    view = DashRunView(source, run_obj)
    return html.Div([
        html.H3(f"Layer {layer}", id="layer-detail-title"),
        *[slot("layer", run=run_obj.name, layer=layer, analysis=name)
          for name in view.completed()],
        *panels("layer", run_obj, layer=layer),
    ])


def summary_with_links(source: RunSource, run_obj: Any) -> tuple[Table, list[str]]:
    """The joined layer summary with a link to each layer's units (cached per run)."""

    def compute() -> tuple[Table, list[str]]:
        view = DashRunView(source, run_obj)
        table, problems = layer_summary(view)
        frame = table.frame.copy()
        frame.insert(1, "units page", "units")
        frame["units_href"] = [
            f"/units?run={quote(run_obj.name)}&layer={quote(str(x))}" for x in frame["layer"]
        ]
        return Table(
            frame,
            caption=table.caption,
            name="layers-summary",
            labels=table.labels,
            formats=table.formats,
            links={"units page": "units_href"},
        ), problems

    return source.memo(run_obj, ("layer-summary",), compute)


def layers_frame(source: RunSource, run_obj: Any, problems: list[str] | None = None) -> list[Any]:
    """The summary per layer, then a slot per completed analysis for its run-level views."""
    problems = [] if problems is None else problems
    view = DashRunView(source, run_obj)
    table, summary_problems = summary_with_links(source, run_obj)
    problems.extend(summary_problems)
    return [
        html.H3("Summary per layer"),
        grid(table, "layers-summary"),
        *[note(p, "warning") for p in summary_problems],
        *[slot("layers", run=run_obj.name, analysis=name) for name in view.completed()],
    ]


@renders("layers")
def run_views_section(run: str, analysis: str) -> Any:
    """One analysis's run-level views (``run_views``), in a section headed with its name."""

    def build(view: DashRunView) -> tuple[Any, str | None]:
        item = call_hook(analysis, "run_views", view)
        if not item.blocks:
            return None, item.problem
        ident = slug("layers", analysis)
        return view_section(analysis, item.blocks, ident, analysis), item.problem

    return run_section(run, ("layers-section", analysis), build)


@renders("layer")
def layer_views_section(run: str, layer: str, analysis: str) -> Any:
    """One analysis's views of one layer (``layer_views``), headed ``analysis · layer``."""

    def build(view: DashRunView) -> tuple[Any, str | None]:
        item = call_hook(analysis, "layer_views", view, layer)
        if not item.blocks:
            return None, item.problem
        ident = slug("layer", analysis, layer)
        return (view_section(f"{analysis} · {layer}", item.blocks, ident, analysis, layer,
                             level=4), item.problem)

    return run_section(run, ("layer-section", layer, analysis), build)


def register(app: Dash) -> None:
    """Add this page and its callbacks to ``app`` (once per app)."""
    dash.register_page(
        __name__,
        path="/layers",
        name="Layers",
        title="probe: layers",
        nav=True,
        order=1,
        layout=layout,
    )
    app.callback(
        Output("layers-layer", "options"),
        Output("layers-layer", "value"),
        Input("layers-run", "value"),
        State("layers-layer", "value"),
        prevent_initial_call=True,  # the layout holds the first run's layers
    )(layer_choices)
    app.callback(Output("layers-content", "children"), Input("layers-run", "value"),
                 prevent_initial_call=True)(layers_content)  # the layout holds the first
    app.callback(
        Output("layers-detail", "children"),
        Input("layers-run", "value"),
        Input("layers-layer", "value"),
        prevent_initial_call=True,
    )(layer_detail)
