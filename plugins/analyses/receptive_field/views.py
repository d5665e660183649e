"""What the dashboard and the report show of ``receptive-field`` (probe.views hooks).

Run level: theoretical vs effective size per layer (one figure, one table).
Layer page: the layer's numbers and its effective field as a heat map with the
theoretical and the effective square drawn on it. Unit page: the unit's
numbers and its top exemplars (from ``unit-stats``, when the run has it) with
the receptive field of the cell where the unit peaked drawn as a box.
The report is compact: the run-level figure and table only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from probe import views
from probe.views import RunView
from probe.views import images as img

NAME = "receptive-field"
EXEMPLARS = "unit-stats"
THEORETICAL = (220, 40, 40)  # red: the theoretical field
EFFECTIVE = (250, 200, 0)    # yellow: the effective square


def size_figure(layers: pd.DataFrame) -> Any:
    """Theoretical size (per axis) and effective size per layer, in input pixels."""
    import plotly.graph_objects as go

    fig = go.Figure()
    names = layers["layer"].astype(str).tolist()
    fig.add_trace(go.Scatter(x=names, y=layers["size_y"], mode="lines+markers",
                             name="theoretical (rows)"))
    if not np.allclose(layers["size_x"], layers["size_y"]):
        fig.add_trace(go.Scatter(x=names, y=layers["size_x"], mode="lines+markers",
                                 name="theoretical (columns)"))
    fig.add_trace(go.Scatter(x=names, y=layers["effective_size"], mode="lines+markers",
                             name="effective (2·radius + 1)"))
    fig.update_layout(title="receptive field per layer", xaxis_title="layer",
                      yaxis_title="input pixels", height=360)
    return fig


def figures(tables: Mapping[str, pd.DataFrame]) -> list[Any]:
    layers = tables.get("layers")
    return [] if layers is None or layers.empty else [size_figure(layers)]


def _summary_table(layers: pd.DataFrame) -> views.Table:
    columns = ["layer", "size_y", "size_x", "jump_y", "jump_x", "start_y", "start_x",
               "effective_size", "exact"]
    return views.Table(
        layers[columns], name="fields",
        caption="Theoretical size, jump and start (input pixels, rows/columns) and the "
                "effective size (the square holding the chosen share of the gradient mass); "
                "'exact' is false where the arithmetic met an unknown size change.",
        labels={"size_y": "size (rows)", "size_x": "size (cols)", "jump_y": "jump (rows)",
                "jump_x": "jump (cols)", "start_y": "start (rows)", "start_x": "start (cols)",
                "effective_size": "effective size"},
        formats={"size_y": "fixed2", "size_x": "fixed2", "jump_y": "fixed2",
                 "jump_x": "fixed2", "start_y": "fixed2", "start_x": "fixed2",
                 "effective_size": "fixed2"})


def run_views(run: RunView) -> list[Any]:
    layers = run.table(NAME, "layers")
    if layers is None or layers.empty:
        return []
    share = run.options(NAME).get("share", 0.9)
    return [views.Figure(size_figure(layers), name="sizes",
                         caption=f"Theoretical receptive field (convolution arithmetic) and "
                                 f"effective field (the square around the centre cell holding "
                                 f"{share:.0%} of the mean |∂ centre / ∂ input|), per layer."),
            _summary_table(layers)]


def report_sections(run: RunView) -> list[views.Section]:
    return [views.Section(NAME, run_views(run), analysis=NAME)]


def _square(centre: float, radius: float) -> tuple[float, float]:
    return centre - radius - 0.5, centre + radius + 0.5


def _map_figure(row: pd.Series, pixels: pd.DataFrame) -> Any:
    import plotly.graph_objects as go

    height, width = int(pixels["y"].max()) + 1, int(pixels["x"].max()) + 1
    grid = np.zeros((height, width))
    grid[pixels["y"].to_numpy(), pixels["x"].to_numpy()] = pixels["gradient"].to_numpy()
    fig = go.Figure(go.Heatmap(z=grid, colorscale="Viridis",
                               colorbar={"title": "|∂ centre / ∂ x|"}))
    cy, cx = float(row["centre_y"]), float(row["centre_x"])
    y0, y1 = _square(cy, (float(row["size_y"]) - 1) / 2)
    x0, x1 = _square(cx, (float(row["size_x"]) - 1) / 2)
    fig.add_shape(type="rect", x0=x0, x1=x1, y0=y0, y1=y1, line={"color": "red"})
    if np.isfinite(row["effective_radius"]):
        e = float(row["effective_radius"])
        (ey0, ey1), (ex0, ex1) = _square(cy, e), _square(cx, e)
        fig.add_shape(type="rect", x0=ex0, x1=ex1, y0=ey0, y1=ey1,
                      line={"color": "gold", "dash": "dash"})
    fig.update_yaxes(autorange="reversed", range=[height - 0.5, -0.5], scaleanchor="x")
    fig.update_xaxes(range=[-0.5, width - 0.5])
    fig.update_layout(title=f"effective receptive field of {row['layer']}", height=380)
    return fig


def layer_views(run: RunView, layer: str) -> list[Any]:
    rows = run.table(NAME, "layers", layer=layer)
    if rows is None or rows.empty:
        return []
    row = rows.iloc[0]
    blocks: list[Any] = [views.Facts(
        [("theoretical size", f"{row['size_y']:g} × {row['size_x']:g} px"),
         ("jump", f"{row['jump_y']:g} × {row['jump_x']:g} px"),
         ("start", f"({row['start_y']:g}, {row['start_x']:g})"),
         ("effective size", float(row["effective_size"])),
         ("images", int(row["images"]))], formats={"effective size": "fixed2"})]
    if not bool(row["exact"]):
        blocks.append(views.Note("The arithmetic met a size change it cannot follow (adaptive "
                                 "pooling, interpolation or a reshape): the theoretical field "
                                 "is an estimate.", level="warning"))
    pixels = run.table(NAME, "maps", layer=layer)
    if pixels is not None and not pixels.empty and int(row["images"]) > 0:
        blocks.append(views.Figure(_map_figure(row, pixels), name="effective-map",
                                   caption="Mean |∂ centre cell / ∂ input| over images (summed "
                                           "over input channels); red: theoretical field of "
                                           "the centre cell, dashed gold: effective square."))
    units = run.table(NAME, "units", layer=layer)
    if units is not None and not units.empty:
        import plotly.express as px

        fig = px.histogram(units, x="effective_size", nbins=30,
                           title=f"effective size of each unit of {layer}")
        fig.update_layout(height=300, xaxis_title="effective size (px)", yaxis_title="units")
        blocks.append(views.Figure(fig, name="unit-sizes",
                                   caption="Each unit's own effective field (its centre "
                                           "cell's input gradient)."))
    return blocks


def _outline(rgb: np.ndarray, box: tuple[int, int, int, int], colour: tuple[int, int, int],
             width: int = 1) -> np.ndarray:
    """``rgb`` with the rectangle ``(top, left, bottom, right)`` (exclusive) drawn on it."""
    out = rgb.copy()
    top, left, bottom, right = box
    h, w = out.shape[:2]
    top, left = max(0, top), max(0, left)
    bottom, right = min(h, bottom), min(w, right)
    if bottom <= top or right <= left:
        return out
    out[top:min(top + width, bottom), left:right] = colour
    out[max(bottom - width, top):bottom, left:right] = colour
    out[top:bottom, left:min(left + width, right)] = colour
    out[top:bottom, max(right - width, left):right] = colour
    return out


def field_picture(image: Any, row: pd.Series, peak: tuple[int, int], layer_row: pd.Series,
                  effective_radius: float, size: int = 128) -> np.ndarray:
    """An exemplar with the fields of cell ``peak`` drawn (red theoretical, yellow effective)."""
    rgb = img.to_rgb(image)
    height, width = rgb.shape[:2]
    factor = size / max(height, width)
    big = img.thumbnail(rgb, size)
    cy = float(layer_row["start_y"]) + float(layer_row["jump_y"]) * peak[0] \
        if bool(layer_row["spatial"]) else float(layer_row["centre_y"])
    cx = float(layer_row["start_x"]) + float(layer_row["jump_x"]) * peak[1] \
        if bool(layer_row["spatial"]) else float(layer_row["centre_x"])

    def scaled(ry: float, rx: float) -> tuple[int, int, int, int]:
        # input pixel p covers [p·factor, (p + 1)·factor) of the enlarged picture
        return (round((cy - ry) * factor), round((cx - rx) * factor),
                round((cy + ry + 1) * factor), round((cx + rx + 1) * factor))

    out = big
    if np.isfinite(effective_radius):
        out = _outline(out, scaled(effective_radius, effective_radius), EFFECTIVE, 2)
    # the theoretical box on top: where the two coincide, red shows
    return _outline(out, scaled((float(layer_row["size_y"]) - 1) / 2,
                                (float(layer_row["size_x"]) - 1) / 2), THEORETICAL, 2)


def field_box(peak: tuple[int, int], layer_row: pd.Series) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` (bottom/right exclusive) in input pixels: the
    theoretical receptive field of layer cell ``peak`` (may reach past the image)."""
    spatial = bool(layer_row["spatial"])
    cy = float(layer_row["start_y"]) + float(layer_row["jump_y"]) * peak[0] if spatial \
        else float(layer_row["centre_y"])
    cx = float(layer_row["start_x"]) + float(layer_row["jump_x"]) * peak[1] if spatial \
        else float(layer_row["centre_x"])
    ry, rx = (float(layer_row["size_y"]) - 1) / 2, (float(layer_row["size_x"]) - 1) / 2
    return (round(cy - ry), round(cx - rx), round(cy + ry) + 1, round(cx + rx) + 1)


def field_crop(image: Any, peak: tuple[int, int], layer_row: pd.Series,
               size: int = 96) -> np.ndarray:
    """The part of ``image`` the cell ``peak`` can see (its theoretical field; grey where
    the field reaches past the image, as padding does), enlarged to ``size`` px: what
    NetDissect and Microscope show of a unit's exemplar."""
    rgb = img.to_rgb(image)
    top, left, bottom, right = field_box(peak, layer_row)
    out = np.full((bottom - top, right - left, 3), 128, dtype=np.uint8)
    h, w = rgb.shape[:2]
    y0, x0, y1, x1 = max(0, top), max(0, left), min(h, bottom), min(w, right)
    if y1 > y0 and x1 > x0:
        out[y0 - top:y1 - top, x0 - left:x1 - left] = rgb[y0:y1, x0:x1]
    return img.thumbnail(out, size)


def _peak(row: pd.Series, layer_row: pd.Series) -> tuple[int, int]:
    """The layer cell where the unit peaked on this exemplar (from the stored map)."""
    h, w = int(row.get("map_height", 0) or 0), int(row.get("map_width", 0) or 0)
    if h * w <= 1 or row.get("map") is None:
        return (0, 0)
    stored = np.asarray(row["map"], dtype=np.float32).reshape(h, w)
    i, j = np.unravel_index(int(stored.argmax()), stored.shape)
    full_h, full_w = int(layer_row["map_height"]), int(layer_row["map_width"])
    return (min(full_h - 1, int((i + 0.5) * full_h / h)),
            min(full_w - 1, int((j + 0.5) * full_w / w)))


def unit_views(run: RunView, layer: str, unit: int) -> list[Any]:
    rows = run.table(NAME, "layers", layer=layer)
    if rows is None or rows.empty:
        return []
    layer_row = rows.iloc[0]
    unit_rows = run.unit_rows(NAME, "units", layer, unit)
    radius = float(unit_rows.iloc[0]["effective_radius"]) \
        if unit_rows is not None and not unit_rows.empty else float(layer_row["effective_radius"])
    blocks: list[Any] = [views.Facts(
        [("theoretical size", f"{layer_row['size_y']:g} × {layer_row['size_x']:g} px"),
         ("effective size", 2 * radius + 1)], formats={"effective size": "fixed2"})]
    top = run.unit_rows(EXEMPLARS, "top_images", layer, unit)
    if top is None or top.empty:
        blocks.append(views.Note("Run unit-stats as well to see the receptive field on the "
                                 "unit's top images."))
        return blocks
    pictures, crops = [], []
    for _, row in top.sort_values("rank").iterrows():
        image = run.image(int(row["image"]))
        if image is None:
            blocks.append(views.Note(f"no exemplar images: {run.why_no_images()}"))
            return blocks
        peak = _peak(row, layer_row)
        pictures.append(views.Picture(
            img.png_bytes(field_picture(image, row, peak, layer_row, radius)),
            caption=f"image {int(row['image'])}, peak at cell {peak}"))
        crops.append(views.Picture(img.png_bytes(field_crop(image, peak, layer_row)),
                                   caption=f"image {int(row['image'])}"))
    blocks.append(views.Pictures(pictures, caption="Top images (unit-stats) with the receptive "
                                                   "field of the cell where the unit peaked: "
                                                   "red theoretical, yellow effective."))
    blocks.append(views.Pictures(crops, caption="The same exemplars cropped to that cell's "
                                                "theoretical field: what the unit can see "
                                                "(grey: past the image's border)."))
    return blocks
