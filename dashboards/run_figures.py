"""Figures and tables of the runs page: one row per run, seconds per analysis."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from probe.dashboards.plotting import empty_figure


def make_runs_table(manifests: Mapping[str, Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run from ``{run name: manifest}``.

    Columns: ``run, architecture, checkpoint, dataset, analyses, status,
    layers, seconds, finished``.
    """
    rows = []
    for name, manifest in manifests.items():
        arch = manifest.get("arch") or {}
        dataset = manifest.get("dataset") or {}
        analyses = manifest.get("analyses") or {}
        checkpoint = arch.get("checkpoint")
        sha = arch.get("checkpoint_sha256")
        timings = manifest.get("timings") or {}
        rows.append({
            "run": name,
            "architecture": str(arch.get("name") or arch.get("class") or "?"),
            "checkpoint": (f"{str(checkpoint).rsplit('/', 1)[-1]} ({str(sha)[:8]})" if checkpoint
                           and sha else str(checkpoint) if checkpoint else "untrained/none"),
            "dataset": (f"{dataset.get('name')} ({dataset.get('size')} images)" if dataset
                        else "none"),
            "analyses": ", ".join(f"{a}" if e.get("status") == "complete"
                                  else f"{a} [{e.get('status')}]"
                                  for a, e in analyses.items()),
            "status": str(manifest.get("status", "unknown")),
            "layers": len(manifest.get("layers") or []),
            "seconds": round(float(timings["total"]), 2) if "total" in timings else None,
            "finished": str(manifest.get("finished") or ""),
        })
    columns = ["run", "architecture", "checkpoint", "dataset", "analyses", "status", "layers",
               "seconds", "finished"]
    return pd.DataFrame(rows, columns=columns)


def make_timings_figure(manifests: Mapping[str, Mapping[str, Any]],
                        title: str = "seconds per analysis") -> go.Figure:
    """Stacked bars: for each run (``{run name: manifest}``), the seconds of each analysis."""
    seconds = {name: (m.get("timings") or {}).get("analyses") or {}
               for name, m in manifests.items()}
    analyses = list(dict.fromkeys(a for per_run in seconds.values() for a in per_run))
    if not analyses:
        return empty_figure("no timings recorded", title)
    fig = go.Figure()
    for analysis in analyses:
        fig.add_trace(go.Bar(x=list(seconds), y=[seconds[r].get(analysis, 0.0) for r in seconds],
                             name=analysis))
    fig.update_layout(barmode="stack", title=title, yaxis_title="seconds", height=300)
    return fig
