"""Runs: every run under RUNS_DIR with its architecture, checkpoint, data, analyses, status."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import dash
import pandas as pd
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
    """The runs page: every readable run, then every run folder that cannot be read and why."""
    source = get_source()
    scanned = source.scan()
    runs = [run for _, run, _ in scanned if run is not None]
    unreadable = {name: reason for name, run, reason in scanned if run is None}
    if not scanned:
        return html.Div([html.H2("Runs"),
                          notice(f"No runs under {source.root}. Make one with ",
                                 html.Code("probe run --arch lenet5 --dataset digits "
                                           "--analysis unit-stats --out RUNS_DIR/lenet5"),
                                 ".", id="runs-empty")])
    # a run's status as load_run reads it: "running" only while its writer holds the lock
    manifests = {run.name: {**run.manifest, "status": run.status} for run in runs}
    out: list[Any] = [html.H2("Runs"), html.P(f"{len(runs)} run(s) under {source.root}"),
                      make_runs_view(manifests)]
    if runs:
        out.append(graph(make_timings_figure(manifests), "runs-timings"))
    if unreadable:
        out += [html.H3(f"Unreadable runs ({len(unreadable)})"),
                unreadable_view(unreadable)]
    return html.Div(out)


def unreadable_view(unreadable: dict[str, str]) -> Any:
    """The run folders whose manifest cannot be used, each with the reason."""
    frame = pd.DataFrame({"run": list(unreadable), "problem": list(unreadable.values())},
                         columns=["run", "problem"])
    return table(frame, "runs-unreadable", page_size=25)
