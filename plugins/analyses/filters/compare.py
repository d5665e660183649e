"""The ``filters`` comparison of several runs: learned vs engineered first layers.

``compare_figures(runs)`` (the Compare page with two runs, the report's comparison
with every run that completed ``filters``) puts each run's first filter layer side
by side, as the lecture notes do for Gabor banks, natural-patch PCA and a CNN's
first layer: median Gabor R² and the share above the threshold against seeded
random filters of the same shape, energy in the natural-patch PCA and
Gaussian-derivative bases against chance, orientation and frequency coverage,
redundancy under rotations, and a gallery of each run's filters beside their
fitted Gabors with the PCA components of the same size. Everything is read from
the runs' tables (nothing is fitted again).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from probe.views import images
from probe.views.blocks import Figure, Note, Picture, Pictures, Table
from probe.views.run_view import RunView

NAME = "filters"
#: Filters per run in the gallery, filter/fit pairs per gallery row, PCA components shown.
GALLERY = 16
GALLERY_COLUMNS = 4
COMPONENTS = 8
#: Orientation bins (degrees) of the histogram and the coverage count, centred on 0°, 15°, …,
#: 165° (so the 0°/45°/90°/135° of a classic bank sit mid-bin, not on an edge).
ORIENTATION_BIN = 15
#: Frequency bins (cycles/px) of the histogram.
FREQUENCY_EDGES = np.linspace(0.0, 0.5, 11)
#: Basis dimension of the energy columns: top-3 PCA components, derivatives of order ≤ 1.
ENERGY_DIM = 3
#: Table headings.
LABELS = {
    "run": "run", "layer": "layer", "filters": "filters", "gabor_r2": "median Gabor R²",
    "gabor_r2_random": "R², random", "above": "share above threshold",
    "above_random": "share, random", "pca3": "energy top-3 PCA", "pca3_chance": "PCA chance",
    "pca3_random": "PCA, random", "derivative1": "energy derivatives ≤ 1",
    "derivative1_chance": "derivatives chance", "derivative1_random": "derivatives, random",
    "bank_cos": "best bank |cos|", "bank_cos_random": "bank, random",
    "redundancy": "redundancy |cos|", "redundancy_random": "redundancy, random",
    "orientation_bins": f"{ORIENTATION_BIN}° orientation bins filled",
    "gabor_like": "Gabor-like filters",
    "frequency": "median frequency (cycles/px)"}
FORMATS = {"gabor_r2": "fixed3", "gabor_r2_random": "fixed3", "above": "percent",
           "above_random": "percent", "pca3": "percent", "pca3_chance": "percent",
           "pca3_random": "percent", "derivative1": "percent", "derivative1_chance": "percent",
           "derivative1_random": "percent", "bank_cos": "fixed3", "bank_cos_random": "fixed3",
           "redundancy": "fixed3", "redundancy_random": "fixed3", "gabor_like": "int",
           "frequency": "fixed3", "orientation_bins": "text", "filters": "text"}


def first_layer(run: RunView) -> str | None:
    """The run's first layer (network order) the filters tables cover with filters of its own.

    Layers made by no convolution and names that repeat another layer's filters
    (``layers.same_filters_as``) are passed over.
    """
    layers = run.table(NAME, "layers", columns=["layer", "status", "same_filters_as"])
    if layers is None or layers.empty:
        return None
    layers = layers.assign(layer=layers["layer"].astype(str))
    same = layers["same_filters_as"]
    own = layers[(layers["status"] != "no_convolution")
                 & (same.isna() | (same.astype(str) == layers["layer"]))]
    names = list(own["layer"])
    order = [x for x in run.layers if x in names] + [x for x in names if x not in run.layers]
    return order[0] if order else None


def _energy(energy: pd.DataFrame | None, basis: str) -> tuple[float, float, float]:
    """(mean energy, chance, random filters' mean) at :data:`ENERGY_DIM` in ``basis``."""
    if energy is None:
        return (math.nan,) * 3
    pick = energy[(energy["basis"] == basis) & (energy["dim"] == ENERGY_DIM)]
    if pick.empty:
        return (math.nan,) * 3
    row = pick.iloc[0]
    return float(row["energy_mean"]), float(row["chance"]), float(row["random_mean"])


def orientations(units: pd.DataFrame) -> np.ndarray:
    """Fitted orientations in degrees, in [0, 180), of ``units``' fitted filters."""
    ok = units[units["gabor_status"] == "ok"]
    return np.degrees(ok["gabor_theta"].astype(float).to_numpy()) % 180.0


def orientation_bins(degrees: np.ndarray) -> np.ndarray:
    """The :data:`ORIENTATION_BIN` bin of each orientation, bins centred on multiples of it."""
    shifted = (np.asarray(degrees, dtype=np.float64) + ORIENTATION_BIN / 2) % 180.0
    return (shifted // ORIENTATION_BIN).astype(int)


def gabor_like(units: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """The fitted filters of ``units`` with R² above ``threshold``."""
    return units[(units["gabor_status"] == "ok") & (units["gabor_r2"] > threshold)]


def run_row(run: RunView, layer: str, units: pd.DataFrame) -> dict[str, Any]:
    """One run's row of the comparison table, from its ``units``, ``layers`` and ``energy``."""
    info = run.table(NAME, "layers", layer=layer)
    info = info.iloc[0] if info is not None and not info.empty else pd.Series(dtype=object)
    threshold = float(info.get("r2_threshold", run.options(NAME).get("r2_threshold", 0.7)))
    ok = units["gabor_status"] == "ok"
    r2 = units.loc[ok, "gabor_r2"].astype(float)
    energy = run.table(NAME, "energy", layer=layer)
    pca, pca_chance, pca_random = _energy(energy, "pca")
    der, der_chance, der_random = _energy(energy, "derivative")
    like = gabor_like(units, threshold)
    bins = np.unique(orientation_bins(orientations(like)))
    h, w = int(units["kernel_h"].iloc[0]), int(units["kernel_w"].iloc[0])
    channels = int(units["channels"].iloc[0]) if "channels" in units else 1

    def value(column: str) -> float:
        v = info.get(column)
        return float(v) if v is not None and pd.notna(v) else math.nan

    return {
        "run": run.label, "layer": layer, "filters": f"{len(units)}@{channels}×{h}×{w}",
        "gabor_r2": float(r2.median()) if len(r2) else math.nan,
        "gabor_r2_random": value("gabor_r2_random_median"),
        "above": float((r2 > threshold).mean()) if len(r2) else math.nan,
        "above_random": value("gabor_fraction_above_random"),
        "pca3": pca, "pca3_chance": pca_chance, "pca3_random": pca_random,
        "derivative1": der, "derivative1_chance": der_chance, "derivative1_random": der_random,
        "bank_cos": value("bank_cos_mean"), "bank_cos_random": value("bank_cos_random"),
        "redundancy": value("redundancy_mean"), "redundancy_random": value("redundancy_random"),
        "gabor_like": len(like), "orientation_bins": f"{len(bins)} of {180 // ORIENTATION_BIN}",
        "frequency": float(like["gabor_frequency"].median()) if len(like) else math.nan}


def _unique_labels(runs: Sequence[RunView]) -> list[str]:
    """Run labels, a repeated one numbered (so plot categories stay apart)."""
    seen: dict[str, int] = {}
    out = []
    for run in runs:
        seen[run.label] = seen.get(run.label, 0) + 1
        out.append(run.label if seen[run.label] == 1 else f"{run.label} ({seen[run.label]})")
    return out


def collect(runs: Sequence[RunView]) -> tuple[list[tuple[RunView, str, pd.DataFrame]],
                                              list[Note]]:
    """``(run, layer, units rows)`` of each run with filters, and a Note for each without."""
    found, notes = [], []
    for run in runs:
        layer = first_layer(run)
        units = run.table(NAME, "units", layer=layer) if layer is not None else None
        if units is None or units.empty:
            notes.append(Note(f"{run.label}: no filters table with a convolution layer, so it "
                              "is not in the comparison of filters.", level="warning"))
            continue
        found.append((run, layer, units.sort_values("unit")))
    return found, notes


def comparison_frame(found: Sequence[tuple[RunView, str, pd.DataFrame]]) -> pd.DataFrame:
    """One row per run (:func:`run_row`), runs labelled apart."""
    frame = pd.DataFrame([run_row(run, layer, units) for run, layer, units in found])
    frame["run"] = _unique_labels([run for run, _, _ in found])
    return frame


#: Height of one run's row in the bars figure (px).
ROW_PX = 26


def bars_figure(frame: pd.DataFrame) -> Any:
    """Per run (one row each, every run named): each measure of its first layer (colour)
    beside random filters (grey) and chance (black marks).

    Horizontal bars so that nine or twenty runs stay labelled and readable: the figure
    grows by :data:`ROW_PX` per run instead of the bars thinning out.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = (("gabor_r2", "gabor_r2_random", None, "median Gabor R²"),
              ("above", "above_random", None, "share R² > threshold"),
              ("bank_cos", "bank_cos_random", None, "Gabor bank |cos|"),
              ("pca3", "pca3_random", "pca3_chance", "energy, top-3 PCA"),
              ("derivative1", "derivative1_random", "derivative1_chance",
               "energy, derivatives ≤ 1"),
              ("redundancy", "redundancy_random", None, "redundancy |cos|"))
    runs = list(frame["run"])
    panel_px = ROW_PX * len(runs) + 30
    height = 2 * panel_px + 150
    fig = make_subplots(rows=2, cols=3, subplot_titles=[p[3] for p in panels],
                        shared_yaxes=True, vertical_spacing=110 / height,
                        horizontal_spacing=0.03)
    for i, (learned, random, chance, _) in enumerate(panels):
        row, col = divmod(i, 3)
        where = {"row": row + 1, "col": col + 1}
        fig.add_trace(go.Bar(y=runs, x=frame[learned], orientation="h",
                             name="the run's filters", marker_color="#1f77b4",
                             legendgroup="l", showlegend=i == 0, text=frame["layer"],
                             textposition="none", hovertemplate="%{y} · %{text}: %{x:.3f}"),
                      **where)
        fig.add_trace(go.Bar(y=runs, x=frame[random], orientation="h",
                             name="random filters, same shape", marker_color="#bbbbbb",
                             legendgroup="r", showlegend=i == 0,
                             hovertemplate="%{y}: random %{x:.3f}"), **where)
        if chance is not None:
            fig.add_trace(go.Scatter(y=runs, x=frame[chance], mode="markers",
                                     name="chance (dim/k²)", legendgroup="c",
                                     showlegend=i == 3,
                                     marker={"symbol": "line-ns-open",
                                             "size": ROW_PX - 8, "color": "black",
                                             "line": {"width": 2}},
                                     hovertemplate="%{y}: chance %{x:.3f}"), **where)
    fig.update_xaxes(range=[0, 1.02], tickvals=[0, 0.5, 1])
    # every run named, first run on top, in the order of the table
    fig.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=runs,
                     tickmode="array", tickvals=runs, ticktext=runs)
    fig.update_layout(barmode="group", bargap=0.25, height=height,
                      margin={"t": 80, "b": 70, "l": 10},
                      legend={"orientation": "h", "x": 0, "y": -30 / height, "yanchor": "top"},
                      title="filters: each run's first layer against random filters and chance")
    return fig


def coverage_figure(found: Sequence[tuple[RunView, str, pd.DataFrame]],
                    labels: Sequence[str]) -> Any:
    """Per run (rows): share of its fitted filters per orientation bin and per frequency bin."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    count = 180 // ORIENTATION_BIN
    orient, freq, o_text, f_text = [], [], [], []
    for _, _, units in found:
        fitted = units[units["gabor_status"] == "ok"]
        n = max(len(fitted), 1)
        counts = np.bincount(orientation_bins(orientations(units)), minlength=count)
        fcounts, _ = np.histogram(fitted["gabor_frequency"].astype(float).clip(
            0, FREQUENCY_EDGES[-1] - 1e-9), bins=FREQUENCY_EDGES)
        orient.append(counts / n)
        freq.append(fcounts / n)
        o_text.append([str(c) for c in counts])
        f_text.append([str(c) for c in fcounts])
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.04,
                        subplot_titles=["orientation θ of the Gabor fit (°)",
                                        "frequency of the fit (cycles/px)"])
    ys = list(labels)
    fig.add_trace(go.Heatmap(z=orient, x=np.arange(count) * ORIENTATION_BIN, y=ys,
                             text=o_text, texttemplate="%{text}", colorscale="Blues",
                             zmin=0, showscale=False,
                             hovertemplate="%{y}: θ %{x}°, %{text} filters"), row=1, col=1)
    centres = (FREQUENCY_EDGES[:-1] + FREQUENCY_EDGES[1:]) / 2
    fig.add_trace(go.Heatmap(z=freq, x=np.round(centres, 3), y=ys, text=f_text,
                             texttemplate="%{text}", colorscale="Blues", zmin=0,
                             showscale=False,
                             hovertemplate="%{y}: f %{x}, %{text} filters"), row=1, col=2)
    fig.update_yaxes(autorange="reversed")
    fig.update_yaxes(showticklabels=False, row=1, col=2)  # the run names are on the left
    fig.update_layout(height=max(220, 90 + 36 * len(ys)), margin={"t": 50, "l": 10})
    return fig


def _pair(row: pd.Series) -> np.ndarray | None:
    """A filter's map beside its Gabor fit on the map's colour scale (a white gap between)."""
    from probe.plugins.analyses.filters.views import kernel, magnify

    spatial = kernel(row)
    if spatial is None:
        return None
    fit = kernel(row, "fit") if row.get("gabor_status") == "ok" else None
    top = float(np.abs(spatial).max()) or 1.0
    right = np.clip(fit, -top, top) if fit is not None else np.zeros_like(spatial)
    both = np.hstack([spatial, np.zeros((spatial.shape[0], 1), np.float32), right])
    return magnify(images.signed_map(both), 48)


def gallery(run: RunView, layer: str, units: pd.DataFrame, label: str) -> Picture | None:
    """The first :data:`GALLERY` filters of ``layer``, each beside its fitted Gabor."""
    tiles = [t for t in (_pair(row) for _, row in units.head(GALLERY).iterrows())
             if t is not None]
    if not tiles:
        return None
    grid = images.tile_grid(tiles, min(GALLERY_COLUMNS, len(tiles)), gap=4)
    ok = units["gabor_status"] == "ok"
    median = units.loc[ok, "gabor_r2"].median() if ok.any() else math.nan
    note = f"median R² {median:.3f}" if np.isfinite(median) else \
        f"no fit ({units['gabor_status'].iloc[0]})"
    more = f"first {len(tiles)} of {len(units)}" if len(units) > len(tiles) else \
        f"{len(tiles)} filters"
    return Picture(images.png_bytes(grid), f"{label} · {layer}: {more}, {note}")


def components_picture(run: RunView, layer: str) -> tuple[tuple[int, int], Picture] | None:
    """The first :data:`COMPONENTS` natural-patch PCA components at ``layer``'s kernel size."""
    from probe.plugins.analyses.filters.views import magnify

    rows = run.table(NAME, "components", layer=layer)
    if rows is None or rows.empty:
        return None
    rows = rows[rows["basis"] == "pca"].sort_values("index").head(COMPONENTS)
    if rows.empty:
        return None
    h, w = int(rows["kernel_h"].iloc[0]), int(rows["kernel_w"].iloc[0])
    tiles = [magnify(images.signed_map(np.asarray(v, np.float32)[:h * w].reshape(h, w)), 48)
             for v in rows["values"]]
    return (h, w), Picture(images.png_bytes(images.tile_grid(tiles, len(tiles), gap=4)),
                           f"PCA of natural patches, {h}×{w}: components 1–{len(tiles)}")


def compare_figures(runs: Sequence[RunView]) -> list[Any]:
    """Each run's first filter layer side by side: table, bars, coverage, galleries."""
    found, notes = collect(runs)
    if not found:
        return notes
    frame = comparison_frame(found)
    labels = list(frame["run"])
    out: list[Any] = [*notes, Table(
        frame, caption="One row per run, its first layer with filters of its own: median "
        "Gabor R² of the fitted filters and the share above the threshold, each beside seeded "
        "random filters of the same shape; mean share of filter energy in the span of the top-3 "
        "natural-patch PCA components and of the Gaussian derivatives of order ≤ 1 beside "
        "chance (dim/k²) and random filters; mean best |cos| in a quadrature Gabor bank; "
        "redundancy (best |cos| with another filter under rotations and flips); how many "
        f"{ORIENTATION_BIN}° orientation bins (centred on 0°, {ORIENTATION_BIN}°, …) the "
        "Gabor-like filters (R² above the threshold) fill, and their median frequency.",
        name="filters-compare", labels=LABELS, formats=FORMATS)]
    out.append(Figure(bars_figure(frame), caption="Blue: the run's first layer; grey: seeded "
                      "random filters of the same shape; black marks: chance dim/k². An "
                      "engineered Gabor bank sits at R² 1; a first layer near the grey bars "
                      "is no more Gabor-like than noise.", name="filters-compare-bars"))
    out.append(Figure(coverage_figure(found, labels), caption="Rows: runs. Cells: number of "
                      "fitted filters (colour: share of the layer's fitted filters) per "
                      f"{ORIENTATION_BIN}° of fitted orientation (bins centred on the ticks) "
                      "and per 0.05 cycles/px of frequency — a V1-like layer covers every "
                      "orientation.",
                      name="filters-compare-coverage"))
    pictures = [p for (run, layer, units), label in zip(found, labels, strict=True)
                if (p := gallery(run, layer, units, label)) is not None]
    if pictures:
        out.append(Pictures(pictures, caption="Each run's first-layer filters, each one (left) "
                            "beside its best-fitting Gabor (right) on the filter's colour "
                            "scale: blue negative, white 0, red positive.",
                            name="filters-compare-gallery"))
    components: dict[tuple[int, int], Picture] = {}
    for run, layer, _ in found:
        if (made := components_picture(run, layer)) is not None:
            components.setdefault(*made)
    if components:
        out.append(Pictures(list(components.values()), caption="The leading principal "
                            "components of natural image patches at each kernel size above "
                            "(the PCA basis of the energy columns).",
                            name="filters-compare-pca"))
    return out
