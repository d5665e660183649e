"""The tables of ``concept-vectors`` from one layer's fitted vectors and scores.

* ``weights``: per layer, concept and unit, the vector's weight on the raw
  activations (``weight``: ``Σ_k weight·a_k`` is the direction in the layer's raw
  channel space), the weight as fitted (``fitted_weight``), its share of ``Σ|w|``
  and its rank by ``|w|`` within the concept;
* ``concepts``: per layer and concept, the vector's held-out set IoU beside the
  best single unit's, how many units carry the weight, pixels and images;
* ``layers``: per layer, the means and the share of concepts the vector wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

TABLES: dict[str, tuple[str, ...]] = {
    "weights": ("layer", "concept", "label", "unit", "weight", "fitted_weight", "share",
                "rank"),
    "concepts": ("layer", "concept", "label", "category", "iou", "best_unit",
                 "best_unit_iou", "gain", "units_50", "units_90", "train_pixels",
                 "heldout_pixels", "train_iou", "best_unit_train_iou", "wins", "alpha",
                 "bias", "fitted_bias", "train_images", "heldout_images"),
    "layers": ("layer", "units", "concepts", "images", "train_images", "heldout_images",
               "mean_iou", "mean_best_unit_iou", "mean_gain", "wins", "mean_units_50",
               "mean_units_90", "steps", "batch"),
}


def empty_tables() -> dict[str, pd.DataFrame]:
    """Every declared table with its columns and no rows."""
    return {name: pd.DataFrame(columns=list(cols)) for name, cols in TABLES.items()}


@dataclass
class LayerResult:
    """Everything the tables say about one layer (CPU tensors / plain values).

    Attributes:
        labels: ``Tensor[C]`` label ids of the fitted concepts.
        names, categories: their names and (concept table) categories.
        fitted, raw: ``Tensor[C, K]`` weights as fitted and on raw activations.
        fitted_bias, raw_bias: ``Tensor[C]``.
        iou, train_iou: ``Tensor[C]`` the vectors' held-out and training set IoU.
        best_unit: ``Tensor[C]`` the unit of best training IoU.
        best_unit_iou, best_unit_train_iou: ``Tensor[C]`` its held-out and training IoU.
        units_50, units_90: ``Tensor[C]`` fewest units holding 50 % / 90 % of ``Σ|w|``.
        alpha: ``Tensor[C]`` class-balancing weights.
        train_pixels, heldout_pixels: ``Tensor[C]`` concept pixels in scope.
        train_images, heldout_images: ``Tensor[C]`` images in scope.
        units, images, train_count, heldout_count, steps, batch: layer facts.
    """

    labels: torch.Tensor
    names: list[str]
    categories: list[str]
    fitted: torch.Tensor
    raw: torch.Tensor
    fitted_bias: torch.Tensor
    raw_bias: torch.Tensor
    iou: torch.Tensor
    train_iou: torch.Tensor
    best_unit: torch.Tensor
    best_unit_iou: torch.Tensor
    best_unit_train_iou: torch.Tensor
    units_50: torch.Tensor
    units_90: torch.Tensor
    alpha: torch.Tensor
    train_pixels: torch.Tensor
    heldout_pixels: torch.Tensor
    train_images: torch.Tensor
    heldout_images: torch.Tensor
    units: int
    images: int
    train_count: int
    heldout_count: int
    steps: int
    batch: int


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def layer_frames(layer: str, r: LayerResult) -> dict[str, pd.DataFrame]:
    """``weights``, ``concepts`` and ``layers`` rows of one layer."""
    concepts, units = int(r.fitted.shape[0]), r.units
    fitted = _np(r.fitted.double())
    mags = np.abs(fitted)
    totals = mags.sum(1, keepdims=True)
    share = np.divide(mags, totals, out=np.zeros_like(mags), where=totals > 0)
    order = np.argsort(-mags, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(1, units + 1)[None, :].repeat(concepts, 0), 1)
    labels = _np(r.labels).astype(np.int64)
    weights = pd.DataFrame({
        "layer": layer, "concept": np.repeat(np.array(r.names, dtype=object), units),
        "label": np.repeat(labels, units), "unit": np.tile(np.arange(units), concepts),
        "weight": _np(r.raw.double()).reshape(-1), "fitted_weight": fitted.reshape(-1),
        "share": share.reshape(-1), "rank": rank.reshape(-1).astype(np.int64)})
    iou, best = _np(r.iou), _np(r.best_unit_iou)
    gain = iou - best
    table = pd.DataFrame({
        "layer": layer, "concept": r.names, "label": labels, "category": r.categories,
        "iou": iou, "best_unit": _np(r.best_unit).astype(np.int64), "best_unit_iou": best,
        "gain": gain, "units_50": _np(r.units_50).astype(np.int64),
        "units_90": _np(r.units_90).astype(np.int64),
        "train_pixels": _np(r.train_pixels).astype(np.int64),
        "heldout_pixels": _np(r.heldout_pixels).astype(np.int64),
        "train_iou": _np(r.train_iou), "best_unit_train_iou": _np(r.best_unit_train_iou),
        "wins": np.nan_to_num(gain, nan=0.0) > 0, "alpha": _np(r.alpha.double()),
        "bias": _np(r.raw_bias.double()), "fitted_bias": _np(r.fitted_bias.double()),
        "train_images": _np(r.train_images).astype(np.int64),
        "heldout_images": _np(r.heldout_images).astype(np.int64)})

    def mean(values: np.ndarray) -> float:
        finite = values[np.isfinite(values)]
        return float(finite.mean()) if finite.size else float("nan")

    summary = pd.DataFrame([{
        "layer": layer, "units": units, "concepts": concepts, "images": r.images,
        "train_images": r.train_count, "heldout_images": r.heldout_count,
        "mean_iou": mean(iou), "mean_best_unit_iou": mean(best), "mean_gain": mean(gain),
        "wins": float(table["wins"].mean()) if concepts else float("nan"),
        "mean_units_50": mean(table["units_50"].to_numpy(float)),
        "mean_units_90": mean(table["units_90"].to_numpy(float)),
        "steps": r.steps, "batch": r.batch}])
    return {"weights": weights, "concepts": table, "layers": summary}
