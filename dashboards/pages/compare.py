"""Compare: two runs side by side, layer by layer."""

from __future__ import annotations

from typing import Any

import dash
from dash import Input, Output, callback, dcc, html

from probe.dashboards.components import graph, notice, run_dropdown, table
from probe.dashboards.data import RunSource, get_source
from probe.dashboards.figures import make_compare_figure, make_compare_table, make_hierarchy_figure
from probe.dashboards.layers_data import layer_summary, run_tables
from probe.errors import ProbeError

dash.register_page(__name__, path="/compare", name="Compare", title="probe: compare", nav=True,
                   order=3)

#: Per-layer metrics offered for the bar chart, in order of preference.
METRICS = ("detector_share", "unique_concepts", "detectors", "equivariance_error", "filter_r2",
           "mean_max_activation", "mean_fraction_positive", "units")


def layout(a: str | None = None, b: str | None = None, run: str | None = None,
           **_: Any) -> html.Div:
    """The compare page; ``?a=RUN&b=RUN`` preselects (``run`` stands for ``a``)."""
    source = get_source()
    names = source.run_names()
    first = source.default_run(a or run)
    others = [n for n in names if n != first]
    second = b if b in names else (others[0] if others else first)
    return html.Div([
        html.H2("Compare two runs"),
        html.Div([run_dropdown("compare-a", names, first, "run A"),
                  run_dropdown("compare-b", names, second, "run B"),
                  html.Div([html.Label("metric"),
                            dcc.Dropdown(id="compare-metric", options=list(METRICS),
                                         value=METRICS[0], clearable=False)])],
                 className="controls"),
        html.Div(id="compare-content"),
    ])


@callback(Output("compare-content", "children"), Input("compare-a", "value"),
          Input("compare-b", "value"), Input("compare-metric", "value"))
def compare_content(a: str | None, b: str | None, metric: str | None) -> Any:
    """The side-by-side table and charts of runs ``a`` and ``b``."""
    if not a or not b:
        return notice("Pick two runs.")
    metric = metric if isinstance(metric, str) and metric in METRICS else METRICS[0]
    source = get_source()
    try:
        run_a, run_b = source.run(a), source.run(b)
        key = ("compare", str(run_b.path), str(run_b.manifest.get("updated")), metric)
        return source.memo(run_a, key, lambda: compare_view(source, run_a, run_b, metric))
    except ProbeError as exc:  # an unknown run, or a damaged table of one
        return notice(str(exc), id="compare-error")


def compare_view(source: RunSource, run_a: Any, run_b: Any, metric: str | None) -> list[Any]:
    """The side-by-side table, the metric chart and both hierarchy charts."""
    a, b = run_a.name, run_b.name
    sum_a, sum_b = layer_summary(source, run_a), layer_summary(source, run_b)
    name_a, name_b = (a, b) if a != b else (f"{a} (A)", f"{b} (B)")
    chosen = metric or METRICS[0]
    if chosen not in sum_a and chosen not in sum_b:
        chosen = next((m for m in METRICS if m in sum_a or m in sum_b), chosen)
    out: list[Any] = [
        table(make_compare_table(sum_a, sum_b, name_a, name_b), "compare-table", page_size=50),
        graph(make_compare_figure(sum_a, sum_b, name_a, name_b, chosen), "compare-figure"),
    ]
    hierarchy = []
    for run_obj, name, key in ((run_a, name_a, "a"), (run_b, name_b, "b")):
        dissection = run_tables(source, run_obj)["dissection"]
        hierarchy.append(html.Div(graph(make_hierarchy_figure(
            dissection, source.layers(run_obj), title=f"hierarchy of parts: {name}"),
            f"compare-hierarchy-{key}"), className="col"))
    out.append(html.Div(hierarchy, className="row"))
    return out
