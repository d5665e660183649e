"""What the dashboard and the report show of ``attribution`` (probe.views hooks).

Unit page: one row of pictures per method — each top image beside its signed
attribution map (red positive, blue negative). Layer page: the deconvnet (or
first stored) projection of the best image of each unit, linked to the unit
pages. Run level: integrated gradients' completeness error per layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from probe import views
from probe.views import RunView
from probe.views import images as img

NAME = "attribution"
TITLES = {"deconvnet": "deconvnet projection (Zeiler & Fergus)",
          "guided-backprop": "guided backpropagation", "gradient": "input gradient",
          "integrated-gradients": "integrated gradients (black baseline)",
          "grad-cam": "Grad-CAM (rectified, upsampled)"}
#: Short names for the unit page's method tabs.
TABS = {"deconvnet": "Deconvnet", "guided-backprop": "Guided backprop",
        "gradient": "Gradient", "integrated-gradients": "Integrated gradients",
        "grad-cam": "Grad-CAM"}
LAYER_UNITS = 24  # units shown on the layer page


def completeness(frame: pd.DataFrame) -> pd.Series:
    """``|total − (f_input − f_baseline)| / max(|f_input − f_baseline|, 1e-12)`` per row."""
    change = frame["f_input"] - frame["f_baseline"]
    return (frame["total"] - change).abs() / change.abs().clip(lower=1e-12)


def figures(tables: Mapping[str, pd.DataFrame]) -> list[Any]:
    import plotly.graph_objects as go

    heat = tables.get("heatmaps")
    if heat is None or heat.empty:
        return []
    ig = heat[heat["method"] == "integrated-gradients"]
    if ig.empty:
        return []
    fig = go.Figure()
    for layer in pd.unique(ig["layer"].to_numpy(dtype=object)):
        rows = ig[ig["layer"] == layer]
        fig.add_trace(go.Box(y=completeness(rows), name=str(layer), showlegend=False))
    fig.update_layout(title="integrated gradients: completeness error per exemplar",
                      yaxis_title="|Σ attribution − (f(x) − f(baseline))| / |f(x) − f(baseline)|",
                      yaxis_type="log", height=340)
    return [fig]


def _map(row: pd.Series) -> np.ndarray:
    return np.asarray(row["map"], dtype=np.float32).reshape(int(row["height"]),
                                                            int(row["width"]))


def pair_picture(image: Any, heat: np.ndarray) -> np.ndarray:
    """The image and its signed attribution map at the image's size, side by side."""
    rgb = img.to_rgb(image)
    height, width = rgb.shape[:2]
    up = img.upsample(heat, (height, width)) if heat.shape != (height, width) else heat
    gap = np.full((height, 2, 3), 255, dtype=np.uint8)
    pair = np.concatenate([rgb, gap, img.signed_map(up)], axis=1)
    return img.thumbnail(pair, max(128, 2 * max(height, width) + 2))


def unit_views(run: RunView, layer: str, unit: int) -> list[Any]:
    rows = run.unit_rows(NAME, "heatmaps", layer, unit)
    if rows is None or rows.empty:
        return []
    options: list[tuple[str, list[Any]]] = []
    for method in pd.unique(rows["method"].to_numpy(dtype=object)):
        pictures = []
        for _, row in rows[rows["method"] == method].sort_values("rank").iterrows():
            image = run.image(int(row["image"]))
            if image is None:
                return [views.Note(f"no exemplar images: {run.why_no_images()}")]
            caption = f"image {int(row['image'])}, activation {row['value']:.3g} at " \
                      f"cell ({int(row['cell_y'])}, {int(row['cell_x'])})"
            pictures.append(views.Picture(img.png_bytes(pair_picture(image, _map(row))),
                                          caption=caption))
        options.append((TABS.get(method, method), [views.Pictures(
            pictures, name=f"attribution-{method}",
            caption=f"{TITLES.get(method, method)} of the unit's peak activation on its "
                    f"top images (red positive, blue negative).")]))
    if len(options) == 1:
        return options[0][1]
    return [views.Choice(options, label="method", name="attribution-methods")]


def layer_views(run: RunView, layer: str) -> list[Any]:
    rows = run.table(NAME, "heatmaps", layer=layer)
    if rows is None or rows.empty:
        return []
    methods = pd.unique(rows["method"].to_numpy(dtype=object)).tolist()
    method = "deconvnet" if "deconvnet" in methods else methods[0]
    best = rows[(rows["method"] == method) & (rows["rank"] == 0)].sort_values("unit")
    pictures = []
    for _, row in best.head(LAYER_UNITS).iterrows():
        image = run.image(int(row["image"]))
        if image is None:
            return [views.Note(f"no exemplar images: {run.why_no_images()}")]
        pictures.append(views.Picture(img.png_bytes(pair_picture(image, _map(row))),
                                      caption=f"unit {int(row['unit'])}",
                                      href=run.unit_link(layer, int(row["unit"]))))
    shown = f" (the first {LAYER_UNITS} of {len(best)})" if len(best) > LAYER_UNITS else ""
    return [views.Pictures(pictures, name="attribution-layer",
                           caption=f"{TITLES.get(method, method)} of each unit's best "
                                   f"image{shown}.")]
