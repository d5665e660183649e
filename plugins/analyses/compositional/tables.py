"""The tables of ``compositional`` from a layer's :class:`.search.SearchResult`.

* ``units``: per unit, the best single concept (``label``, ``label_iou``), the
  beam's best formula (``formula``, ``length``, ``iou``) and ``gain = iou −
  label_iou``;
* ``formulas``: per unit and length ``1..L``, the best formula of exactly that
  length, its IoU and its gain over the best single concept;
* ``layers``: per layer, the mean IoUs and gain, the share of units a formula
  improves, and the number of candidate formulas scored;
* ``parts_objects`` / ``parts_layers``: see :mod:`.parts`;
* ``exemplars``: see :mod:`.exemplars`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .exemplars import COLUMNS as EXEMPLAR_COLUMNS
from .search import SearchResult, formula_text

TABLES: dict[str, tuple[str, ...]] = {
    "units": ("layer", "unit", "threshold", "label", "label_iou", "formula", "length", "iou",
              "gain"),
    "formulas": ("layer", "unit", "length", "formula", "iou", "gain"),
    "layers": ("layer", "units", "images", "mean_label_iou", "mean_iou", "mean_gain",
               "improved", "formulas_scored"),
    "parts_objects": ("layer", "unit", "object", "object_iou", "formula", "length", "iou",
                      "own_parts", "terms"),
    "parts_layers": ("layer", "object_units", "own_parts", "mean_iou", "mean_object_iou"),
    "exemplars": EXEMPLAR_COLUMNS,
}


def empty_tables() -> dict[str, pd.DataFrame]:
    """Every declared table with its columns and no rows."""
    return {name: pd.DataFrame(columns=list(cols)) for name, cols in TABLES.items()}


def formulas_of(result: SearchResult, names: list[str]) -> list[list[str]]:
    """``[unit][length - 1]`` formula texts (``""`` where none was found)."""
    labels = result.labels.cpu().tolist()
    ops = result.operators.cpu().tolist()
    out = []
    for unit_labels, unit_ops in zip(labels, ops, strict=True):
        row = []
        for n, (lab, op) in enumerate(zip(unit_labels, unit_ops, strict=True)):
            chosen = lab[:n + 1]
            row.append("" if chosen[0] < 0 else formula_text(chosen, op[:n], names))
        out.append(row)
    return out


def best_lengths(iou: np.ndarray) -> np.ndarray:
    """Per unit, the length of the best formula (ties: the shorter; 0 when none)."""
    filled = np.where(np.isnan(iou), -1.0, iou)
    best = filled.argmax(1) + 1
    return np.where(filled.max(1) > 0, best, 0)


def layer_frames(layer: str, result: SearchResult, thresholds: torch.Tensor,
                 names: list[str], images: int) -> dict[str, pd.DataFrame]:
    """``units``, ``formulas`` and ``layers`` rows of one layer."""
    iou = result.iou.cpu().numpy()
    n_units, max_len = iou.shape
    texts = formulas_of(result, names)
    single = np.nan_to_num(iou[:, 0], nan=0.0)
    lengths = best_lengths(iou)
    pick = np.clip(lengths - 1, 0, None)
    best_iou = np.where(lengths > 0, iou[np.arange(n_units), pick], 0.0)
    units = pd.DataFrame({
        "layer": layer, "unit": np.arange(n_units),
        "threshold": thresholds.double().cpu().numpy(),
        "label": [t[0] for t in texts], "label_iou": single,
        "formula": [t[p] if n else "" for t, p, n in zip(texts, pick, lengths, strict=True)],
        "length": lengths.astype(np.int64), "iou": best_iou, "gain": best_iou - single})
    formulas = pd.DataFrame({
        "layer": layer, "unit": np.repeat(np.arange(n_units), max_len),
        "length": np.tile(np.arange(1, max_len + 1), n_units),
        "formula": [t for row in texts for t in row], "iou": iou.reshape(-1),
        "gain": (iou - single[:, None]).reshape(-1)})
    summary = pd.DataFrame([{
        "layer": layer, "units": n_units, "images": images,
        "mean_label_iou": float(single.mean()) if n_units else float("nan"),
        "mean_iou": float(best_iou.mean()) if n_units else float("nan"),
        "mean_gain": float((best_iou - single).mean()) if n_units else float("nan"),
        "improved": float(((best_iou - single) > 0).mean()) if n_units else float("nan"),
        "formulas_scored": int(result.scored)}])
    return {"units": units, "formulas": formulas, "layers": summary}
