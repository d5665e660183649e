"""Runs: every run under RUNS_DIR with its model, weights, accuracy, data, analyses, status."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import dash
import pandas as pd
from dash import Dash, html

from probe.dashboards.components import notice, table
from probe.dashboards.data import get_source
from probe.dashboards.render import graph, grid, plain_figures
from probe.dashboards.run_figures import make_timings_figure
from probe.dashboards.run_view import DashRunView
from probe.views import Table
from probe.views.summary import runs_table


def runs_view(views: list[DashRunView]) -> Any:
    """The runs table with links to each run's layers, units and analyses."""
    base = runs_table(views)
    frame = base.frame.copy()
    frame.insert(1, "open", ["layers · units · analyses" for _ in frame["run"]])
    frame["layers_href"] = [f"/layers?run={quote(r)}" for r in frame["run"]]
    frame["layers page"] = "layers"
    frame["units_href"] = [f"/units?run={quote(r)}" for r in frame["run"]]
    frame["units page"] = "units"
    frame["analysis_href"] = [f"/analysis?run={quote(r)}" for r in frame["run"]]
    frame["analyses page"] = "analyses"
    order = ["run", "layers page", "units page", "analyses page",
             *[c for c in base.frame.columns if c != "run"]]
    frame = frame[[*order, "layers_href", "units_href", "analysis_href"]]
    return grid(Table(frame, caption=base.caption, name="runs-table", labels=base.labels,
                      formats=base.formats, hidden=base.hidden,
                      links={"layers page": "layers_href", "units page": "units_href",
                             "analyses page": "analysis_href"}), "runs-table")


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
                                          "--analysis ANALYSIS --out RUNS_DIR/lenet5"),
                                ".", id="runs-empty")])
    # a run's status as load_run reads it: "running" only while its writer holds the lock
    # (so it is part of the key: a killed run turns "interrupted" with its manifest as it was)
    statuses = {run.name: run.status for run in runs}
    key = ("runs-page", *((name, str(run.path), source.stamp(run), statuses[name],
                           _sidecar_stamp(run)) if run is not None else (name, reason)
                          for name, run, reason in scanned))

    def compute() -> html.Div:
        views = [DashRunView(source, run) for run in runs]
        manifests = {run.name: {**run.manifest, "status": statuses[run.name]} for run in runs}
        out: list[Any] = [html.H2("Runs"), html.P(f"{len(runs)} run(s) under {source.root}")]
        if views:
            out += [runs_view(views), graph(make_timings_figure(manifests), "runs-timings",
                                            "Seconds each analysis took in each run.",
                                            "timings")]
        if unreadable:
            out += [html.H3(f"Unreadable runs ({len(unreadable)})"),
                    unreadable_view(unreadable)]
        return plain_figures(html.Div(out))

    return source.keep(key, compute)


def _sidecar_stamp(run: Any) -> int | None:
    """When the checkpoint's metrics sidecar (the accuracy shown) last changed, if it exists."""
    checkpoint = (run.manifest.get("arch") or {}).get("checkpoint")
    if not checkpoint:
        return None
    try:
        return Path(checkpoint).with_suffix(".json").stat().st_mtime_ns
    except (OSError, ValueError):
        return None


def unreadable_view(unreadable: dict[str, str]) -> Any:
    """The run folders whose manifest cannot be used, each with the reason."""
    frame = pd.DataFrame({"run": list(unreadable), "problem": list(unreadable.values())},
                         columns=["run", "problem"])
    return table(frame, "runs-unreadable")


def register(app: Dash) -> None:
    """Add this page to ``app``."""
    dash.register_page(__name__, path="/", name="Runs", title="probe: runs", nav=True, order=0,
                       layout=layout)
