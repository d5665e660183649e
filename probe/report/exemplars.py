"""Unit exemplars: each chosen unit's top images, with its activation map overlaid.

Exemplar tables hold data set indices (``layer, unit, rank, image`` and, where
stored, a flattened activation ``map`` with ``map_height``/``map_width``, as
unit-stats writes, or a thresholded ``mask`` with ``mask_height``/``mask_width``,
as dissection writes); the images come from reloading the run's data set from
its manifest. Units are chosen per layer: detector units with the highest IoU
when a concept table (``layer, unit, iou`` and a label column) is present, else
the units whose top exemplar activates most.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from probe.store import Run

EXEMPLAR_COLUMNS = ("layer", "unit", "rank", "image")
LABEL_COLUMNS = ("label_name", "name", "concept", "label")
#: (payload column, height column, width column, shown fully red at) of exemplar tables.
PAYLOADS = (("map", "map_height", "map_width", None), ("mask", "mask_height", "mask_width", 1.0))
VALUE_COLUMNS = ("value", "activation")


@dataclass
class UnitStrip:
    """One unit's exemplars as one embedded picture."""

    layer: str
    unit: int
    caption: str
    pixels: np.ndarray  # uint8 [H, W, 3]


def exemplar_table(run: Run) -> pd.DataFrame | None:
    """The run's exemplar table (one with a stored map or mask preferred), or ``None``.

    Where a concept table exists, an exemplar table of the same analysis comes
    first (its exemplars are those of the units it labels).
    """
    concepts = concept_source(run)
    candidates = sorted(run.tables(), key=lambda pair: pair[0] != concepts)
    best = None
    for analysis, table in candidates:
        frame = run.table(analysis, table)
        if all(c in frame.columns for c in EXEMPLAR_COLUMNS):
            if any(p[0] in frame.columns for p in PAYLOADS):
                return frame
            best = frame if best is None else best
    return best


def concept_source(run: Run) -> str | None:
    """Name of the analysis holding the run's concept table, if any."""
    for analysis, table in run.tables():
        if _is_concept_table(run.table(analysis, table)):
            return analysis
    return None


def _is_concept_table(frame: pd.DataFrame) -> bool:
    columns = set(frame.columns)
    return {"layer", "unit", "iou"} <= columns and "rank" not in columns \
        and any(c in columns for c in LABEL_COLUMNS) \
        and not frame.duplicated(["layer", "unit"]).any()


def concept_table(run: Run) -> pd.DataFrame | None:
    """A per-unit table with ``layer, unit, iou`` and a label column, or ``None``."""
    for analysis, table in run.tables():
        frame = run.table(analysis, table)
        if _is_concept_table(frame):
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
    column = next((c for c in VALUE_COLUMNS if c in rows.columns), None)
    if column is not None:
        rows = rows.sort_values(column, ascending=False)
    out = []
    for row in rows.head(count).itertuples(index=False):
        record = row._asdict()
        value = f", top activation {record[column]:.3g}" if column else ""
        out.append((int(record["unit"]), f"unit {record['unit']}{value}"))
    return out


def _payload(value: Any, height: int, width: int) -> np.ndarray:
    """A stored map as ``float32 [height, width]``: floats, or bits packed into bytes."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        bits = np.unpackbits(np.frombuffer(bytes(value), dtype=np.uint8), count=height * width)
        return bits.reshape(height, width).astype(np.float32)
    return np.asarray(value, dtype=np.float32).reshape(height, width)


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
    payload = next((p for p in PAYLOADS if p[0] in exemplars.columns), None)
    value_column = next((c for c in VALUE_COLUMNS if c in exemplars.columns), None)
    layers = [layer for layer in run.manifest.get("layers", [])
              if layer in set(exemplars["layer"])]
    cache: dict[int, np.ndarray] = {}
    strips = []
    gap = np.ones((size, 3, 3), dtype=np.float32)
    for layer in layers:
        rows = exemplars[exemplars["layer"] == layer]
        for unit, caption in choose_units(rows, concepts, layer, per_layer):
            top = rows[rows["unit"] == unit].sort_values("rank").head(images)
            scale = 1.0
            if payload is not None and payload[3] is not None:
                scale = payload[3]
            elif value_column is not None:
                scale = float(top[value_column].max())
            tiles = []
            for record in top.to_dict("records"):
                index = int(record["image"])
                if index < 0 or index >= len(dataset):
                    continue
                if index not in cache:
                    cache[index] = _to_rgb(dataset[index]["image"])
                activation = None
                if payload is not None and record.get(payload[0]) is not None \
                        and record.get(payload[1]):
                    activation = _payload(record[payload[0]], int(record[payload[1]]),
                                          int(record[payload[2]]))
                tiles.append(overlay(cache[index], activation, scale, size))
                tiles.append(gap)
            if not tiles:
                continue
            strip = np.concatenate(tiles[:-1], axis=1)
            strips.append(UnitStrip(layer, unit, caption,
                                    (np.clip(strip, 0, 1) * 255).round().astype(np.uint8)))
    return strips
