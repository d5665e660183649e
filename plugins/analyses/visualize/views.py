"""What the dashboard and the report show of ``visualize`` (probe.views hooks).

Unit page: the unit's optimised image(s) with the value reached and its ratio to
the best data-set image. Layer page: every unit's first image in one grid
(Microscope's layer view), each linked to its unit page, and, when the run
visualised concept directions, a grid of those images labelled by concept. The
Units page and the layer summary read the unit images only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from probe import views
from probe.views import RunView
from probe.views import images as img

NAME = "visualize"
MEASURES = ("value", "best_data", "ratio")
LABELS = {"value": "objective reached", "best_data": "best data-set value",
          "ratio": "ratio to the best image"}


def picture(row: pd.Series, size: int = 96) -> np.ndarray:
    """The stored image as ``uint8[H, W, 3]`` (pixel-mode inputs rescaled to [0, 1])."""
    array = np.asarray(row["pixels"], dtype=np.float32).reshape(
        int(row["channels"]), int(row["height"]), int(row["width"]))
    if array.max() > 1.0 or array.min() < 0.0:  # uint8 pixels, or a raw model input
        low, high = float(array.min()), float(array.max())
        array = array / 255.0 if low >= 0 and high > 1 else (array - low) / max(high - low,
                                                                                  1e-12)
    return img.thumbnail(img.to_rgb(array), size)


def _caption(row: pd.Series) -> str:
    ratio = "" if not np.isfinite(row["ratio"]) else f", {row['ratio']:.2f}× the best image"
    return f"objective {row['value']:.3g}{ratio}"


def split(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(unit rows, concept rows)`` (a run from before concept directions has units only)."""
    if "concept" not in rows.columns:
        return rows, rows.iloc[:0]
    concept = rows["concept"].fillna("").astype(str) != ""
    return rows[~concept], rows[concept]


def unit_views(run: RunView, layer: str, unit: int) -> list[Any]:
    rows = run.unit_rows(NAME, "images", layer, unit)
    if rows is None or rows.empty:
        return []
    rows, _ = split(rows)
    if rows.empty:
        return []
    objective = run.options(NAME).get("objective", "channel")
    pictures = [views.Picture(img.png_bytes(picture(row, 160)), caption=_caption(row))
                for _, row in rows.sort_values("index").iterrows()]
    return [views.Pictures(pictures, name="visualization",
                           caption=f"Images optimised to maximise the unit's {objective} "
                                   f"objective (Lucid recipe).")]


def layer_views(run: RunView, layer: str) -> list[Any]:
    rows = run.table(NAME, "images", layer=layer)
    if rows is None or rows.empty:
        return []
    units, concepts = split(rows)
    blocks: list[Any] = []
    first = units[units["index"] == 0].sort_values("unit")
    if not first.empty:
        pictures = [views.Picture(img.png_bytes(picture(row)),
                                  caption=f"unit {int(row['unit'])}",
                                  href=run.unit_link(layer, int(row["unit"])))
                    for _, row in first.iterrows()]
        blocks.append(views.Pictures(
            pictures, name="visualization-grid",
            caption=f"Every unit's feature visualisation; median ratio to the best data-set "
                    f"image {float(np.nanmedian(first['ratio'])):.2f}."))
    if not concepts.empty:
        objective = run.options(NAME).get("objective", "direction")
        measure = "cosine with" if "cossim" in objective else "dot product with"
        pictures = [views.Picture(img.png_bytes(picture(row)),
                                  caption=f"{row['concept']} · {_caption(row)}")
                    for _, row in concepts.sort_values(["concept", "index"],
                                                       kind="stable").iterrows()]
        blocks.append(views.Pictures(
            pictures, name="visualization-concepts",
            caption=f"Images optimised along each concept vector of the layer ({objective} "
                    f"objective: the activation vector's {measure} the concept's direction, "
                    f"averaged over positions); median ratio to the "
                    f"best data-set image {float(np.nanmedian(concepts['ratio'])):.2f}."))
    return blocks


def _unit_measures(run: RunView, layer: str | None = None) -> pd.DataFrame | None:
    """The first image of each unit (concept rows left out), or ``None``."""
    rows = run.table(NAME, "images", columns=["layer", "unit", "concept", "index", *MEASURES],
                     layer=layer)
    if rows is None or rows.empty:
        return None
    units, _ = split(rows)
    units = units[units["index"] == 0]
    return None if units.empty else units


def unit_columns(run: RunView, layer: str) -> views.UnitColumns | None:
    units = _unit_measures(run, layer)
    if units is None:
        return None
    return views.UnitColumns(units[["unit", *MEASURES]].reset_index(drop=True), labels=LABELS,
                             formats={"value": "fixed3", "best_data": "fixed3",
                                      "ratio": "fixed2"}, score="ratio")


def layer_summary(run: RunView) -> views.Table | None:
    units = _unit_measures(run)
    if units is None:
        return None
    summary = units.assign(layer=units["layer"].astype(str)).groupby("layer", sort=False)[
        list(MEASURES)].mean().reset_index()
    summary.columns = ["layer", *(f"mean {LABELS[c]}" for c in MEASURES)]
    return views.Table(summary, caption=f"{NAME} per layer (unit images)",
                       name=f"{NAME}-layers")
