"""Analyses: every analysis that ran, built-in or third-party, with its figures and tables.

This page needs nothing from the analysis but its tables and, when its plugin
is installed, its ``figures(tables)`` classmethod, so any analysis appears here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import dash
import pandas as pd
from dash import Input, Output, State, callback, dcc, html

from probe.dashboards.components import graph, notice, run_dropdown, table
from probe.dashboards.data import RunSource, get_source
from probe.errors import ProbeError
from probe.host import get_host

dash.register_page(__name__, path="/analysis", name="Analyses", title="probe: analyses",
                   nav=True, order=4)

#: Rows of each table sent to the browser (the page says when it cuts).
PREVIEW_ROWS = 500


def analysis_figures(name: str, tables: dict[str, Any]) -> tuple[list[Any], str | None]:
    """``(figures, problem)`` from the analysis plugin's ``figures(tables)``."""
    host = get_host()
    if name not in host.analyses:
        return [], f"the plugin of analysis {name!r} is not installed here; showing its tables"
    try:
        return list(host.analyses.get(name).figures(tables)), None
    except Exception as exc:  # a plugin's broken figure must not break the page
        return [], f"{name}.figures failed: {type(exc).__name__}: {exc}"


def analysis_view(source: RunSource, run_name: str, analysis: str) -> list[Any]:
    """Status, figures and table previews of one analysis of one run."""
    run = source.run(run_name)
    if analysis not in run.analyses:
        return [notice(f"run {run_name} has no analysis {analysis!r}")]
    entry = run.manifest["analyses"][analysis]
    status = run.analysis_status(analysis)
    out: list[Any] = [html.P(f"status: {status}; options: {entry.get('options') or {}}",
                             id="analysis-status")]
    if status != "complete":
        return [*out, notice(f"{analysis} did not complete: {entry.get('error')}")]
    names = [t for _, t in run.tables(analysis)]
    figures, problem = analysis_figures(analysis, LazyTables(source, run, analysis, names))
    if problem:
        out.append(notice(problem))
    out += [graph(fig, f"analysis-figure-{i}") for i, fig in enumerate(figures)]
    for name in names:
        try:
            frame, total = source.head(run, analysis, name, PREVIEW_ROWS)
        except ProbeError as exc:  # a damaged table: say so, show the others
            out += [html.H4(f"{analysis}/{name}"), notice(str(exc), id=f"analysis-problem-{name}")]
            continue
        cut = f" (first {PREVIEW_ROWS} of {total} rows)" if total > PREVIEW_ROWS else ""
        out += [html.H4(f"{analysis}/{name}{cut}"),
                table(frame, f"analysis-table-{name}", page_size=15)]
    return out


class LazyTables(Mapping[str, pd.DataFrame]):
    """An analysis's tables as a mapping that reads a table only when ``figures`` asks."""

    def __init__(self, source: RunSource, run: Any, analysis: str, names: list[str]) -> None:
        self._source, self._run, self._analysis, self._names = source, run, analysis, names

    def __getitem__(self, name: str) -> pd.DataFrame:
        if name not in self._names:
            raise KeyError(name)
        return self._source.table(self._run, self._analysis, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def layout(run: str | None = None, analysis: str | None = None, **_: Any) -> html.Div:
    """The analyses page; ``?run=RUN&analysis=NAME`` preselects."""
    source = get_source()
    return html.Div([
        html.H2("Analyses"),
        html.Div([run_dropdown("analysis-run", source.run_names(), source.default_run(run)),
                  html.Div([html.Label("analysis"),
                            dcc.Dropdown(id="analysis-name", value=analysis,
                                         clearable=False)])],
                 className="controls"),
        html.Div(id="analysis-content"),
    ])


@callback(Output("analysis-name", "options"), Output("analysis-name", "value"),
          Input("analysis-run", "value"), State("analysis-name", "value"))
def analysis_choices(run: str | None, current: str | None) -> tuple[list[str], str | None]:
    """The analyses recorded in the chosen run."""
    if not run:
        return [], None
    try:
        names = get_source().run(run).analyses
    except ProbeError:
        return [], None
    return names, current if current in names else (names[0] if names else None)


@callback(Output("analysis-content", "children"), Input("analysis-run", "value"),
          Input("analysis-name", "value"))
def analysis_content(run: str | None, analysis: str | None) -> Any:
    """Figures and tables of the chosen analysis."""
    if not run or not analysis:
        return notice("Pick a run and an analysis.")
    try:
        return analysis_view(get_source(), run, analysis)
    except ProbeError as exc:
        return notice(str(exc))
