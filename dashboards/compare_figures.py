"""The compare page: two runs' layer summaries side by side."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from probe.dashboards.plotting import empty_figure, layer_order


def make_compare_table(summary_a: pd.DataFrame, summary_b: pd.DataFrame, name_a: str,
                       name_b: str) -> pd.DataFrame:
    """Two layer summaries side by side, matched on layer name (outer join).

    Columns are ``layer`` then ``<metric> [<run>]`` for each run.
    """
    a = summary_a.set_index("layer").add_suffix(f" [{name_a}]")
    b = summary_b.set_index("layer").add_suffix(f" [{name_b}]")
    order = layer_order(summary_a, summary_b)
    merged = a.join(b, how="outer").reindex(order)
    columns = []
    for metric in dict.fromkeys([*summary_a.columns, *summary_b.columns]):
        if metric == "layer":
            continue
        columns += [c for c in (f"{metric} [{name_a}]", f"{metric} [{name_b}]") if c in merged]
    return merged[columns].reset_index().rename(columns={"index": "layer"}).round(4)


def make_compare_figure(summary_a: pd.DataFrame, summary_b: pd.DataFrame, name_a: str,
                        name_b: str, metric: str) -> go.Figure:
    """Grouped bars of one per-layer metric for two runs."""
    title = f"{metric}: {name_a} vs {name_b}"
    if metric not in summary_a and metric not in summary_b:
        return empty_figure(f"neither run has {metric!r}", title)
    fig = go.Figure()
    for summary, name in ((summary_a, name_a), (summary_b, name_b)):
        if metric in summary:
            fig.add_trace(go.Bar(x=summary["layer"], y=summary[metric], name=name))
    fig.update_layout(barmode="group", title=title, xaxis_title="layer", yaxis_title=metric,
                      height=340)
    return fig
