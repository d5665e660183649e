"""Figures of the ``filters`` analysis: pure functions of its tables."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from probe.views.plots import colorscale, figure

#: Units shown per filter grid, and layers given a grid.
GRID_UNITS = 64
GRID_LAYERS = 3
CURVE_LAYERS = 4
BASIS_STYLE = {"pca": "#1f77b4", "pca_windowed": "#17becf", "derivative": "#d62728",
               "layer_svd": "#7f7f7f"}


def _tile(values: np.ndarray, h: int, w: int, peak: float) -> np.ndarray:
    tile = np.asarray(values, dtype=np.float64).reshape(h, w)
    return tile / peak if peak > 0 else tile


def filter_grid_figure(units: pd.DataFrame, layer: str, columns: int = 8) -> Any:
    """Each filter's spatial map beside its fitted Gabor (both divided by the map's max |value|).

    Args:
        units: The ``units`` table.
        layer: Which layer to show (its first :data:`GRID_UNITS` units).
        columns: Filter/fit pairs per row.
    """
    everything = units[units["layer"] == layer]
    rows = everything.sort_values("unit").head(GRID_UNITS)
    if rows.empty:
        return figure([], {"title": {"text": f"filters: no units in {layer}"}})
    h, w = int(rows["kernel_h"].iloc[0]), int(rows["kernel_w"].iloc[0])
    n = len(rows)
    grid_rows = -(-n // columns)
    gap = 1
    height = grid_rows * (h + gap)
    width = columns * (2 * w + 3 * gap)
    canvas = np.full((height, width), np.nan)
    labels = np.full((height, width), "", dtype=object)
    for i, (_, row) in enumerate(rows.iterrows()):
        r, c = divmod(i, columns)
        top, left = r * (h + gap), c * (2 * w + 3 * gap)
        peak = float(np.abs(np.asarray(row["map"], dtype=np.float64)).max())
        canvas[top:top + h, left:left + w] = _tile(row["map"], h, w, peak)
        r2 = row["gabor_r2"]
        text = f"unit {row['unit']} R²={r2:.2f}" if np.isfinite(r2) else \
            f"unit {row['unit']} ({row['gabor_status']})"
        labels[top:top + h, left:left + 2 * w + gap] = text
        if row["gabor_status"] == "ok":
            canvas[top:top + h, left + w + gap:left + 2 * w + gap] = _tile(row["fit"], h, w,
                                                                           peak)
    median = everything["gabor_r2"].median()
    scale = 1000 / width
    status = rows["gabor_status"].iloc[0]
    note = f"median R² {median:.2f} over {len(everything)} units" if np.isfinite(median) \
        else f"Gabor fit: {status}"
    heatmap = {"type": "heatmap", "z": canvas, "text": labels, "hoverinfo": "text", "zmin": -1,
               "zmax": 1, "zmid": 0, "colorscale": colorscale("RdBu_r"), "showscale": False}
    return figure([heatmap], {
        "yaxis": {"autorange": "reversed", "scaleanchor": "x", "visible": False},
        "xaxis": {"visible": False},
        "title": {"text": f"filters: {layer} — each filter (left) beside its Gabor fit "
                          f"(right); {note}"}, "width": 1040,
        "height": int(min(1400, max(220, 70 + height * scale))),
        "margin": {"l": 10, "r": 10, "t": 50, "b": 10}})


def energy_curve_figure(energy: pd.DataFrame) -> Any:
    """Mean energy fraction of the filters in each basis span vs the basis size, with chance."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    layers = pd.unique(energy["layer"].to_numpy(dtype=object)).tolist()[:CURVE_LAYERS]
    fig = make_subplots(rows=1, cols=max(len(layers), 1), subplot_titles=layers or ["none"])
    for col, layer in enumerate(layers, start=1):
        # pca_color lives in the C·k² space of whole colour filters: its own chance line
        # (dim / 3k²) differs, so the spatial curves are shown here and it is left out.
        rows = energy[(energy["layer"] == layer) & (energy["basis"] != "pca_color")]
        for basis, part in rows.groupby("basis", sort=False):
            part = part.sort_values("dim")
            fig.add_trace(go.Scatter(
                x=part["span_dim"] if "span_dim" in part else part["dim"],
                y=part["energy_mean"], mode="lines+markers" if basis == "derivative" else "lines",
                name=basis, legendgroup=basis, showlegend=col == 1,
                line={"color": BASIS_STYLE.get(basis)}), row=1, col=col)
        pca = rows[rows["basis"] == "pca"].sort_values("dim")
        fig.add_trace(go.Scatter(x=pca["dim"], y=pca["chance"], name="chance (dim/k²)",
                                 legendgroup="chance", showlegend=col == 1,
                                 line={"color": "black", "dash": "dash"}), row=1, col=col)
        fig.add_trace(go.Scatter(x=pca["dim"], y=pca["random_mean"], name="random filters",
                                 legendgroup="random", showlegend=col == 1,
                                 line={"color": "black", "dash": "dot"}), row=1, col=col)
        fig.update_xaxes(title_text="basis size", row=1, col=col)
    fig.update_yaxes(title_text="energy fraction in span", range=[0, 1.02], row=1, col=1)
    fig.update_layout(title="filters: energy in basis spans vs basis size (chance dashed)",
                      height=380)
    return fig


def orientation_frequency_figure(units: pd.DataFrame) -> Any:
    """Polar scatter of fitted orientation (θ, doubled to [0, 360°)) and frequency."""
    traces = []
    ok = units[units["gabor_status"] == "ok"]
    for layer, rows in ok.groupby("layer", sort=False):
        traces.append({
            "type": "scatterpolar", "r": rows["gabor_frequency"].to_numpy(),
            "theta": (np.degrees(rows["gabor_theta"]) * 2).to_numpy(),
            "mode": "markers", "name": str(layer),
            "marker": {"size": 4 + 10 * np.clip(rows["gabor_r2"].to_numpy(), 0, 1)},
            "text": np.array([f"{layer} unit {u}: θ={np.degrees(t):.0f}°, f={f:.3f}, R²={r:.2f}"
                              for u, t, f, r in zip(rows["unit"].tolist(),
                                                    rows["gabor_theta"].tolist(),
                                                    rows["gabor_frequency"].tolist(),
                                                    rows["gabor_r2"].tolist(), strict=True)]),
            "hoverinfo": "text"})
    return figure(traces, {
        "title": {"text": "filters: Gabor orientation (angle = 2θ) and frequency "
                          "(radius, cycles/px); marker size = R²"},
        "polar": {"radialaxis": {"range": [0, 0.6]}}, "height": 420})


def summary_figure(layers: pd.DataFrame) -> Any:
    """Per layer: Gabor R², bank |cos| and redundancy of the filters against random filters."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    rows = layers[layers["status"] != "no_convolution"]
    metrics = (("gabor_r2_median", "gabor_r2_random_median", "median Gabor R² (kernels ≥ 5 px)"),
               ("bank_cos_mean", "bank_cos_random", "mean best |cos| in Gabor bank"),
               ("redundancy_mean", "redundancy_random", "mean redundancy |cos|"))
    fig = make_subplots(rows=1, cols=3, subplot_titles=[m[2] for m in metrics])
    for col, (learned, chance, _) in enumerate(metrics, start=1):
        fig.add_trace(go.Bar(x=rows["layer"], y=rows[learned], name="learned",
                             marker_color="#1f77b4", showlegend=col == 1, legendgroup="l"),
                      row=1, col=col)
        fig.add_trace(go.Bar(x=rows["layer"], y=rows[chance], name="random filters",
                             marker_color="#bbbbbb", showlegend=col == 1, legendgroup="r"),
                      row=1, col=col)
    fig.update_yaxes(range=[0, 1.02])
    fig.update_layout(title="filters: learned vs random filters per layer", barmode="group",
                      height=380)
    return fig


def _distinct(frame: pd.DataFrame | None, layers: pd.DataFrame | None) -> pd.DataFrame | None:
    """Drop rows of layer names that repeat another layer's filters (conv → ReLU → pool)."""
    if frame is None or layers is None or "same_filters_as" not in layers:
        return frame
    repeats = layers.loc[layers["same_filters_as"].notna()
                         & (layers["same_filters_as"] != layers["layer"]), "layer"]
    return frame[~frame["layer"].isin(set(repeats))]


def make_figures(tables: Mapping[str, pd.DataFrame]) -> list[Any]:
    """Every figure of the analysis, from its tables (dashboard and report).

    Layer names that only repeat another layer's filters (a ReLU or pool after a
    convolution; ``layers.same_filters_as``) are shown once.
    """
    figures = []
    layers = tables.get("layers")
    units = _distinct(tables.get("units"), layers)
    if layers is not None and len(layers):
        figures.append(summary_figure(_distinct(layers, layers)))
    if units is not None and len(units):
        fitted = [layer for layer in pd.unique(units["layer"].to_numpy(dtype=object)).tolist()
                  if (units.loc[units["layer"] == layer, "gabor_status"] == "ok").any()]
        for layer in fitted[:GRID_LAYERS]:
            figures.append(filter_grid_figure(units, layer))
        if fitted:
            figures.append(orientation_frequency_figure(units))
    energy = _distinct(tables.get("energy"), layers)
    if energy is not None and len(energy):
        figures.append(energy_curve_figure(energy))
    return figures
