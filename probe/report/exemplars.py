"""Unit exemplars: each chosen unit's top images, with its activation map overlaid.

Exemplar tables hold data set indices (``layer, unit, rank, image`` and, where
stored, a flattened activation ``map`` with ``map_height``/``map_width``); the
images come from reloading the run's data set from its manifest. Units are
chosen per layer: detector units with the highest IoU when a concept table
(``layer, unit, iou`` and a label column) is present, else the units whose top
exemplar activates most.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from probe.store import Run

EXEMPLAR_COLUMNS = ("layer", "unit", "rank", "image")
LABEL_COLUMNS = ("label_name", "label", "concept", "name")


@dataclass
class UnitStrip:
    """One unit's exemplars as one embedded picture."""

    layer: str
    unit: int
    caption: str
    pixels: np.ndarray  # uint8 [H, W, 3]


def exemplar_table(run: Run) -> pd.DataFrame | None:
    """The run's exemplar table (one with a stored map preferred), or ``None``."""
    best = None
    for analysis, table in run.tables():
        frame = run.table(analysis, table)
        if all(c in frame.columns for c in EXEMPLAR_COLUMNS):
            if "map" in frame.columns:
                return frame
            best = frame if best is None else best
    return best


def concept_table(run: Run) -> pd.DataFrame | None:
    """A per-unit table with ``layer, unit, iou`` and a label column, or ``None``."""
    for analysis, table in run.tables():
        frame = run.table(analysis, table)
        columns = set(frame.columns)
        if {"layer", "unit", "iou"} <= columns and "rank" not in columns \
                and any(c in columns for c in LABEL_COLUMNS):
            if frame.duplicated(["layer", "unit"]).any():
                continue
            return frame
    return None


def choose_units(exemplars: pd.DataFrame, concepts: pd.DataFrame | None, layer: str,
                 count: int) -> list[tuple[int, str]]:
    """Up to ``count`` ``(unit, caption)`` pairs of one layer, best first."""
    if concepts is not None:
        rows = concepts[concepts["layer"] == layer].sort_values("iou", ascending=False)
        flag = next((c for c in ("detector", "is_detector") if c in rows.columns), None)
        if flag is not None and rows[flag].astype(bool).any():
            rows = rows[rows[flag].astype(bool)]
        label = next(c for c in LABEL_COLUMNS if c in rows.columns)
        out = []
        for row in rows.head(count).itertuples(index=False):
            record = row._asdict()
            category = f" ({record['category']})" if "category" in record else ""
            out.append((int(record["unit"]),
                        f"unit {record['unit']}: {record[label]}{category}, "
                        f"IoU {record['iou']:.3f}"))
        if out:
            return out
    rows = exemplars[(exemplars["layer"] == layer) & (exemplars["rank"] == 0)]
    if "value" in rows.columns:
        rows = rows.sort_values("value", ascending=False)
    out = []
    for row in rows.head(count).itertuples(index=False):
        record = row._asdict()
        value = f", top activation {record['value']:.3g}" if "value" in record else ""
        out.append((int(record["unit"]), f"unit {record['unit']}{value}"))
    return out


def _to_rgb(image: Any) -> np.ndarray:
    """``Tensor[C, H, W]`` in [0, 1] → ``float32 [H, W, 3]``."""
    array = np.asarray(image.detach().cpu().float().numpy() if hasattr(image, "detach")
                       else image, dtype=np.float32)
    if array.ndim == 2:
        array = array[None]
    array = np.clip(array[:3], 0.0, 1.0).transpose(1, 2, 0)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return array


def _resize(array: np.ndarray, size: int, smooth: bool) -> np.ndarray:
    from PIL import Image

    mode = Image.BILINEAR if smooth else Image.NEAREST
    image = Image.fromarray(array.astype(np.float32))
    return np.asarray(image.resize((size, size), mode), dtype=np.float32)


def overlay(image: np.ndarray, activation: np.ndarray | None, scale: float,
            size: int) -> np.ndarray:
    """Thumbnail of ``image`` (``[H, W, 3]`` in [0, 1]) with ``activation`` in red.

    Args:
        activation: ``[h, w]`` map (any resolution) or ``None``.
        scale: Activation value shown fully red (the unit's top value).
        size: Side of the thumbnail in pixels.
    """
    base = np.stack([_resize(image[..., c], size, smooth=image.shape[0] >= size)
                     for c in range(3)], axis=2)
    if activation is None or activation.size <= 1 or scale <= 0:
        return base
    heat = np.clip(_resize(activation, size, smooth=True) / scale, 0.0, 1.0)[..., None]
    red = np.zeros_like(base)
    red[..., 0] = 1.0
    alpha = 0.65 * heat
    return base * (1 - alpha) * (0.55 + 0.45 * (1 - heat)) + red * alpha


def unit_strips(run: Run, dataset: Any, per_layer: int = 4, images: int = 4,
                size: int = 64) -> list[UnitStrip]:
    """Exemplar strips for up to ``per_layer`` units of every layer of ``run``.

    Args:
        dataset: The run's data set reloaded (indexable, samples with ``image``).
    """
    exemplars = exemplar_table(run)
    if exemplars is None or dataset is None:
        return []
    concepts = concept_table(run)
    layers = [layer for layer in run.manifest.get("layers", [])
              if layer in set(exemplars["layer"])]
    cache: dict[int, np.ndarray] = {}
    strips = []
    gap = np.ones((size, 3, 3), dtype=np.float32)
    for layer in layers:
        rows = exemplars[exemplars["layer"] == layer]
        for unit, caption in choose_units(rows, concepts, layer, per_layer):
            top = rows[rows["unit"] == unit].sort_values("rank").head(images)
            scale = float(top["value"].max()) if "value" in top.columns else 1.0
            tiles = []
            for record in top.to_dict("records"):
                index = int(record["image"])
                if index < 0 or index >= len(dataset):
                    continue
                if index not in cache:
                    cache[index] = _to_rgb(dataset[index]["image"])
                activation = None
                if record.get("map") is not None and record.get("map_height"):
                    activation = np.asarray(record["map"], dtype=np.float32).reshape(
                        int(record["map_height"]), int(record["map_width"]))
                tiles.append(overlay(cache[index], activation, scale, size))
                tiles.append(gap)
            if not tiles:
                continue
            strip = np.concatenate(tiles[:-1], axis=1)
            strips.append(UnitStrip(layer, unit, caption,
                                    (np.clip(strip, 0, 1) * 255).round().astype(np.uint8)))
    return strips
