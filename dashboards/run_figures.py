"""The runs page's figure: seconds per analysis in each run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from probe.views.plots import empty_figure, figure, layer_color


def make_timings_figure(manifests: Mapping[str, Mapping[str, Any]],
                        title: str = "seconds per analysis") -> Any:
    """Stacked bars: for each run (``{run name: manifest}``), the seconds of each analysis."""
    seconds = {name: (m.get("timings") or {}).get("analyses") or {}
               for name, m in manifests.items()}
    analyses = list(dict.fromkeys(a for per_run in seconds.values() for a in per_run))
    if not analyses:
        return empty_figure("no timings recorded", title)
    traces = [{"type": "bar", "x": list(seconds),
               "y": [seconds[r].get(analysis, 0.0) for r in seconds], "name": analysis,
               "marker": {"color": layer_color(index)}} for index, analysis in enumerate(analyses)]
    return figure(traces, {"barmode": "stack", "title": {"text": title},
                           "yaxis": {"title": {"text": "seconds"}}, "height": 300})
