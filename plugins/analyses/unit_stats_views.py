"""Views of ``unit-stats``: activation statistics and top exemplars with their heat maps.

Pure functions of a :class:`~probe.views.RunView`, called by the view hooks of
:class:`~probe.plugins.analyses.unit_stats.UnitStats`; the dashboard and the
report render the blocks they return.
"""

from __future__ import annotations

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
from probe.views.format import format_value, layer_depth
from probe.views.plots import axes, cell, figure, layer_color, layer_order, subplots
from probe.views.run_view import RunView

NAME = "unit-stats"
#: An exemplar is cropped to its active region when that region covers less than this
#: share of the image.
CROP_SHARE = 0.5
#: Smallest height of an exemplar picture on the unit page (small images are magnified).
PICTURE_HEIGHT = 128
#: Units and images per unit of a layer's exemplar strips.
STRIP_UNITS, STRIP_IMAGES, STRIP_SIZE = 4, 4, 64

UNIT_LABELS = {"unit": "unit", "mean": "mean", "std": "std", "max": "max",
               "fraction_positive": "fraction positive", "count": "activations counted"}
UNIT_FORMATS = {"unit": "int", "fraction_positive": "percent", "count": "int"}


def _units(run: RunView, layer: str | None = None) -> pd.DataFrame | None:
    frame = run.table(NAME, "units", layer=layer)
    return None if frame is None or frame.empty else frame


def _top(run: RunView, layer: str, unit: int) -> pd.DataFrame:
    rows = run.unit_rows(NAME, "top_images", layer, unit)
    return pd.DataFrame() if rows is None else rows.sort_values("rank")


def _map(row: pd.Series) -> np.ndarray | None:
    """The stored activation map of a ``top_images`` row (``None``: none, or one cell)."""
    height, width = int(row.get("map_height", 0) or 0), int(row.get("map_width", 0) or 0)
    values = row.get("map")
    if values is None or height * width <= 1 or len(values) != height * width:
        return None  # a single cell says no more than the image does
    return images.stored_map(values, height, width)


def map_scale(rows: pd.DataFrame | list[dict[str, Any]]) -> float | None:
    """The heat-map scale of one unit: its best exemplar's map maximum (``None``: no maps).

    ``rows``: the unit's ``top_images`` rows, best first (a frame, or its records)."""
    records = rows.to_dict("records") if isinstance(rows, pd.DataFrame) else rows
    maps = [m for m in (_map(row) for row in records) if m is not None]
    if not maps:
        return None
    best = float(np.max(maps[0]))
    return best if best > 0 else max(float(np.max(m)) for m in maps)


def exemplar_picture(image: Any, activation: np.ndarray | None, scale: float | None,
                     height: int = 0, crop_share: float = CROP_SHARE) -> np.ndarray:
    """The image | its heat map (viridis, 0 → ``scale``) | colour bar, as ``uint8[h, w, 3]``.

    Cropped to the active region (:func:`probe.views.images.active_box`) when
    that region covers less than ``crop_share`` of the image; magnified
    (nearest neighbour) to at least ``height`` pixels.
    """
    if activation is None:
        out = images.to_rgb(image)
    else:
        size = tuple(int(s) for s in image.shape[-2:])
        up = images.upsample(activation, size)
        top, left, bottom, right = images.active_box(activation, size)
        if (bottom - top) * (right - left) < crop_share * size[0] * size[1]:
            image, up = image[:, top:bottom, left:right], up[top:bottom, left:right]
        out = images.heat_beside(image, up, scale)
    if height and out.shape[0] < height:
        out = images.thumbnail(out, round(out.shape[1] * height / out.shape[0]))
    return out


def _caption(run: RunView, row: Any) -> str:
    parts = [f"#{int(row['rank']) + 1}", f"image {int(row['image'])}",
             f"activation {format_value(float(row['value']))}"]
    name = run.class_name(int(row["label"])) if "label" in row else None
    if name is not None:
        parts.append(f"class {name}")
    return " · ".join(parts)


def unit_views(run: RunView, layer: str, unit: int) -> list[Any]:
    """The unit's statistics and its top exemplars with their heat maps."""
    out: list[Any] = []
    rows = run.unit_rows(NAME, "units", layer, unit)
    if rows is not None and not rows.empty:
        row = rows.iloc[0]
        out.append(Facts([(UNIT_LABELS[c], row[c]) for c in
                          ("mean", "std", "max", "fraction_positive", "count")],
                         name="unit-stats-facts",
                         formats={"fraction positive": "percent", "activations counted": "int"}))
    top = _top(run, layer, unit)
    if top.empty:
        return out
    problem = run.why_no_images()
    if problem is not None:
        out.append(Note(f"Exemplar images cannot be shown: {problem}.", "warning"))
        frame = top[[c for c in ("rank", "image", "value", "label") if c in top]].copy()
        frame["rank"] = frame["rank"].astype(int) + 1
        out.append(Table(frame.reset_index(drop=True), caption="The unit's top images (data-set "
                         "index and peak activation).", name="unit-stats-top",
                         labels={"value": "activation", "label": "class"},
                         formats={"rank": "int", "image": "int", "label": "int"}))
        return out
    scale = map_scale(top)
    pictures = []
    for _, row in top.iterrows():
        image = run.image(int(row["image"]))
        if image is None:
            continue
        pixels = exemplar_picture(image, _map(row), scale, PICTURE_HEIGHT)
        pictures.append(Picture(images.png_bytes(pixels), _caption(run, row)))
    out.append(Pictures(pictures, caption="Top exemplars, best first: each image beside the "
                        "unit's activation map (viridis, 0 dark to the best exemplar's peak "
                        "yellow; bar on the right); small active regions are cropped.",
                        name="unit-stats-exemplars"))
    return out


def _href_column(run: RunView, layer: str, frame: pd.DataFrame) -> dict[str, Any]:
    """``links``/``hidden`` arguments of a Table whose ``unit`` column links to unit pages."""
    hrefs = [run.unit_link(layer, int(u)) for u in frame["unit"]]
    if not any(hrefs):
        return {}
    frame["href"] = hrefs
    return {"links": {"unit": "href"}, "hidden": ("href",)}


def exemplar_strip(pairs: Sequence[tuple[Any, np.ndarray | None]], scale: float | None,
                   size: int = STRIP_SIZE) -> np.ndarray:
    """Exemplars in a row above their heat maps, one colour bar on the right."""
    tops, bottoms = [], []
    for image, activation in pairs:
        rgb = images.to_rgb(image)
        tops.append(images.thumbnail(rgb, size))
        level = np.zeros(rgb.shape[:2], np.float32) if activation is None else \
            images.upsample(activation, rgb.shape[:2])
        bottoms.append(images.thumbnail(images.heat(level, scale), size))
    grid = images.tile_grid(tops + bottoms, columns=len(tops))
    bar = images.colour_bar(grid.shape[0], max(4, size // 10))
    gap = np.full((grid.shape[0], 3, 3), 255, np.uint8)
    return np.concatenate([grid, gap, bar], axis=1)


def layer_views(run: RunView, layer: str) -> list[Any]:
    """The strongest units' exemplar strips and a sortable table of the layer's units."""
    units = _units(run, layer)
    if units is None:
        return []
    out: list[Any] = []
    top = run.table(NAME, "top_images", layer=layer)
    if top is not None and not top.empty and run.why_no_images() is None:
        best = top[top["rank"] == 0].sort_values("value", ascending=False).head(STRIP_UNITS)
        chosen = top[top["unit"].isin(best["unit"].tolist())].sort_values(["unit", "rank"])
        by_unit: dict[int, list[dict[str, Any]]] = {}
        for record in chosen.to_dict("records"):  # each unit's rows, best first
            by_unit.setdefault(int(record["unit"]), []).append(record)
        pictures = []
        for unit in best["unit"].tolist():
            rows = by_unit.get(int(unit), [])[:STRIP_IMAGES]
            pairs = [(run.image(int(r["image"])), _map(r)) for r in rows]
            pairs = [(i, a) for i, a in pairs if i is not None]
            if pairs:
                peak = max(float(r["value"]) for r in rows)
                pictures.append(Picture(
                    images.png_bytes(exemplar_strip(pairs, map_scale(rows))),
                    f"unit {int(unit)}, top activation {format_value(peak)}",
                    href=run.unit_link(layer, int(unit))))
        if pictures:
            out.append(Pictures(pictures, caption=f"The {len(pictures)} units of {layer} whose "
                                "best exemplar activates most: top images above their "
                                "activation maps (viridis, scaled to each unit's best "
                                "exemplar).", name="unit-stats-strips"))
    frame = units[["unit", "mean", "std", "max", "fraction_positive"]].reset_index(drop=True)
    out.append(Table(frame, caption=f"Activation statistics of every unit of {layer} over "
                     "every position of every image.", name="unit-stats-units",
                     labels=UNIT_LABELS, formats=UNIT_FORMATS, sort=("max", True),
                     **_href_column(run, layer, frame)))
    return out


def activation_figure(units: pd.DataFrame, layers: Sequence[str]) -> Any:
    """Box plots per layer of each unit's maximum activation and fraction positive."""
    layout = subplots(1, 2, subplot_titles=(
        "maximum activation per unit", "fraction of positive activations per unit"))
    frame = units.assign(layer=units["layer"].astype(str))
    groups = dict(tuple(frame.groupby("layer", sort=False)))
    traces = []
    for i, layer in enumerate(layer_order(frame, layers=layers)):
        rows = groups.get(layer)
        if rows is None or rows.empty:
            continue
        color = layer_color(i)
        for col, column in ((1, "max"), (2, "fraction_positive")):
            traces.append({"type": "box", "y": rows[column].to_numpy(), "name": layer,
                           "marker": {"color": color}, "showlegend": False, **cell(1, col, 2)})
    layout["yaxis"]["title"] = {"text": "max activation"}
    layout["yaxis2"].update(title={"text": "fraction positive"}, tickformat=".0%")
    layout.update(height=380, margin={"t": 50})
    return figure(traces, layout)


def run_views(run: RunView) -> list[Any]:
    """One box per layer: each unit's maximum activation and fraction of positive values."""
    units = _units(run)
    if units is None:
        return []
    return [Figure(activation_figure(units, run.layers), caption="One box per layer, in "
                   "network order: the spread over units of the largest activation and of "
                   "the share of positive activations. Units whose maximum is at or below 0 "
                   "never fire.", name="unit-stats-activations")]


SUMMARY_LABELS = {"unit_stats_units": "units", "unit_stats_max": "mean max activation",
                  "unit_stats_positive": "mean fraction positive"}
SUMMARY_FORMATS = {"unit_stats_units": "int", "unit_stats_positive": "percent"}


def summary_frame(run: RunView) -> pd.DataFrame | None:
    """Per layer (network order): units, mean of the units' maxima and fraction positive.

    Kept in the run's memo (the layer summary and the comparison read it; treat it as
    read-only)."""
    return run.memo((NAME, "summary-frame"), lambda: _summary_frame(run))


def _summary_frame(run: RunView) -> pd.DataFrame | None:
    units = _units(run)
    if units is None:
        return None
    frame = units.assign(layer=units["layer"].astype(str))
    grouped = frame.groupby("layer", sort=False)
    out = pd.DataFrame({"unit_stats_units": grouped.size(),
                        "unit_stats_max": grouped["max"].mean(),
                        "unit_stats_positive": grouped["fraction_positive"].mean()})
    order = layer_order(frame, layers=[x for x in run.layers if x in out.index])
    return out.reindex(order).rename_axis("layer").reset_index()


def layer_summary(run: RunView) -> Table | None:
    """Units, mean maximum activation and mean fraction positive of each layer."""
    frame = summary_frame(run)
    if frame is None:
        return None
    return Table(frame, caption="unit-stats: per layer, the number of units and the means "
                 "over its units of the maximum activation and of the share of positive "
                 "activations.", name="unit-stats-layers", labels=SUMMARY_LABELS,
                 formats=SUMMARY_FORMATS)


def unit_columns(run: RunView, layer: str) -> UnitColumns | None:
    """Mean, maximum and fraction positive of each unit; sorted by the maximum."""
    units = _units(run, layer)
    if units is None:
        return None
    frame = units[["unit", "mean", "max", "fraction_positive"]].reset_index(drop=True)
    return UnitColumns(frame, labels={"mean": "mean activation", "max": "max activation",
                                      "fraction_positive": "fraction positive"},
                       formats={"fraction_positive": "percent"}, score="max")


def unit_thumbnails(run: RunView, layer: str, units: Sequence[int],
                    size: int = 96) -> dict[int, bytes]:
    """Each unit's best exemplar beside its heat map, cropped; longer side ``size`` pixels."""
    top = run.units_rows(NAME, "top_images", layer, units)
    if top is None or top.empty or run.why_no_images() is not None:
        return {}
    wanted = {int(u) for u in units}
    out: dict[int, bytes] = {}
    for unit, rows in top[top["unit"].isin(wanted)].groupby("unit"):
        row = rows.sort_values("rank").iloc[0]
        image = run.image(int(row["image"]))
        if image is None:
            continue
        pixels = exemplar_picture(image, _map(row), map_scale(rows))
        out[int(unit)] = images.png_bytes(images.thumbnail(pixels, size))
    return out


def headlines(run: RunView) -> list[Any]:
    """Units analysed, layers, and the share of dead units (maximum ≤ 0 on every image)."""
    units = _units(run)
    if units is None:
        return []
    layers = units["layer"].astype(str).nunique()
    dead = units["max"] <= 0
    top_k = run.options(NAME).get("top_k")
    detail = f"{top_k} top images kept per unit" if top_k else f"in {layers} layers"
    return [Headline("units analysed", len(units), detail, "int"),
            Headline("layers analysed", layers, format="int"),
            Headline("dead units", float(dead.mean()), f"{int(dead.sum()):,} units whose "
                     "activation never exceeds 0", "percent")]


def compare_figures(runs: Sequence[RunView]) -> list[Any]:
    """Mean maximum activation and fraction positive by relative depth, one line per run."""
    frames = [(run, summary_frame(run)) for run in runs]
    frames = [(run, f) for run, f in frames if f is not None]
    if len(frames) < 2:
        return []
    columns = ("unit_stats_max", "unit_stats_positive")
    layout = subplots(1, 2, subplot_titles=tuple(SUMMARY_LABELS[c] for c in columns))
    traces = []
    for i, (run, frame) in enumerate(frames):
        depth = layer_depth(list(frame["layer"]))
        for col, column in enumerate(columns, start=1):
            traces.append({
                "type": "scatter", "x": [depth[x] for x in frame["layer"]],
                "y": frame[column].to_numpy(), "text": frame["layer"].to_numpy(),
                "mode": "lines+markers", "name": run.label, "legendgroup": run.label,
                "showlegend": col == 1, "line": {"color": layer_color(i)},
                "hovertemplate": "%{text}: %{y:.4g}", **cell(1, col, 2)})
    for axis in axes(layout, "x"):
        layout[axis].update(title={"text": "relative depth (first layer 0, last 1)"},
                            range=[-0.05, 1.05])
    layout["yaxis2"]["tickformat"] = ".0%"
    layout["height"] = 360
    return [Figure(figure(traces, layout), caption="One line per run; runs of different depth "
                   "line up by relative depth.", name="unit-stats-compare")]
