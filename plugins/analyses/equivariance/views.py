"""Views of ``equivariance``: error per layer and transform, learned-map partners.

Pure functions of a :class:`~probe.views.RunView`, called by the view hooks of
:class:`~probe.plugins.analyses.equivariance.analysis.Equivariance`. Means
over a sweep leave out the transform's identity magnitude (where the error is
0 by construction); curves keep it as their starting point.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from probe.views.blocks import Facts, Figure, Headline, Note, Table
from probe.views.format import format_value, layer_depth
from probe.views.plots import axes, cell, empty_figure, figure, layer_color, layer_order, subplots
from probe.views.run_view import RunView

NAME = "equivariance"
OUTPUT = "<output>"


@functools.cache
def identity_of(transform: str) -> float:
    """The magnitude at which ``transform`` does nothing (0 for unknown transforms)."""
    try:
        from probe.transform_registry import get_transforms

        return float(get_transforms([transform])[0].identity)
    except Exception:  # a transform whose plugin is not installed where the run is viewed
        return 0.0


def errors(run: RunView, layer: str | None = None) -> pd.DataFrame | None:
    """The ``errors`` rows (of ``layer``) with infinite errors as NaN; ``None`` if absent.

    Kept in the run's memo (the summary, the run's and the layer's views read it); treat
    it as read-only.
    """
    return run.memo((NAME, "errors", layer), lambda: _errors(run, layer))


def _errors(run: RunView, layer: str | None) -> pd.DataFrame | None:
    frame = run.table(NAME, "errors", layer=layer)
    if frame is None or frame.empty:
        return None
    error = frame["relative_error"].astype(float).replace([np.inf, -np.inf], np.nan)
    return frame.assign(layer=frame["layer"].astype(str),
                        transform=frame["transform"].astype(str), relative_error=error)


def measured(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows away from each transform's identity magnitude."""
    identity = frame["transform"].map(identity_of)
    return frame[~np.isclose(frame["magnitude"].astype(float), identity)]


def mean_errors(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean relative error over each sweep (identity left out): ``layer × transform``."""
    return measured(frame).pivot_table(index="layer", columns="transform",
                                       values="relative_error", aggfunc="mean", sort=False)


def _order(run: RunView, frame: pd.DataFrame, output: bool = True) -> list[str]:
    present = set(frame["layer"])
    order = layer_order(frame, layers=[x for x in run.layers if x in present])
    return [x for x in order if output or x != OUTPUT]


def _axis(rows: pd.DataFrame) -> tuple[pd.Series, str]:
    """The x values of one transform's sweep: input pixels when known, else its magnitude."""
    if "pixels" in rows and rows["pixels"].notna().all():
        return rows["pixels"], "input pixels"
    unit = str(rows["unit"].iloc[0]) if "unit" in rows and len(rows) else ""
    return rows["magnitude"], unit or "magnitude"


def layer_figure(frame: pd.DataFrame | None, layer: str) -> Any:
    """One layer's error against each transform's magnitude: one panel per transform,
    shared y; filled markers where the action is an exact permutation of cells."""
    rows = None if frame is None else frame[frame["layer"] == layer]
    if rows is None or rows.empty:
        return empty_figure(f"no equivariance rows for layer {layer}")
    groups = dict(tuple(rows.groupby("transform", sort=False)))
    transforms = list(groups)
    cols = len(transforms)
    layout = subplots(1, cols, subplot_titles=tuple(transforms), shared_yaxes=True,
                      horizontal_spacing=0.04)
    traces = []
    for i, name in enumerate(transforms, start=1):
        group = groups[name].sort_values("magnitude")
        x, title = _axis(group)
        symbols = ["circle" if bool(e) else "circle-open" for e in group["exact_action"]] \
            if "exact_action" in group else "circle"
        traces.append({"type": "scatter", "x": x.to_numpy(),
                       "y": group["relative_error"].to_numpy(), "mode": "lines+markers",
                       "name": name, "showlegend": False, "line": {"color": layer_color(i - 1)},
                       "marker": {"symbol": symbols, "size": 8}, **cell(1, i, cols)})
        layout[axes(layout, "x")[i - 1]]["title"] = {"text": title}
    layout["yaxis"].update(title={"text": "relative error"}, rangemode="tozero")
    layout.update(height=300, margin={"t": 40})
    return figure(traces, layout)


def _layer_caption(layer: str) -> str:
    return (f"Relative error ‖f(g·x) − g′·f(x)‖ / ‖f(x)‖ of {layer} over each transform's "
            "sweep, one panel per transform (shared y); filled markers: the action is an "
            "exact permutation of the layer's cells.")


def partners_table(run: RunView, layer: str) -> Table | None:
    """The learned maps of one layer: held-out 1 − R² beside the baselines, and partners."""
    maps = run.table(NAME, "learned_maps", layer=layer)
    if maps is None or maps.empty:
        return None
    frame = maps[["transform", "magnitude", "units", "one_minus_r2", "spatial_one_minus_r2",
                  "identity_one_minus_r2"]].copy()
    units = run.table(NAME, "learned_map_units", layer=layer)
    if units is not None and not units.empty:
        grouped = units.assign(self_partner=units["partner"] == units["unit"]).groupby(
            ["transform", "magnitude"], sort=False)
        stats = pd.DataFrame({"self_share": grouped["self_partner"].mean(),
                              "partner_share": grouped["share"].mean()}).reset_index()
        frame = frame.merge(stats, on=["transform", "magnitude"], how="left")
    return Table(frame.reset_index(drop=True), caption=f"Learned equivariance maps of {layer} "
                 "(Lenc & Vedaldi): held-out 1 − R² of the spatial action followed by a 1×1 "
                 "channel mixing, beside the spatial-only and identity (invariance) "
                 "baselines; the share of units whose main partner is themselves, and the "
                 "partner's mean share of the mixing weights.", name="equivariance-maps",
                 labels={"magnitude": "magnitude", "units": "units",
                         "one_minus_r2": "1 − R², learned map",
                         "spatial_one_minus_r2": "1 − R², spatial only",
                         "identity_one_minus_r2": "1 − R², identity",
                         "self_share": "units mapped to themselves",
                         "partner_share": "mean partner share"},
                 formats={"units": "int", "one_minus_r2": "fixed3",
                          "spatial_one_minus_r2": "fixed3", "identity_one_minus_r2": "fixed3",
                          "self_share": "percent", "partner_share": "percent"})


def layer_views(run: RunView, layer: str) -> list[Any]:
    """The layer's error against each transform's magnitude and its learned-map partners."""
    frame = errors(run, layer)
    out: list[Any] = []
    if frame is not None:
        out.append(Figure(layer_figure(frame, layer), caption=_layer_caption(layer),
                          name="equivariance-layer"))
    table = partners_table(run, layer)
    if table is not None:
        out.append(table)
    return out


def unit_views(run: RunView, layer: str, unit: int) -> list[Any]:
    """The layer's equivariance (the same for each of its units) and the unit's partners."""
    def build() -> Any:  # the same on every unit page of the layer: built once, as JSON
        frame = errors(run, layer)
        return None if frame is None else layer_figure(frame, layer).to_plotly_json()

    spec = run.memo(("equivariance-layer-figure", layer), build)
    out: list[Any] = []
    if spec is not None:
        out.append(Figure(spec, caption=_layer_caption(layer) +
                          " The same for every unit of the layer.", name="equivariance-layer"))
    rows = run.unit_rows(NAME, "learned_map_units", layer, unit)
    if rows is not None and not rows.empty:
        shown = rows[["transform", "magnitude", "partner", "weight", "share"]].reset_index(
            drop=True)
        hrefs = [run.unit_link(layer, int(p)) for p in shown["partner"]]
        extra: dict[str, Any] = {}
        if any(hrefs):
            shown["partner_href"] = hrefs
            extra = {"links": {"partner": "partner_href"}, "hidden": ("partner_href",)}
        out.append(Table(shown, caption="Learned equivariance map: the unit this one becomes "
                         "under each transform (largest mixing weight) and that weight's "
                         "share of Σ|w|.", name="equivariance-partners",
                         labels={"partner": "partner unit", "weight": "weight",
                                 "share": "share of Σ|w|"},
                         formats={"partner": "int", "weight": "fixed3", "share": "percent"},
                         **extra))
    return out


def per_layer_figure(frame: pd.DataFrame, order: Sequence[str]) -> Any:
    """Mean relative error per layer (identity left out), one line per transform."""
    means = mean_errors(frame).reindex(list(order))
    traces = [{"type": "scatter", "x": list(order), "y": means[name].to_numpy(),
               "mode": "lines+markers", "name": str(name), "line": {"color": layer_color(i)}}
              for i, name in enumerate(means.columns)]
    return figure(traces, {"xaxis": {"title": {"text": "layer"}},
                           "yaxis": {"title": {"text": "mean relative error"},
                                     "rangemode": "tozero"}, "height": 360})


def run_views(run: RunView) -> list[Any]:
    """Error per layer and transform, each sweep, learned maps, Lie derivatives, outputs."""
    from .figures import (
        consistency_figure,
        discrete_error_figure,
        error_vs_magnitude_figure,
        error_vs_shift_figure,
        learned_map_figure,
        lie_figure,
    )

    out: list[Any] = []
    frame = errors(run)
    if frame is not None:
        out.append(Figure(per_layer_figure(frame, _order(run, frame)), caption="Mean "
                          "relative error over each transform's sweep (identity left out), "
                          "per layer in network order; 0 = the layer commutes with the "
                          "transform.", name="equivariance-layers"))
        ordered = frame.assign(layer=pd.Categorical(frame["layer"], _order(run, frame),
                                                    ordered=True)).sort_values("layer")
        ordered = ordered.assign(layer=ordered["layer"].astype(str))
        discrete = []
        for name in dict.fromkeys(frame["transform"]):
            rows = frame[frame["transform"] == name]
            if rows["pixels"].notna().any():
                out.append(Figure(error_vs_shift_figure(ordered, name), caption="Error vs "
                                  "input shift per layer; filled markers are whole cells of the "
                                  "layer's grid, so the period of its stride shows as dips.",
                                  name=f"equivariance-shift-{name}"))
            elif set(rows["magnitude"]) <= {0.0, 1.0, 2.0, 3.0}:
                discrete.append(name)
            else:
                out.append(Figure(error_vs_magnitude_figure(ordered, name),
                                  caption=f"Error vs {name} magnitude, one line per layer.",
                                  name=f"equivariance-magnitude-{name}"))
        if discrete:
            out.append(Figure(discrete_error_figure(ordered, discrete), caption="Error per "
                              "layer for each flip or quarter turn.",
                              name="equivariance-discrete"))
    tables = run.tables(NAME)
    maps = tables.get("learned_maps")
    if maps is not None and len(maps):
        out.append(Figure(learned_map_figure(maps), caption="Held-out 1 − R² of the learned "
                          "map next to the spatial-only and identity baselines; lower is "
                          "more equivariant up to a channel mixing.", name="equivariance-maps"))
    lie, attribution = tables.get("lie"), tables.get("lie_attribution")
    if lie is not None and attribution is not None and len(lie):
        out.append(Figure(lie_figure(lie, attribution), caption="Relative Lie derivative of "
                          "each layer's representation, and each layer's share of the output's "
                          "(chain rule; shares sum to 1).", name="equivariance-lie"))
    summary, curve = tables.get("consistency"), tables.get("shift_curve")
    if summary is not None and curve is not None and len(summary):
        row = summary.iloc[0]
        out.append(Facts([("accuracy", row["accuracy"]), ("consistency", row["consistency"]),
                          ("P(top-1 change), neighbouring shifts", row["top1_change"]),
                          ("mean |Δp|", row["mean_abs_change"])], name="equivariance-outputs",
                         formats={"accuracy": "percent", "consistency": "percent",
                                  "P(top-1 change), neighbouring shifts": "percent",
                                  "mean |Δp|": "fixed3"}))
        out.append(Figure(consistency_figure(summary, curve), caption="Output stability: "
                          "consistency under random crops (Zhang 2019) and P(top-1 change) "
                          "between neighbouring 1-px shifts (Azulay & Weiss 2019).",
                          name="equivariance-consistency"))
    return out


def summary_frame(run: RunView) -> pd.DataFrame | None:
    """Per captured layer, the mean relative error under each transform (identity left out).

    Kept in the run's memo (the layer summary, the headlines and the comparison read it;
    treat it as read-only)."""
    return run.memo((NAME, "summary-frame"), lambda: _summary_frame(run))


def _summary_frame(run: RunView) -> pd.DataFrame | None:
    frame = errors(run)
    if frame is None:
        return None
    means = mean_errors(frame).reindex(_order(run, frame, output=False))
    means = means.loc[:, [c for c in means if not means[c].isna().all()]]
    means.columns = [f"equivariance_{c}" for c in means.columns]
    return means.rename_axis("layer").reset_index()


def layer_summary(run: RunView) -> Table | None:
    """Mean relative error per transform (a column each) of every captured layer."""
    frame = summary_frame(run)
    if frame is None:
        return None
    columns = [c for c in frame if c != "layer"]
    return Table(frame, caption="equivariance: per layer, the mean relative error over each "
                 "transform's sweep (identity left out); 0 = the layer commutes with it.",
                 name="equivariance-layers",
                 labels={c: f"error under {_transform(c)}" for c in columns},
                 formats=dict.fromkeys(columns, "fixed3"))


def _transform(column: str) -> str:
    return column.removeprefix("equivariance_")


def headlines(run: RunView) -> list[Any]:
    """The most and the least equivariant transform at the last captured layer."""
    frame = summary_frame(run)
    if frame is None or frame.empty:
        return []
    row = frame.iloc[-1]
    values = row.drop("layer").astype(float).dropna()
    if values.empty:
        return []
    best, worst = values.idxmin(), values.idxmax()
    out = [Headline(f"most equivariant transform at {row['layer']}", _transform(best),
                    f"mean relative error {format_value(values[best], 'fixed3')}", "text")]
    if worst != best:
        out.append(Headline(f"least equivariant transform at {row['layer']}", _transform(worst),
                            f"mean relative error {format_value(values[worst], 'fixed3')}",
                            "text"))
    return out


def compare_figures(runs: Sequence[RunView]) -> list[Any]:
    """Mean error by relative depth, one panel per transform (shared y), one line per run."""
    frames = [(run, summary_frame(run)) for run in runs]
    frames = [(run, f) for run, f in frames if f is not None and not f.empty]
    if len(frames) < 2:
        return []
    columns = list(dict.fromkeys(c for _, f in frames for c in f if c != "layer"))
    if not columns:
        return [Note("No equivariance errors to compare.")]
    titles = tuple(_transform(c) for c in columns)
    cols = len(columns)
    layout = subplots(1, cols, subplot_titles=titles, shared_yaxes=True,
                      horizontal_spacing=0.03)
    x_axes = axes(layout, "x")
    traces = []
    for i, (run, frame) in enumerate(frames):
        depth = layer_depth(list(frame["layer"]))
        for col, column in enumerate(columns, start=1):
            if column not in frame:
                continue
            traces.append({
                "type": "scatter", "x": [depth[x] for x in frame["layer"]],
                "y": frame[column].to_numpy(), "text": frame["layer"].to_numpy(),
                "mode": "lines+markers", "name": run.label, "legendgroup": run.label,
                "showlegend": col == 1, "line": {"color": layer_color(i)},
                "hovertemplate": "%{text}: %{y:.4g}", **cell(1, col, cols)})
            layout[x_axes[col - 1]].update(title={"text": "relative depth"},
                                           range=[-0.05, 1.05])
    layout["yaxis"].update(title={"text": "mean relative error"}, rangemode="tozero")
    layout["height"] = 340
    return [Figure(figure(traces, layout), caption="Mean relative error per transform by "
                   "relative depth (first layer 0, last 1), one line per run, shared y.",
                   name="equivariance-compare")]
