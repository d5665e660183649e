"""The unit page's overlays: a unit's mask, each term's and its formula's, on its exemplars.

Read from the ``exemplars`` table (:mod:`.exemplars`); drawn with dissection's
exemplar overlay (:func:`probe.views.images.mask_overlay`: inside tinted and
outlined, outside dimmed). Without the data set's images the masks' pixel
counts are listed instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from probe.views.blocks import Note, Picture, Pictures, Table
from probe.views.format import format_value
from probe.views.images import mask_overlay, png_bytes, thumbnail, unpack_mask
from probe.views.run_view import RunView

ANALYSIS = "compositional"
#: Longer side of one overlay on the unit page, in pixels.
OVERLAY_SIZE = 128


def _what(record: dict[str, Any]) -> str:
    if record["role"] == "unit":
        return "unit"
    if record["role"] == "formula":
        return f"formula: {record['concept']}"
    return f"term {int(record['term']) + 1}: {record['concept']}"


def ordered(rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` by rank, then unit, terms in formula order, formula."""
    place = rows["role"].map({"unit": 0, "term": 1, "formula": 2})
    return rows.assign(_place=place).sort_values(["rank", "_place", "term"], kind="stable")


def overlay(image: Any, record: dict[str, Any], size: int = OVERLAY_SIZE) -> np.ndarray:
    """``uint8[h, w, 3]``: ``image`` with the row's mask tinted and outlined."""
    mask = unpack_mask(record["mask"], int(record["mask_height"]), int(record["mask_width"]))
    return thumbnail(mask_overlay(image, mask), size)


def _agreement(record: dict[str, Any], unit_pixels: int) -> str:
    union = unit_pixels + int(record["pixels"]) - int(record["overlap"])
    return format_value(int(record["overlap"]) / union if union else 0.0, "fixed3")


def mask_blocks(run: RunView, layer: str, unit: int) -> list[Any]:
    """Per exemplar image, the unit's mask, each term's and the formula's, as overlays."""
    rows = run.unit_rows(ANALYSIS, "exemplars", layer, unit)
    if rows is None or rows.empty:
        return []
    rows = ordered(rows)
    problem = run.why_no_images()
    if problem is None:
        out: list[Any] = []
        missing = []
        for rank, group in rows.groupby("rank", sort=True):
            records = group.to_dict("records")
            image = run.image(int(records[0]["image"]))
            if image is None:
                missing.append(int(records[0]["image"]))
                continue
            unit_px = next(int(r["pixels"]) for r in records if r["role"] == "unit")
            items = [Picture(png_bytes(overlay(image, r)), caption=(
                f"{_what(r)} · {format_value(int(r['pixels']))} px"
                + (f" · IoU with the unit here {_agreement(r, unit_px)}"
                   if r["role"] == "formula" else ""))) for r in records]
            out.append(Pictures(items, name=f"compositional-masks-{int(rank)}", caption=(
                f"#{int(rank) + 1} · image {int(records[0]['image'])}: "
                f"{format_value(int(records[0]['overlap']))} px where the unit and its formula "
                f"agree. Inside each yellow outline: the unit's mask (activation above its "
                f"threshold), each concept of the formula, the whole formula.")))
        if missing:
            out.append(Note(f"Images {', '.join(map(str, missing))} are not in the data set "
                            f"as reloaded here.", level="warning"))
        if len(out) > len(missing[:1]):  # some pictures were drawn
            return out
    frame = pd.DataFrame({"rank": rows["rank"].astype(int) + 1,
                          "image": rows["image"].astype(int),
                          "mask": [_what(r) for r in rows.to_dict("records")],
                          "pixels": rows["pixels"].astype(int),
                          "overlap": rows["overlap"].astype(int)})
    why = problem or "they are not in the data set"
    return [Note(f"The exemplar images cannot be shown: {why}; the masks' pixel counts "
                 f"follow.", level="warning"),
            Table(frame, name="compositional-masks", caption=(
                "Per exemplar image: the pixels of the unit's mask, of each term of its "
                "formula and of the formula, and where unit and formula agree (overlap)."),
                formats={"pixels": "int", "overlap": "int", "mask": "text"})]
