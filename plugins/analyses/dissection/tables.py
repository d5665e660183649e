"""The tables of ``dissection``, built from its reduced state (pure functions of tensors).

Column meanings are in ``docs/dissection.md``. Every function here takes the
reduced counts (on any device) and returns pandas frames; nothing needs the
model (the hierarchy edges' model work is done in ``after_passes``, see
:mod:`.hierarchy`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from probe.stats import TopK

from .active import active_pixels
from .hierarchy import EDGE_COLUMNS
from .labels import LabelSpace, primary_categories
from .tally import LayerTally, iou

#: What a unit whose IoU is 0 for every label gets (``unlabelled`` option):
#: ``empty`` — label -1, empty name and category; ``lite`` — NetDissect-Lite's
#: label 0 (name ``""``) and the last category (its argsort tie).
UNLABELLED = ("empty", "lite")

QUANTILE_DEFINITION = ("torch.quantile(all raw activations of the unit, 1 - quantile, "
                       "interpolation='linear')")

TABLES: dict[str, tuple[str, ...]] = {
    "units": ("layer", "unit", "label", "name", "category", "iou", "is_detector", "threshold",
              "threshold_method", "threshold_error_bound", "quantile", "activations"),
    "labels": ("layer", "unit", "category", "rank", "label", "name", "iou", "intersection",
               "activation", "truth"),
    "summary": ("layer", "layer_index", "category", "units", "detectors", "unique_concepts",
                "share_of_units", "share_of_detectors"),
    "layers": ("layer", "layer_index", "units", "height", "width", "maps", "upsampled",
               "threshold_method", "threshold_memory_bytes", "rule", "iou_threshold",
               "quantile", "quantile_definition"),
    "exemplars": ("layer", "unit", "rank", "image", "activation", "active_pixels",
                  "mask_height", "mask_width", "mask"),
    "edges": EDGE_COLUMNS,
}


def empty_tables() -> dict[str, pd.DataFrame]:
    """Every table with its columns and no rows (nothing was dissected)."""
    return {name: pd.DataFrame(columns=list(cols)) for name, cols in TABLES.items()}


def unpack_mask(row: Any) -> np.ndarray:
    """The boolean ``[mask_height, mask_width]`` mask of an ``exemplars`` row."""
    h, w = int(row["mask_height"]), int(row["mask_width"])
    bits = np.unpackbits(np.frombuffer(row["mask"], dtype=np.uint8), count=h * w)
    return bits.reshape(h, w).astype(bool)


@dataclass(frozen=True)
class ThresholdInfo:
    """What ``end_pass(0)`` learnt about one layer's thresholds (the same on every rank)."""

    method: str
    bound: np.ndarray
    count: int
    memory: int


@dataclass(frozen=True)
class Scoring:
    """The label side of the scores, shared by every layer.

    Attributes:
        space: The label space.
        primary: ``Tensor[num_labels]`` primary category of each label.
        truth: ``Tensor[num_labels]`` int64 truth pixels (CPU).
        valid: ``Tensor[num_labels]`` bool, the label can be scored (not 0; seen,
            or in the concept table).
        rule: The activation-counting rule.
    """

    space: LabelSpace
    primary: torch.Tensor
    truth: torch.Tensor
    valid: torch.Tensor
    rule: str

    @classmethod
    def build(cls, space: LabelSpace, truth: torch.Tensor, coverage: torch.Tensor,
              rule: str, source: str = "coverage") -> Scoring:
        """From the reduced ``truth`` and ``coverage`` counts (``source``: the
        ``primary`` option, see :func:`.labels.primary_categories`)."""
        primary = primary_categories(coverage, space.default_category, source)
        truth = truth.cpu()
        valid = (truth > 0) | (torch.tensor(space.default_category) >= 0)
        valid[0] = False
        return cls(space, primary, truth, valid, rule)

    def scores(self, tally: LayerTally) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(IoU, intersection, activation)``, each ``Tensor[K, num_labels]`` on the CPU.

        Labels that cannot be scored get IoU ``-1``.
        """
        inter = tally.intersection.cpu()
        act = tally.activation_for(self.rule, self.primary).cpu()
        scores = iou(inter, act, self.truth.view(1, -1))
        return (torch.where(self.valid.view(1, -1), scores, torch.full_like(scores, -1.0)),
                inter, act)


def units_frame(layer: str, tally: LayerTally, scoring: Scoring, thresholds: torch.Tensor,
                info: ThresholdInfo, settings: Mapping[str, Any]) -> pd.DataFrame:
    """The ``units`` rows of one layer: each unit's best label overall."""
    space = scoring.space
    scores, _, _ = scoring.scores(tally)
    best_iou, best = scores.max(1)  # first maximum = lowest label id on ties
    best_iou = best_iou.clamp(min=0).numpy()
    has = best_iou > 0
    lite = settings.get("unlabelled", "empty") == "lite"
    label = np.where(has, best.numpy(), 0 if lite else -1)
    names = np.array(space.names, dtype=object)
    cats = np.array(space.categories, dtype=object)
    none_category = cats[-1] if lite and len(cats) else ""
    threshold = settings["iou_threshold"]
    detector = best_iou >= threshold if settings.get("detector_inclusive") else \
        best_iou > threshold
    return pd.DataFrame({
        "layer": layer, "unit": np.arange(tally.units),
        "label": label, "name": np.where(has, names[best.numpy()], ""),
        "category": np.where(has, cats[scoring.primary[best].numpy()], none_category),
        "iou": best_iou, "is_detector": detector & has,
        "threshold": thresholds.cpu().numpy(),
        "threshold_method": info.method, "threshold_error_bound": info.bound,
        "quantile": settings["quantile"], "activations": info.count,
    })


def labels_frame(layer: str, tally: LayerTally, scoring: Scoring, top: int) -> pd.DataFrame:
    """The ``labels`` rows of one layer: the ``top`` labels per unit and category."""
    space = scoring.space
    scores, inter, act = scoring.scores(tally)
    primary, valid, truth = scoring.primary, scoring.valid, scoring.truth
    names = np.array(space.names, dtype=object)
    parts: dict[str, list[np.ndarray]] = {k: [] for k in TABLES["labels"][1:]}
    for c, category in enumerate(space.categories):  # a handful of categories
        mine = (primary == c) & valid
        if not bool(mine.any()):
            continue
        masked = torch.where(mine.view(1, -1), scores, torch.full_like(scores, -2.0))
        order = masked.sort(dim=1, descending=True, stable=True).indices
        keep = min(top, int(mine.sum()))
        chosen = order[:, :keep]  # [K, keep]
        flat = chosen.flatten().numpy()
        parts["category"].append(np.full(len(flat), category, dtype=object))
        parts["rank"].append(np.tile(np.arange(keep), tally.units))
        parts["label"].append(flat)
        parts["name"].append(names[flat])
        parts["iou"].append(scores.gather(1, chosen).flatten().numpy())
        parts["intersection"].append(inter.gather(1, chosen).flatten().numpy())
        parts["activation"].append(act.gather(1, chosen).flatten().numpy())
        parts["truth"].append(truth[flat].numpy())
        parts["unit"].append(np.repeat(np.arange(tally.units), keep))
    if not parts["label"]:
        return pd.DataFrame(columns=list(TABLES["labels"]))
    columns = {k: np.concatenate(v) for k, v in parts.items()}
    return pd.DataFrame({"layer": layer, **columns}, columns=list(TABLES["labels"]))


def layer_row(layer: str, index: int, shape: tuple[int, int, int], tally: LayerTally,
              info: ThresholdInfo, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The ``layers`` row of one layer."""
    units, h, w = shape
    return {"layer": layer, "layer_index": index, "units": units, "height": h, "width": w,
            "maps": int(tally.maps), "upsampled": int(tally.upsampled),
            "threshold_method": info.method, "threshold_memory_bytes": info.memory,
            "rule": settings["rule"], "iou_threshold": settings["iou_threshold"],
            "quantile": settings["quantile"], "quantile_definition": QUANTILE_DEFINITION}


def summary_frame(units: pd.DataFrame, layers: Sequence[str],
                  categories: Sequence[str]) -> pd.DataFrame:
    """The ``summary`` table: detectors and unique concepts per layer and category."""
    per_layer = units.groupby("layer", sort=False).size().to_dict()
    det = units[units["is_detector"].to_numpy(dtype=bool)]
    det_per_layer = det.groupby("layer", sort=False).size().to_dict()
    grouped = det.groupby(["layer", "category"], sort=False)["label"]
    detectors, unique = grouped.size().to_dict(), grouped.nunique().to_dict()
    rows = []
    for index, layer in enumerate(layers):
        total = per_layer.get(layer, 0)
        if not total:
            continue
        found = det_per_layer.get(layer, 0)
        for category in categories:
            n = detectors.get((layer, category), 0)
            rows.append({
                "layer": layer, "layer_index": index, "category": category,
                "units": total, "detectors": n,
                "unique_concepts": int(unique.get((layer, category), 0)),
                "share_of_units": n / total,
                "share_of_detectors": n / found if found else 0.0,
            })
    return pd.DataFrame(rows, columns=list(TABLES["summary"]))


def exemplars_frame(layer: str, top: TopK, thresholds: torch.Tensor,
                    mask_size: tuple[int, int], downsample: str = "antialias") -> pd.DataFrame:
    """The ``exemplars`` rows of one layer, each with its thresholded mask (packed bits)."""
    values, indices = top.values.cpu(), top.indices.cpu()
    units, kept = values.shape
    h, w = mask_size
    maps = top.payload.flatten(0, 1).float()  # [units·kept, h0, w0]
    # the tallies' own sparse evaluation (one "image" of units·kept maps), so every mask
    # is exactly the pixels the counts saw, and only the active pixels are evaluated
    per_map = thresholds.to(maps.device).repeat_interleave(kept)
    _, which, pixel = active_pixels(maps.unsqueeze(0), per_map, (h, w), downsample)
    on_t = torch.zeros((units * kept, h * w), dtype=torch.bool, device=maps.device)
    on_t[which, pixel] = True
    on = on_t.view(-1, h, w).cpu().numpy()
    packed = np.packbits(on.reshape(len(on), -1), axis=1)
    filled = indices.flatten().numpy() >= 0
    return pd.DataFrame({
        "layer": layer,
        "unit": np.repeat(np.arange(units), kept), "rank": np.tile(np.arange(kept), units),
        "image": indices.flatten().numpy(), "activation": values.flatten().numpy(),
        "active_pixels": on.reshape(len(on), -1).sum(1),
        "mask_height": h, "mask_width": w,
        "mask": [row.tobytes() for row in packed],
    })[filled].reset_index(drop=True)
