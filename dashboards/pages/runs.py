"""Runs: every run under RUNS_DIR with its architecture, checkpoint, data, analyses, status."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import dash
from dash import html

from probe.dashboards.components import graph, notice, table
from probe.dashboards.data import get_source
from probe.dashboards.figures import make_runs_table, make_timings_figure

dash.register_page(__name__, path="/", name="Runs", title="probe: runs", nav=True, order=0)


def make_runs_view(manifests: dict[str, dict[str, Any]]) -> Any:
    """The runs table with links to each run's layers and analyses."""
    frame = make_runs_table(manifests)
    frame.insert(1, "open", [f"[layers](/layers?run={quote(r)}) · "
                             f"[units](/units?run={quote(r)}) · "
                             f"[analyses](/analysis?run={quote(r)})" for r in frame["run"]])
    return table(frame, "runs-table", page_size=25, markdown=("open",))


def layout(**_: Any) -> html.Div:
    """The runs page."""
    source = get_source()
    runs = source.runs()
    if not runs:
        return html.Div([html.H2("Runs"),
                          notice(f"No runs under {source.root}. Make one with ",
                                 html.Code("probe run --arch lenet5 --dataset digits "
                                           "--analysis unit-stats --out RUNS_DIR/lenet5"),
                                 ".", id="runs-empty")])
    manifests = {run.name: run.manifest for run in runs}
    return html.Div([
        html.H2("Runs"),
        html.P(f"{len(runs)} run(s) under {source.root}"),
        make_runs_view(manifests),
        graph(make_timings_figure(manifests), "runs-timings"),
    ])
