"""Pure figure and table builders shared by the dashboard and ``probe report``.

Every function here takes DataFrames (or plain dicts) and returns a plotly
figure or a DataFrame; none reads files, so the report can call them on the
tables of :func:`probe.load_run` and tests can call them on hand-made frames.

Column conventions (the analyses' declared tables):

* ``unit-stats/units``: ``layer, unit, mean, std, max, fraction_positive``.
* ``dissection/units``: ``layer, unit, label`` (id), ``name, category, iou,
  is_detector`` (best label overall per unit); ``dissection/labels``:
  ``layer, unit, category, rank, name, iou`` (each unit's best labels).
* ``equivariance/errors``: ``layer, transform, magnitude, relative_error``.
* ``filters/units``: ``layer, unit, gabor_r2, gabor_status, separability``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

#: Fixed colours per concept category, so every chart agrees.
CATEGORY_COLORS = {"color": "#8c564b", "texture": "#bcbd22", "material": "#17becf",
                   "part": "#ff7f0e", "object": "#1f77b4", "scene": "#2ca02c"}
_FALLBACK_COLORS = ("#9467bd", "#e377c2", "#7f7f7f", "#d62728", "#aec7e8", "#98df8a")


def category_color(category: str, index: int = 0) -> str:
    """Colour of a concept category (stable for the known ones)."""
    return CATEGORY_COLORS.get(category, _FALLBACK_COLORS[index % len(_FALLBACK_COLORS)])


def ordered_unique(series: pd.Series) -> list[str]:
    """Distinct values as strings, in order of first appearance (vectorised)."""
    return [str(x) for x in pd.unique(series.to_numpy(dtype=object))]


def _by_layer(frame: pd.DataFrame, column: str) -> dict[str, np.ndarray]:
    """``{layer: values of column}`` in one grouping pass."""
    values = frame[column].to_numpy()
    keys = frame["layer"].astype(str).to_numpy(dtype=object)
    codes, names = pd.factorize(keys)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(names) + 1))
    return {str(n): values[order[bounds[i]:bounds[i + 1]]] for i, n in enumerate(names)}


def layer_order(*frames: pd.DataFrame | None, layers: Sequence[str] | None = None) -> list[str]:
    """Layers in network order: ``layers`` first, then any others by first appearance."""
    out = list(layers or [])
    for frame in frames:
        if frame is not None and "layer" in frame:
            out.extend(x for x in ordered_unique(frame["layer"]) if x not in out)
    return out


def _empty_figure(message: str, title: str = "") -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper",
                       yref="paper", font={"size": 14})
    fig.update_layout(title=title, xaxis={"visible": False}, yaxis={"visible": False},
                      height=260)
    return fig


# -- runs ------------------------------------------------------------------------------
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
            "architecture": arch.get("name") or arch.get("class") or "?",
            "checkpoint": (f"{str(checkpoint).rsplit('/', 1)[-1]} ({sha[:8]})" if checkpoint
                           and sha else str(checkpoint) if checkpoint else "untrained/none"),
            "dataset": (f"{dataset.get('name')} ({dataset.get('size')} images)" if dataset
                        else "none"),
            "analyses": ", ".join(f"{a}" if e.get("status") == "complete"
                                  else f"{a} [{e.get('status')}]"
                                  for a, e in analyses.items()),
            "status": str(manifest.get("status", "unknown")),
            "layers": len(manifest.get("layers") or []),
            "seconds": round(float(timings["total"]), 2) if "total" in timings else None,
            "finished": manifest.get("finished") or "",
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
        return _empty_figure("no timings recorded", title)
    fig = go.Figure()
    for analysis in analyses:
        fig.add_trace(go.Bar(x=list(seconds), y=[seconds[r].get(analysis, 0.0) for r in seconds],
                             name=analysis))
    fig.update_layout(barmode="stack", title=title, yaxis_title="seconds", height=300)
    return fig


# -- layers ----------------------------------------------------------------------------
def make_hierarchy_figure(dissection: pd.DataFrame | None, layers: Sequence[str] | None = None,
                          title: str = "share of detector units per category") -> go.Figure:
    """The hierarchy-of-parts chart: per layer, the share of units detecting each category.

    Args:
        dissection: Per-unit table with ``layer, unit, category, is_detector``.
        layers: Network order of the layers (default: order of appearance).

    Returns:
        Stacked bars, one per layer; a bar segment is
        ``#detector units of that category / #units of the layer``.
    """
    if dissection is None or dissection.empty:
        return _empty_figure("no dissection in this run", title)
    share = detector_shares(dissection, layers)
    order = layer_order(dissection, layers=layers)
    fig = go.Figure()
    for i, category in enumerate(c for c in share.columns if c != "layer"):
        fig.add_trace(go.Bar(x=order, y=share.set_index("layer").loc[order, category],
                             name=category, marker_color=category_color(category, i),
                             customdata=[category] * len(order)))
    fig.update_layout(barmode="stack", title=title, yaxis_title="fraction of units",
                      yaxis_tickformat=".0%", xaxis_title="layer", height=360)
    return fig


def detector_shares(dissection: pd.DataFrame, layers: Sequence[str] | None = None
                    ) -> pd.DataFrame:
    """Per layer, the fraction of all its units that are detectors of each category.

    Returns:
        DataFrame ``layer, <category>...`` (categories in order of appearance).
    """
    order = layer_order(dissection, layers=layers)
    frame = dissection.assign(layer=dissection["layer"].astype(str))
    totals = frame.groupby("layer").size()
    detectors = frame[frame["is_detector"].astype(bool)]
    categories = ordered_unique(detectors["category"])
    counts = detectors.groupby(["layer", "category"]).size().unstack(fill_value=0)
    counts = counts.reindex(index=order, columns=categories, fill_value=0)
    share = counts.div(totals.reindex(order).replace(0, 1), axis=0).fillna(0.0)
    return share.reset_index().rename(columns={"index": "layer"})


def make_layer_summary(units: pd.DataFrame | None, dissection: pd.DataFrame | None = None,
                       equivariance: pd.DataFrame | None = None,
                       filters: pd.DataFrame | None = None,
                       layers: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per layer: units, detectors, unique concepts, equivariance, filter fit.

    Columns present depend on the tables given: ``units`` and activation
    statistics from unit-stats; ``detectors``, ``detector_share`` and
    ``unique_concepts`` from dissection (unique concepts = distinct best
    labels among detectors); ``equivariance_error`` (mean error over every
    transform and magnitude) from equivariance; ``filter_r2`` (median Gabor
    R²) and ``filter_separability`` (median colour separability) from filters.
    """
    order = layer_order(units, dissection, equivariance, filters, layers=layers)
    out = pd.DataFrame({"layer": order})
    if units is not None and not units.empty:
        g = units.assign(layer=units["layer"].astype(str)).groupby("layer")
        out["units"] = out["layer"].map(g.size())
        if "max" in units:
            out["mean_max_activation"] = out["layer"].map(g["max"].mean())
        if "fraction_positive" in units:
            out["mean_fraction_positive"] = out["layer"].map(g["fraction_positive"].mean())
    if dissection is not None and not dissection.empty:
        d = dissection.assign(layer=dissection["layer"].astype(str))
        det = d[d["is_detector"].astype(bool)]
        if "units" not in out:
            out["units"] = out["layer"].map(d.groupby("layer").size())
        dissected = out["layer"].isin(set(d["layer"]))  # other layers stay blank, not 0
        out["detectors"] = out["layer"].map(det.groupby("layer").size()).fillna(0).where(
            dissected).astype("Int64")
        out["detector_share"] = out["detectors"] / out["units"].where(out["units"] > 0)
        out["unique_concepts"] = out["layer"].map(
            det.groupby("layer")["label"].nunique()).fillna(0).where(dissected).astype("Int64")
    if equivariance is not None and not equivariance.empty:
        e = _finite(equivariance.assign(layer=equivariance["layer"].astype(str)))
        out["equivariance_error"] = out["layer"].map(
            e.groupby("layer")[error_column(e)].mean())
    fit = r2_column(filters)
    if filters is not None and not filters.empty and fit:
        f = filters.assign(layer=filters["layer"].astype(str))
        out["filter_r2"] = out["layer"].map(f.groupby("layer")[fit].median())
        if "separability" in f:
            out["filter_separability"] = out["layer"].map(
                f.groupby("layer")["separability"].median())
    return out.round(4)


def make_equivariance_figure(equivariance: pd.DataFrame | None,
                             layers: Sequence[str] | None = None,
                             title: str = "equivariance error per layer") -> go.Figure:
    """Error per layer, one line per transform (mean over magnitudes)."""
    if equivariance is None or equivariance.empty:
        return _empty_figure("no equivariance in this run", title)
    order = layer_order(equivariance, layers=layers)
    frame = _finite(equivariance.assign(layer=equivariance["layer"].astype(str)))
    key = "transform" if "transform" in frame else None
    column = error_column(frame)
    fig = go.Figure()
    groups = frame.groupby(key) if key else [("all", frame)]
    for name, rows in groups:
        mean = rows.groupby("layer")[column].mean().reindex(order)
        fig.add_trace(go.Scatter(x=order, y=mean.values, mode="lines+markers", name=str(name)))
    fig.update_layout(title=title, xaxis_title="layer", yaxis_title="relative error",
                      height=340)
    return fig


def make_filter_figure(filters: pd.DataFrame | None, layers: Sequence[str] | None = None,
                       column: str | None = None,
                       title: str = "filter fit (Gabor R²) per layer") -> go.Figure:
    """Box plot of a per-unit filter statistic per layer.

    By default the Gabor R²; when no filter could be fitted (3×3 kernels are too
    small for a 9-parameter Gabor), the colour separability instead.
    """
    column = column or r2_column(filters)
    if (filters is not None and column in (filters.columns if column else ())
            and filters[column].notna().sum() == 0 and "separability" in filters):
        column, title = "separability", "filter colour separability (σ₁²/Σσ²) per layer"
    if filters is None or filters.empty or not column or column not in filters:
        return _empty_figure("no filter analysis in this run", title)
    fig = go.Figure()
    groups = _by_layer(filters, column)
    for layer in layer_order(filters, layers=layers):
        if layer in groups:
            fig.add_trace(go.Box(y=groups[layer], name=layer, showlegend=False))
    fig.update_layout(title=title, yaxis_title=column, height=340)
    return fig


def make_activation_figure(units: pd.DataFrame | None, layers: Sequence[str] | None = None,
                           title: str = "maximum activation per unit") -> go.Figure:
    """Box plot of each unit's maximum activation, per layer (from unit-stats)."""
    if units is None or units.empty:
        return _empty_figure("no unit-stats in this run", title)
    fig = go.Figure()
    groups = _by_layer(units, "max")
    for layer in layer_order(units, layers=layers):
        if layer in groups:
            fig.add_trace(go.Box(y=groups[layer], name=layer, showlegend=False))
    fig.update_layout(title=title, yaxis_title="max activation", height=340)
    return fig


# -- units -----------------------------------------------------------------------------
def make_unit_table(units: pd.DataFrame | None, dissection: pd.DataFrame | None = None,
                    filters: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per unit of one layer: statistics, best concept and filter fit.

    Args:
        units: unit-stats rows of the layer.
        dissection: dissection per-unit rows of the layer.
        filters: filters per-unit rows of the layer.

    Returns:
        DataFrame with ``unit`` and whichever of ``label, category, iou,
        is_detector, mean, std, max, fraction_positive, r2`` are available.
    """
    frames = []
    keep = {"units": ["unit", "mean", "std", "max", "fraction_positive"],
            "dissection": ["unit", "label", "category", "iou", "is_detector"],
            "filters": ["unit", "gabor_r2", "gabor_status", "separability"]}
    for key, frame in (("dissection", dissection), ("units", units), ("filters", filters)):
        if frame is not None and not frame.empty:
            if key == "dissection" and "name" in frame:
                # the grid shows concept names; ids stay in the analysis tables
                frame = frame.drop(columns=["label"]).rename(columns={"name": "label"})
            frames.append(frame[[c for c in keep[key] if c in frame]].copy())
    if not frames:
        return pd.DataFrame({"unit": pd.Series([], dtype=int)})
    table = frames[0]
    for frame in frames[1:]:
        table = table.merge(frame, on="unit", how="outer")
    table["unit"] = table["unit"].astype(int)
    if "is_detector" in table:
        table["is_detector"] = table["is_detector"].fillna(False).astype(bool)
    for column in ("mean", "std", "max", "fraction_positive", "iou", "gabor_r2",
                   "separability"):
        if column in table:
            table[column] = table[column].astype(float).round(4)
    return table.sort_values("unit").reset_index(drop=True)


_CLAUSE = re.compile(r"^\{(?P<column>[^}]+)\}\s*(?:[si]?(?P<op>>=|<=|!=|<|>|=)|"
                     r"[si]?(?P<word>eq|ne|lt|le|gt|ge|contains)(?=\s|$))?\s*(?P<value>.*)$")
_SYMBOLS = {"eq": "=", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}


def parse_filter_query(query: str | None) -> list[tuple[str, str, str]]:
    """Split a DataTable ``filter_query`` into ``(column, operator, value)`` triples.

    Understands what DataTable writes in custom filter mode: clauses
    ``{column} op value`` joined by ``&&``, with operators ``= != < <= > >=``
    (or ``eq ne lt le gt ge``, optionally prefixed ``s``/``i``) and
    ``contains``; a clause without an operator means ``contains``.

    Raises:
        ValueError: for a clause that is not of that form.
    """
    clauses = []
    for part in (query or "").split("&&"):
        part = part.strip()
        if not part:
            continue
        match = _CLAUSE.match(part)
        if match is None:
            raise ValueError(f"filter clause must look like '{{column}} op value', got {part!r}")
        op = match["op"] or match["word"] or "contains"
        value = match["value"].strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'`":
            value = value[1:-1]
        clauses.append((match["column"], _SYMBOLS.get(op, op), value))
    return clauses


def filter_sort_page(table: pd.DataFrame, filter_query: str | None = None,
                     sort_by: Sequence[Mapping[str, str]] | None = None,
                     page: int = 0, page_size: int = 25) -> tuple[pd.DataFrame, int]:
    """Server-side filter, sort and paging of a table, as a DataTable in custom mode asks.

    Returns:
        ``(rows of the requested page, number of pages)``.

    Raises:
        ValueError: for an unknown column or a bad filter value.
    """
    if page_size < 1:
        raise ValueError(f"page_size must be >= 1, got {page_size}")
    rows = table
    for column, op, value in parse_filter_query(filter_query):
        if column not in rows:
            raise ValueError(f"unknown column {column!r}; columns: {', '.join(rows.columns)}")
        series = rows[column]
        if op == "contains":
            mask = series.astype(str).str.contains(value, case=False, regex=False)
        else:
            target: Any = value
            if pd.api.types.is_bool_dtype(series):
                target = value.lower() in ("true", "1", "yes")
            elif pd.api.types.is_numeric_dtype(series):
                try:
                    target = float(value)
                except ValueError:
                    raise ValueError(f"column {column!r} is numeric, got {value!r}") from None
            else:
                series = series.astype(str)
            mask = {"=": series == target, "!=": series != target, "<": series < target,
                    "<=": series <= target, ">": series > target, ">=": series >= target}[op]
        rows = rows[mask.fillna(False).astype(bool)]
    if sort_by:
        columns = [s["column_id"] for s in sort_by if s.get("column_id") in rows]
        ascending = [s.get("direction", "asc") == "asc" for s in sort_by
                     if s.get("column_id") in rows]
        if columns:
            rows = rows.sort_values(columns, ascending=ascending, kind="stable")
    pages = max(1, -(-len(rows) // page_size))
    page = min(max(int(page or 0), 0), pages - 1)
    return rows.iloc[page * page_size:(page + 1) * page_size], pages


def error_column(frame: pd.DataFrame) -> str:
    """The error column of an equivariance table (``relative_error``, else ``error``)."""
    return "relative_error" if "relative_error" in frame else "error"


def r2_column(frame: pd.DataFrame | None) -> str | None:
    """The Gabor goodness-of-fit column of a filters table, if any."""
    if frame is None:
        return None
    return next((c for c in ("gabor_r2", "r2") if c in frame), None)


def _finite(frame: pd.DataFrame) -> pd.DataFrame:
    column = error_column(frame)
    if column not in frame:
        return frame
    return frame.assign(**{column: frame[column].replace([np.inf, -np.inf], np.nan)})


def make_concept_ranking_figure(ranking: pd.DataFrame | None, top: int = 10,
                                threshold: float | None = None,
                                title: str = "concept ranking (IoU)") -> go.Figure:
    """Horizontal bars of a unit's best concepts by IoU.

    Args:
        ranking: Rows ``name`` (or ``label``), ``category, iou`` of one unit.
        top: How many concepts to show.
        threshold: Detector threshold drawn as a vertical line.
    """
    if ranking is None or ranking.empty:
        return _empty_figure("no concept ranking (run dissection)", title)
    rows = ranking.sort_values("iou", ascending=False).head(top).iloc[::-1]
    has_category = "category" in rows
    categories = list(dict.fromkeys(rows["category"].astype(str))) if has_category else []
    colors = ([category_color(c, categories.index(c)) for c in rows["category"].astype(str)]
              if has_category else None)
    labels = rows["name"] if "name" in rows else rows["label"]
    names = ([f"{lab} ({cat})" for lab, cat in zip(labels, rows["category"], strict=True)]
             if has_category else [str(lab) for lab in labels])
    fig = go.Figure(go.Bar(x=rows["iou"], y=names, orientation="h", marker_color=colors))
    if threshold is not None:
        fig.add_vline(x=threshold, line_dash="dot", annotation_text=f"IoU {threshold}")
    fig.update_layout(title=title, xaxis_title="IoU", height=max(220, 28 * len(rows) + 90),
                      margin={"l": 160})
    return fig


# -- compare ---------------------------------------------------------------------------
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
        return _empty_figure(f"neither run has {metric!r}", title)
    fig = go.Figure()
    for summary, name in ((summary_a, name_a), (summary_b, name_b)):
        if metric in summary:
            fig.add_trace(go.Bar(x=summary["layer"], y=summary[metric], name=name))
    fig.update_layout(barmode="group", title=title, xaxis_title="layer", yaxis_title=metric,
                      height=340)
    return fig


def make_layer_equivariance_figure(errors: pd.DataFrame | None, layer: str,
                                   title: str | None = None) -> go.Figure:
    """One layer's equivariance error against each transform's magnitude.

    One small panel per transform, because magnitudes come in different units
    (pixels, fractions of the image, degrees).

    Args:
        errors: ``equivariance/errors`` rows (``layer, transform, magnitude,
            relative_error``, optionally the magnitude's ``unit``); other
            layers' rows are ignored.
        layer: The layer to show.
    """
    from plotly.subplots import make_subplots

    title = title or f"equivariance error of layer {layer}"
    if errors is None or errors.empty:
        return _empty_figure("no equivariance in this run", title)
    rows = _finite(errors[errors["layer"].astype(str) == layer])
    if rows.empty:
        return _empty_figure(f"no equivariance rows for layer {layer}", title)
    column = error_column(rows)
    transforms = ordered_unique(rows["transform"])
    fig = make_subplots(rows=1, cols=len(transforms), subplot_titles=transforms,
                        shared_yaxes=True)
    for i, name in enumerate(transforms, start=1):
        group = rows[rows["transform"].astype(str) == name].sort_values("magnitude")
        fig.add_trace(go.Scatter(x=group["magnitude"], y=group[column], mode="lines+markers",
                                 name=name, showlegend=False), row=1, col=i)
        unit = str(group["unit"].iloc[0]) if "unit" in group and len(group) else ""
        fig.update_xaxes(title_text=unit or "magnitude", row=1, col=i)
    fig.update_yaxes(title_text="relative error", row=1, col=1)
    fig.update_layout(title=title, height=320)
    return fig
