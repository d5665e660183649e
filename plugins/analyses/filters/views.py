"""Views of ``filters``: each filter and its Gabor fit, colour filter grids, layer summaries.

Pure functions of a :class:`~probe.views.RunView`, called by the view hooks of
:class:`~probe.plugins.analyses.filters.analysis.Filters`. Layer names that
only repeat another layer's filters (a ReLU or pool after a convolution,
``layers.same_filters_as``) say so instead of showing the same filters again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from probe.views import images
from probe.views.blocks import (
    Facts,
    Figure,
    Headline,
    Note,
    Picture,
    Pictures,
    Table,
    UnitColumns,
)
from probe.views.format import format_value
from probe.views.plots import figure, layer_order, vline
from probe.views.run_view import RunView

NAME = "filters"
#: Smallest side of one magnified filter tile (so 3×3 and 5×5 kernels are visible).
TILE = 24
#: Side of a single filter's picture on the unit page.
PICTURE = 96
#: Filters shown in a layer's grid.
GRID_UNITS = 256

UNIT_LABELS = {"unit": "unit", "gabor_status": "Gabor fit", "gabor_r2": "Gabor R²",
               "gabor_frequency": "frequency (cycles/px)", "orientation": "orientation (°)",
               "separability": "colour separability", "bank_cos": "best bank |cos|",
               "redundancy_cos": "redundancy |cos|", "redundancy_partner": "most similar filter",
               "redundancy_transform": "under"}
UNIT_FORMATS = {"unit": "int", "gabor_r2": "fixed3", "gabor_frequency": "fixed3",
                "orientation": "int", "separability": "fixed3", "bank_cos": "fixed3",
                "redundancy_cos": "fixed3", "redundancy_partner": "int"}


def _units(run: RunView, layer: str | None = None) -> pd.DataFrame | None:
    frame = run.table(NAME, "units", layer=layer)
    return None if frame is None or frame.empty else frame


def _layer_row(run: RunView, layer: str) -> pd.Series | None:
    frame = run.table(NAME, "layers", layer=layer)
    return None if frame is None or frame.empty else frame.iloc[0]


def repeated_layers(run: RunView) -> dict[str, str]:
    """``{layer: first layer with the same filters}`` for names that repeat a convolution."""
    frame = run.table(NAME, "layers", columns=["layer", "same_filters_as"])
    if frame is None or "same_filters_as" not in frame:
        return {}
    rows = frame[frame["same_filters_as"].notna()
                 & (frame["same_filters_as"].astype(str) != frame["layer"].astype(str))]
    return dict(zip(rows["layer"].astype(str), rows["same_filters_as"].astype(str),
                    strict=True))


def kernel(row: pd.Series, column: str = "map") -> np.ndarray | None:
    """A stored filter of a ``units`` row: ``map``/``fit`` ``[h, w]``, ``weights`` ``[C, h, w]``."""
    values = row.get(column)
    h, w = int(row["kernel_h"]), int(row["kernel_w"])
    if values is None or len(values) == 0 or len(values) % (h * w):
        return None
    array = np.asarray(values, dtype=np.float32)
    return array.reshape(h, w) if column != "weights" else array.reshape(-1, h, w)


def magnify(rgb: np.ndarray, side: int = TILE) -> np.ndarray:
    """``rgb`` enlarged by a whole factor (crisp pixels) so its shorter side is ≥ ``side``."""
    factor = max(1, math.ceil(side / min(rgb.shape[:2])))
    return images.thumbnail(rgb, max(rgb.shape[:2]) * factor) if factor > 1 else rgb


def rgb_grid(rows: pd.DataFrame, side: int = TILE) -> tuple[np.ndarray, int]:
    """The colour filters of ``rows`` (``weights`` of 3 channels) as one grid of RGB tiles.

    0 is mid-grey and each filter's largest absolute weight reaches black or
    white (:func:`probe.views.images.rgb_filter`), each tile magnified to at
    least ``side`` pixels. Returns the grid and its number of columns.
    """
    tiles = [magnify(images.rgb_filter(kernel(row, "weights")), side)
             for _, row in rows.iterrows()]
    columns = min(16, max(1, math.ceil(math.sqrt(len(tiles)))))
    return images.tile_grid(tiles, columns), columns


def signed_grid(rows: pd.DataFrame, side: int = TILE) -> np.ndarray:
    """The SVD-reduced maps of ``rows`` as signed tiles (blue −, white 0, red +) in a grid."""
    tiles = [magnify(images.signed_map(kernel(row)), side) for _, row in rows.iterrows()]
    return images.tile_grid(tiles, min(16, max(1, math.ceil(math.sqrt(len(tiles))))))


def _is_rgb(row: pd.Series) -> bool:
    weights = kernel(row, "weights") if "weights" in row else None
    return weights is not None and weights.shape[0] == 3


def unit_views(run: RunView, layer: str, unit: int) -> list[Any]:
    """The unit's filter, its colour filter and Gabor fit, and its measures."""
    rows = run.unit_rows(NAME, "units", layer, unit)
    if rows is None:
        return []
    if rows.empty:
        return [Note(f"The filters analysis has no filter for layer {layer} (it looks at "
                     "2-D convolutions only).")]
    row = rows.iloc[0]
    h, w = int(row["kernel_h"]), int(row["kernel_w"])
    pictures = []
    spatial, fit = kernel(row), kernel(row, "fit")
    if spatial is not None:
        pictures.append(Picture(images.png_bytes(magnify(images.signed_map(spatial), PICTURE)),
                                f"filter {h}×{w} (SVD-reduced map; blue −, red +)"))
    if row.get("gabor_status") == "ok" and fit is not None:
        pictures.append(Picture(images.png_bytes(magnify(images.signed_map(fit), PICTURE)),
                                f"Gabor fit, R² {format_value(float(row['gabor_r2']), 'fixed3')}"))
    if _is_rgb(row):
        pictures.append(Picture(images.png_bytes(magnify(images.rgb_filter(
            kernel(row, "weights")), PICTURE)), "colour filter (grey = 0)"))
    out: list[Any] = [Pictures(pictures, caption="The filter, its Gabor fit (same colour "
                               "scale as the filter) and, for 3 input channels, the filter "
                               "in colour.", name="filters-unit")] if pictures else []
    if row.get("gabor_status") == "too_small":
        out.append(Note(f"A {h}×{w} kernel is too small for a 9-parameter Gabor fit."))
    theta = row.get("gabor_theta")
    items = [("Gabor fit", row.get("gabor_status")), ("Gabor R²", row.get("gabor_r2")),
             ("frequency (cycles/px)", row.get("gabor_frequency")),
             ("orientation (°)", math.degrees(float(theta)) if _known(theta) else None),
             ("colour separability", row.get("separability")),
             ("best bank |cos|", row.get("bank_cos")),
             ("redundancy |cos|", row.get("redundancy_cos"))]
    partner = row.get("redundancy_partner")
    if partner is not None and np.isfinite(float(partner)) and int(partner) >= 0:
        items.append(("most similar filter",
                      f"unit {int(partner)} ({row.get('redundancy_transform')})"))
    out.append(Facts([(k, v) for k, v in items if _known(v)], name="filters-facts",
                     formats={"Gabor R²": "fixed3", "frequency (cycles/px)": "fixed3",
                              "orientation (°)": "int", "colour separability": "fixed3",
                              "best bank |cos|": "fixed3", "redundancy |cos|": "fixed3"}))
    return out


def _known(value: Any) -> bool:
    """Whether a value is worth a line (not missing, not NaN)."""
    if value is None:
        return False
    return not (isinstance(value, float | np.floating) and math.isnan(value))


def _links(run: RunView, layer: str, frame: pd.DataFrame) -> dict[str, Any]:
    hrefs = [run.unit_link(layer, int(u)) for u in frame["unit"]]
    if not any(hrefs):
        return {}
    frame["href"] = hrefs
    return {"links": {"unit": "href"}, "hidden": ("href",)}


def r2_figure(units: pd.DataFrame, layer_row: pd.Series | None) -> Any:
    """Histogram of the layer's Gabor R², with the random filters' median and the threshold."""
    fitted = units[units["gabor_status"] == "ok"]
    histogram = {"type": "histogram", "x": fitted["gabor_r2"].to_numpy(),
                 "xbins": {"start": 0, "end": 1, "size": 0.05},
                 "marker": {"color": "#1f77b4"}, "name": "learned filters"}
    shapes, notes = [], []
    if layer_row is not None:
        for column, text, dash in (("gabor_r2_random_median", "random filters' median", "dot"),
                                   ("r2_threshold", "Gabor-like above", "dash")):
            value = layer_row.get(column)
            if value is not None and np.isfinite(float(value)):
                shape, note = vline(float(value), text, dash)
                shapes.append(shape)
                notes.append(note)
    layout: dict[str, Any] = {"shapes": shapes, "annotations": notes} if shapes else {}
    layout.update(xaxis={"title": {"text": "Gabor R²"}, "range": [0, 1]},
                  yaxis={"title": {"text": "filters"}}, height=300, margin={"t": 30})
    return figure([histogram], layout)


def layer_views(run: RunView, layer: str) -> list[Any]:
    """The layer's filters as a grid (colour for 3 input channels), R² spread, units table."""
    from probe.plugins.analyses.filters.figures import filter_grid_figure

    info = _layer_row(run, layer)
    if info is not None and info.get("status") == "no_convolution":
        return [Note(f"{layer} has no spatial filters (no 2-D convolution makes it).")]
    same = repeated_layers(run).get(layer)
    if same is not None:
        return [Note(f"{layer} has the same filters as {same}; see {same}.")]
    units = _units(run, layer)
    if units is None:
        return []
    units = units.sort_values("unit")
    shown = units.head(GRID_UNITS)
    more = f" (the first {len(shown)} of {len(units)})" if len(units) > len(shown) else ""
    h, w = int(units["kernel_h"].iloc[0]), int(units["kernel_w"].iloc[0])
    out: list[Any] = []
    if _is_rgb(shown.iloc[0]):
        grid, _ = rgb_grid(shown)
        out.append(Pictures([Picture(images.png_bytes(grid), f"{len(shown)} colour filters "
                                     f"{h}×{w}{more}")],
                            caption="Each filter in colour: mid-grey is 0, each filter's "
                            "largest weight reaches black or white (as in Krizhevsky et al. "
                            "2012).", name="filters-rgb"))
    fitted = units["gabor_status"] == "ok"
    if fitted.any():
        out.append(Figure(filter_grid_figure(units, layer), caption="Each filter's map "
                          "(left) beside its Gabor fit (right), both divided by the map's "
                          "largest |value|; hover for unit and R².", name="filters-grid"))
        out.append(Figure(r2_figure(units, info), caption="Spread of the Gabor R² over the "
                          "layer's fitted filters; the dotted line is the median of seeded "
                          "random filters of the same shape (chance).", name="filters-r2"))
    elif not _is_rgb(shown.iloc[0]):
        out.append(Pictures([Picture(images.png_bytes(signed_grid(shown)),
                                     f"{len(shown)} filters {h}×{w}{more}")],
                            caption="Each filter's SVD-reduced map: blue negative, white 0, "
                            "red positive.", name="filters-maps"))
    if not fitted.any():
        status = units["gabor_status"].iloc[0]
        out.append(Note(f"No Gabor fit in {layer}: its {h}×{w} kernels are too small for a "
                        "9-parameter Gabor (under 5 px)." if status == "too_small" else
                        f"No Gabor fit in {layer} (status {status})."))
    frame = units.assign(orientation=np.degrees(units["gabor_theta"].astype(float))) \
        if "gabor_theta" in units else units
    frame = frame[[c for c in UNIT_LABELS if c in frame]].reset_index(drop=True)
    frame = frame.loc[:, [c for c in frame if not frame[c].isna().all()]]
    out.append(Table(frame, caption=f"The filters of {layer}: Gabor fit, colour separability "
                     "(σ₁²/Σσ²), best match in a quadrature Gabor bank, and the most similar "
                     "other filter under rotations and flips.", name="filters-units",
                     labels=UNIT_LABELS, formats=UNIT_FORMATS,
                     sort=("gabor_r2", True) if "gabor_r2" in frame else None,
                     **_links(run, layer, frame)))
    return out


def run_views(run: RunView) -> list[Any]:
    """Learned vs random filters per layer, orientation/frequency of fits, basis energies."""
    from probe.plugins.analyses.filters.figures import (
        energy_curve_figure,
        orientation_frequency_figure,
        summary_figure,
    )

    repeats = set(repeated_layers(run))
    out: list[Any] = []
    layers = run.table(NAME, "layers")
    if layers is not None and not layers.empty:
        out.append(Figure(summary_figure(layers[~layers["layer"].isin(repeats)]),
                          caption="Per layer: median Gabor R², mean best |cos| with a "
                          "quadrature Gabor bank and mean redundancy (best |cos| with another "
                          "filter under rotations and flips), each beside the same measure on "
                          "seeded random filters (grey).", name="filters-summary"))
    units = _units(run)
    if units is not None and (units["gabor_status"] == "ok").any():
        out.append(Figure(orientation_frequency_figure(units[~units["layer"].isin(repeats)]),
                          caption="Each fitted filter: angle = twice its orientation, radius = "
                          "spatial frequency (cycles/px), marker size = R².",
                          name="filters-orientation"))
    energy = run.table(NAME, "energy")
    if energy is not None and not energy.empty:
        out.append(Figure(energy_curve_figure(energy[~energy["layer"].isin(repeats)]),
                          caption="Mean share of filter energy in the span of the first m "
                          "functions of each basis; chance dim/k² dashed, random filters "
                          "dotted.", name="filters-energy"))
    return out


SUMMARY_LABELS = {"filters_r2": "median Gabor R²", "filters_r2_random":
                  "median Gabor R², random filters", "filters_fitted": "share Gabor-fitted",
                  "filters_separability": "median colour separability"}
SUMMARY_FORMATS = {"filters_r2": "fixed3", "filters_r2_random": "fixed3",
                   "filters_fitted": "percent", "filters_separability": "fixed3"}
#: Columns of ``units`` the per-layer summary reads.
SUMMARY_COLUMNS = ("layer", "gabor_status", "gabor_r2", "separability")


def summary_frame(run: RunView) -> pd.DataFrame | None:
    """Per layer: median Gabor R² of fitted filters (and of random ones), share fitted,
    median separability; columns that are empty in every layer are left out. Kept in the
    run's memo (the layer summary and the comparison read it; treat it as read-only)."""
    return run.memo((NAME, "summary-frame"), lambda: _summary_frame(run))


def _summary_frame(run: RunView) -> pd.DataFrame | None:
    units = run.table(NAME, "units", columns=SUMMARY_COLUMNS)  # not the filters' maps
    if units is None or units.empty:
        return None
    frame = units.assign(layer=units["layer"].astype(str))
    ok = frame["gabor_status"] == "ok"
    grouped = frame.groupby("layer", sort=False)
    out = pd.DataFrame({
        "filters_r2": frame[ok].groupby("layer")["gabor_r2"].median(),
        "filters_fitted": ok.groupby(frame["layer"], sort=False).mean().astype(float),
        "filters_separability": grouped["separability"].median()})
    layers = run.table(NAME, "layers", columns=["layer", "gabor_r2_random_median"])
    if layers is not None and "gabor_r2_random_median" in layers:
        random = layers.assign(layer=layers["layer"].astype(str)).set_index("layer")
        out.insert(1, "filters_r2_random", random["gabor_r2_random_median"].reindex(out.index))
    present = set(pd.unique(frame["layer"].astype(str).to_numpy(dtype=object)).tolist())
    order = layer_order(frame, layers=[x for x in run.layers if x in present])
    out = out.reindex(order)
    out = out.loc[:, [c for c in out if not out[c].isna().all()]]
    return out.rename_axis("layer").reset_index()


def layer_summary(run: RunView) -> Table | None:
    """Median Gabor R² (learned and random), share fitted, median separability per layer."""
    frame = summary_frame(run)
    if frame is None:
        return None
    return Table(frame, caption="filters: per layer, the median Gabor R² of the fitted "
                 "filters next to seeded random filters, the share of filters large enough "
                 "to fit, and the median colour separability.", name="filters-layers",
                 labels=SUMMARY_LABELS, formats=SUMMARY_FORMATS)


def unit_columns(run: RunView, layer: str) -> UnitColumns | None:
    """Gabor R² (the default order), fit status and separability of each filter."""
    wanted = ["unit", "gabor_r2", "gabor_status", "separability"]
    units = run.table(NAME, "units", columns=["layer", *wanted], layer=layer)  # not the maps
    if units is None or units.empty:
        return None
    frame = units[wanted].reset_index(drop=True)
    score = "gabor_r2"
    if frame["gabor_r2"].isna().all():
        frame, score = frame.drop(columns=["gabor_r2"]), "separability"
    return UnitColumns(frame, labels={k: UNIT_LABELS[k] for k in frame if k != "unit"},
                       formats={"gabor_r2": "fixed3", "separability": "fixed3"}, score=score)


def unit_thumbnails(run: RunView, layer: str, units: Sequence[int],
                    size: int = 96) -> dict[int, bytes]:
    """Each unit's filter (in colour for 3 input channels, else its signed map), ``size`` px."""
    frame = _units(run, layer)
    if frame is None:
        return {}
    out: dict[int, bytes] = {}
    for _, row in frame[frame["unit"].isin([int(u) for u in units])].iterrows():
        pixels = images.rgb_filter(kernel(row, "weights")) if _is_rgb(row) else \
            images.signed_map(kernel(row)) if kernel(row) is not None else None
        if pixels is not None:
            out[int(row["unit"])] = images.png_bytes(images.thumbnail(pixels, size))
    return out


def headlines(run: RunView) -> list[Any]:
    """The first layer's median Gabor R² and energy in the PCA / derivative bases vs chance."""
    units = _units(run)
    if units is None:
        return []
    present = set(pd.unique(units["layer"].astype(str).to_numpy(dtype=object)).tolist())
    layer = layer_order(units, layers=[x for x in run.layers if x in present])[0]
    rows = units[units["layer"].astype(str) == layer]
    info = _layer_row(run, layer)
    h, w = int(rows["kernel_h"].iloc[0]), int(rows["kernel_w"].iloc[0])
    ok = rows["gabor_status"] == "ok"
    out: list[Any] = []
    if ok.any():
        random = info.get("gabor_r2_random_median") if info is not None else None
        detail = f"{layer}, {h}×{w} kernels" + (
            f"; random filters {format_value(float(random), 'fixed2')}"
            if random is not None and np.isfinite(float(random)) else "")
        out.append(Headline("median Gabor R², first layer",
                            float(rows.loc[ok, "gabor_r2"].median()), detail, "fixed2"))
    else:
        out.append(Headline("Gabor fit, first layer", str(rows["gabor_status"].iloc[0]),
                            f"{layer}, {h}×{w} kernels", "text"))
    energy = run.table(NAME, "energy", layer=layer)
    if energy is not None and not energy.empty:
        for basis, label in (("pca", "energy in the top-3 natural-image PCA components"),
                             ("derivative", "energy in Gaussian derivatives of order ≤ 1")):
            pick = energy[(energy["basis"] == basis) & (energy["dim"] == 3)]
            if pick.empty:
                continue
            e = pick.iloc[0]
            out.append(Headline(label, float(e["energy_mean"]),
                                f"{layer}; chance {format_value(float(e['chance']), 'percent')},"
                                f" random filters "
                                f"{format_value(float(e['random_mean']), 'percent')}",
                                "percent"))
    return out

