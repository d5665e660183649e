"""Views the dashboard and the report build from every analysis together.

The per-layer summary (each analysis's ``layer_summary`` joined on the layer),
the runs table, and two runs' summaries side by side by relative depth with a
difference column. Pure functions of :class:`RunView` objects.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from probe.views.blocks import Note, Table
from probe.views.contributions import contributions
from probe.views.format import format_value, layer_depth
from probe.views.run_view import RunView


def layer_summary(view: RunView) -> tuple[Table, list[str]]:
    """Every analysis's per-layer summary joined on ``layer``, in network order.

    Returns the table and the problems met (an analysis whose summary failed).
    Layers an analysis did not cover stay blank in its columns.
    """
    frame = pd.DataFrame({"layer": view.layers})
    labels: dict[str, str] = {"layer": "layer"}
    formats: dict[str, str] = {}
    problems: list[str] = []
    for item in contributions(view, "layer_summary"):
        if item.problem:
            problems.append(item.problem)
            continue
        table: Table | None = item.value
        if table is None or table.frame.empty or "layer" not in table.frame:
            continue
        part = table.frame.assign(layer=table.frame["layer"].astype(str))
        clash = {c: f"{item.analysis}: {c}" for c in part.columns
                 if c != "layer" and c in frame.columns}
        part = part.rename(columns=clash)
        for column in part.columns:
            original = next((k for k, v in clash.items() if v == column), column)
            if column != "layer":
                labels[column] = table.labels.get(original, original.replace("_", " "))
                if original in table.formats:
                    formats[column] = table.formats[original]
        frame = frame.merge(part, on="layer", how="outer" if not view.layers else "left")
    return Table(frame, caption="One row per layer; blank where an analysis did not look at "
                                "the layer.", name="layer-summary", labels=labels,
                 formats=formats), problems


def checkpoint_metrics(view: RunView) -> dict[str, Any]:
    """Metrics from the checkpoint's JSON sidecar (written by ``probe train``), if any."""
    checkpoint = (view.manifest.get("arch") or {}).get("checkpoint")
    if not checkpoint:
        return {}
    sidecar = Path(checkpoint).with_suffix(".json")
    try:
        return dict(json.loads(sidecar.read_text()).get("metrics", {}))
    except (OSError, ValueError, AttributeError):
        return {}


def accuracy(view: RunView) -> float | None:
    """The model's test accuracy recorded with its checkpoint, if any."""
    metrics = checkpoint_metrics(view)
    for key in ("test_accuracy", "accuracy", "val_accuracy"):
        if isinstance(metrics.get(key), int | float):
            return float(metrics[key])
    return None


def runs_table(views: Sequence[RunView]) -> Table:
    """One row per run: model, weights, accuracy, data, analyses, status, time."""
    rows = []
    for view in views:
        m = view.manifest
        arch = m.get("arch") or {}
        data = m.get("dataset") or {}
        checkpoint = arch.get("checkpoint")
        timings = m.get("timings") or {}
        rows.append({
            "run": view.label, "href": None,
            "architecture": str(arch.get("name") or arch.get("class") or "?"),
            "weights": Path(checkpoint).name if checkpoint else "untrained (initial weights)",
            "accuracy": accuracy(view),
            "data": f"{data.get('name')} ({data.get('size')} images)" if data else "none",
            "layers": len(m.get("layers") or []),
            "analyses": ", ".join(a if view.run.analysis_status(a) == "complete" else
                                  f"{a} [{view.run.analysis_status(a)}]"
                                  for a in view.run.analyses),
            "status": view.run.status,
            "seconds": float(timings["total"]) if "total" in timings else None,
            "finished": str(m.get("finished") or "")[:19].replace("T", " "),
        })
    frame = pd.DataFrame(rows)
    return Table(frame, caption="Runs", name="runs", hidden=("href",),
                 formats={"accuracy": "percent", "seconds": "fixed2"},
                 labels={"seconds": "time (s)"})


def options_differ(runs: Sequence[RunView], analysis: str) -> Note | None:
    """A warning naming the options of ``analysis`` that differ between ``runs`` (or ``None``).

    Numbers measured with different options (thresholds, sample sizes, layers) are
    not comparable as they stand; the comparison says so next to them.
    """
    options = [(run.label, run.options(analysis)) for run in runs]
    names = sorted({k for _, o in options for k in o})
    differ = [k for k in names
              if len({json.dumps(o.get(k), sort_keys=True, default=str) for _, o in options}) > 1]
    if not differ:
        return None

    def shown(value: Any) -> str:
        if isinstance(value, list | tuple):
            return ", ".join(map(str, value)) or "default"
        return "default" if value is None else format_value(value)

    parts = [f"{k} ({'; '.join(f'{label}: {shown(o.get(k))}' for label, o in options)})"
             for k in differ]
    return Note(f"The runs were analysed by {analysis} with different options: "
                f"{', '.join(parts)}. Its numbers are not measured the same way in these runs; "
                f"compare them with care.", level="warning")


def side_by_side(a: RunView, b: RunView) -> tuple[Table, list[str]]:
    """Two runs' layer summaries matched layer by layer, with ``B − A`` per measure, and
    the problems met reading them (each run's summary problems, prefixed with its label:
    a damaged table must be said, not silently left out of the comparison).

    A layer of A that B also has is matched to it by name; any other layer of A
    to the layer of B at the nearest relative depth (first 0, last 1). So a VGG
    and its deformable variant (which adds ``.offset`` layers) line up conv by
    conv, and a LeNet and an AlexNet by depth.
    """
    sum_a, problems_a = layer_summary(a)
    sum_b, problems_b = layer_summary(b)
    problems = [f"{a.label}: {p}" for p in problems_a] + [f"{b.label}: {p}" for p in problems_b]
    fa, fb = sum_a.frame, sum_b.frame
    depth_a, depth_b = layer_depth(list(fa["layer"])), layer_depth(list(fb["layer"]))
    partner = {la: la if la in depth_b else min(depth_b, key=lambda lb, d=da: abs(depth_b[lb] - d))
               for la, da in depth_a.items()} if depth_b else {}
    rows = []
    measures = [c for c in fa.columns if c != "layer" and c in fb.columns
                and pd.api.types.is_numeric_dtype(fa[c]) and pd.api.types.is_numeric_dtype(fb[c])]
    index_b = fb.set_index("layer")
    labels = {"depth": "relative depth", "layer_a": f"layer ({a.label})",
              "layer_b": f"layer ({b.label})"}
    formats = {"depth": "fixed2"}
    for record in fa.to_dict("records"):
        la = record["layer"]
        lb = partner.get(la)
        row: dict[str, Any] = {"depth": depth_a[la], "layer_a": la, "layer_b": lb}
        for column in measures:
            va = record.get(column)
            vb = index_b.loc[lb, column] if lb in index_b.index else None
            row[f"{column} [A]"] = va
            row[f"{column} [B]"] = vb
            try:
                row[f"{column} [B−A]"] = float(vb) - float(va)
            except (TypeError, ValueError):
                row[f"{column} [B−A]"] = None
            label = sum_a.labels.get(column, column)
            labels[f"{column} [A]"] = f"{label} ({a.label})"
            labels[f"{column} [B]"] = f"{label} ({b.label})"
            labels[f"{column} [B−A]"] = f"{label}: difference"
            if column in sum_a.formats:
                for suffix in ("A", "B", "B−A"):
                    formats[f"{column} [{suffix}]"] = sum_a.formats[column]
        rows.append(row)
    return Table(pd.DataFrame(rows), caption=f"Layer by layer, {b.label} against {a.label} "
                 "(by name where both have the layer, else by relative depth).",
                 name="compare-layers",
                 labels=labels, formats=formats), problems
