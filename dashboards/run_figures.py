"""The runs page's figure: seconds per analysis in each run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from probe.views.plots import empty_figure, layer_color


def make_timings_figure(manifests: Mapping[str, Mapping[str, Any]],
                        title: str = "seconds per analysis") -> Any:
    """Stacked bars: for each run (``{run name: manifest}``), the seconds of each analysis."""
    import plotly.graph_objects as go

    seconds = {name: (m.get("timings") or {}).get("analyses") or {}
               for name, m in manifests.items()}
    analyses = list(dict.fromkeys(a for per_run in seconds.values() for a in per_run))
    if not analyses:
        return empty_figure("no timings recorded", title)
    fig = go.Figure()
    for index, analysis in enumerate(analyses):
        fig.add_trace(go.Bar(x=list(seconds), y=[seconds[r].get(analysis, 0.0) for r in seconds],
                             name=analysis, marker_color=layer_color(index)))
    fig.update_layout(barmode="stack", title=title, yaxis_title="seconds", height=300)
    return fig
