"""Analyses: every analysis that ran, built-in or third-party, with its views and tables.

The views come from the analysis's ``run_views`` hook; the tables are previews
of what it wrote (sortable, filterable, CSV).
"""

from __future__ import annotations

from typing import Any

import dash
from dash import Dash, Input, Output, State, dcc, html

from probe.dashboards.components import choice_dropdown, notice, run_dropdown, table
from probe.dashboards.data import RunSource, get_source
from probe.dashboards.render import plain_figures, render_all
from probe.dashboards.run_view import DashRunView
from probe.errors import ProbeError
from probe.views.contributions import call_hook
from probe.views.format import format_value

#: Rows of each table sent to the browser (the page says when it cuts).
PREVIEW_ROWS = 500


def analysis_view(source: RunSource, run_name: str, analysis: str,
                  problems: list[str] | None = None) -> list[Any]:
    """Status, options, views and table previews of one analysis of one run.

    ``problems`` collects what went wrong (a page with problems is not kept).
    """
    problems = [] if problems is None else problems
    run = source.run(run_name)
    if analysis not in run.analyses:
        return [notice(f"run {run_name} has no analysis {analysis!r}")]
    entry = run.manifest["analyses"][analysis]
    status = run.analysis_status(analysis)
    options = ", ".join(f"{k}={format_value(v) if not isinstance(v, list | tuple) else v}"
                        for k, v in (entry.get("options") or {}).items()) or "defaults"
    seconds = entry.get("seconds")
    out: list[Any] = [html.P(f"status: {status} · {format_value(seconds)} s · options: "
                             f"{options}" if seconds is not None else
                             f"status: {status} · options: {options}", id="analysis-status")]
    if status != "complete":
        return [*out, notice(f"{analysis} did not complete: {entry.get('error')}")]
    view = DashRunView(source, run)
    item = call_hook(analysis, "run_views", view)
    if item.problem:
        problems.append(item.problem)
    out += render_all(item.blocks, f"analysis-{analysis}")
    for name in view.table_names(analysis):
        try:
            frame, total = source.head(run, analysis, name, PREVIEW_ROWS)
        except ProbeError as exc:  # a damaged table: say so, show the others
            problems.append(str(exc))
            out += [html.H4(f"{analysis}/{name}"), notice(str(exc), id=f"analysis-problem-{name}")]
            continue
        cut = f" (first {PREVIEW_ROWS} of {total} rows)" if total > PREVIEW_ROWS else ""
        out += [html.H4(f"table {analysis}/{name}{cut}"),
                table(frame, f"analysis-table-{name}")]
    return out


def layout(run: str | None = None, analysis: str | None = None, **_: Any) -> html.Div:
    """The analyses page; ``?run=RUN&analysis=NAME`` preselects."""
    source = get_source()
    run = source.default_run(run)
    return html.Div([
        html.H2("Analyses"),
        html.Div([run_dropdown("analysis-run", source.run_names(), run),
                  choice_dropdown("analysis-name", "analysis", analysis_choices(run, analysis))],
                 className="controls"),
        dcc.Loading(html.Div(id="analysis-content"), type="dot"),
    ])


def analysis_choices(run: str | None, current: str | None) -> tuple[list[str], str | None]:
    """The analyses recorded in the chosen run."""
    if not run:
        return [], None
    try:
        names = get_source().run(run).analyses
    except ProbeError:
        return [], None
    return names, current if current in names else (names[0] if names else None)


def analysis_content(run: str | None, analysis: str | None) -> Any:
    """Views and tables of the chosen analysis."""
    if not run or not analysis:
        return notice("Pick a run and an analysis.")
    source = get_source()
    try:
        run_obj = source.run(run)
        problems: list[str] = []
        return source.memo(run_obj, ("analysis-page", str(analysis)),
                           lambda: plain_figures(html.Div(analysis_view(source, run, analysis,
                                                                        problems))),
                           keep=lambda _: not problems)
    except ProbeError as exc:
        return notice(str(exc))


def register(app: Dash) -> None:
    """Add this page and its callbacks to ``app``."""
    dash.register_page(__name__, path="/analysis", name="Analyses", title="probe: analyses",
                       nav=True, order=4, layout=layout)
    app.callback(Output("analysis-name", "options"), Output("analysis-name", "value"),
                 Input("analysis-run", "value"), State("analysis-name", "value"),
                 prevent_initial_call=True)(analysis_choices)
    app.callback(Output("analysis-content", "children"), Input("analysis-run", "value"),
                 Input("analysis-name", "value"))(analysis_content)
