"""Turning the ``equivariance`` sums into tidy tables.

Every builder takes explicit inputs: the run's :class:`~.sweep.Sweep`
(configuration) and the reduced sums (tensors and small sum states), in the
order the rows should come in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from .consistency import ConsistencySums
from .lie import OUTPUT, LieSums
from .ridge import GramState, fit_map, score_map
from .schema import TABLES
from .sweep import ErrorKey, Sweep, SweepKey

#: Full channel-mixing matrices are stored only for layers with at most this many units.
MAP_WEIGHTS_MAX_UNITS = 64

#: One learned map: its key and the Gram sums of its fit and held-out halves.
FittedMap = tuple[ErrorKey, GramState, GramState]


def _stride(sweep: Sweep, layer: str) -> float:
    grid = sweep.grids.get(layer)
    return float(grid.stride[1]) if grid is not None else math.nan


def error_table(sweep: Sweep, keys: Sequence[ErrorKey], errors: torch.Tensor,
                points: Sequence[SweepKey], images: torch.Tensor) -> pd.DataFrame:
    """The ``errors`` table: one row per (layer, transform, magnitude).

    Args:
        sweep: The run's sweep (transforms, grids, input width).
        keys: ``(layer, transform, magnitude)`` of each row of ``errors``.
        errors: ``Tensor[len(keys), 3]``: error², reference² and compared cells.
        points: ``(transform, magnitude)`` of each entry of ``images``.
        images: ``Tensor[len(points)]`` images measured.
    """
    counts = dict(zip(points, images.cpu().tolist(), strict=True))
    rows = []
    for (layer, name, magnitude), sums in zip(keys, errors.cpu(), strict=True):
        err, ref, cells = (float(v) for v in sums)
        transform = sweep.transform(name)
        pixels = transform.pixels(magnitude, sweep.width)
        grid = sweep.grids.get(layer)
        exact = grid is None or transform.is_exact(magnitude, grid)
        rows.append({
            "layer": layer, "transform": name, "magnitude": magnitude,
            "unit": transform.unit, "pixels": pixels,
            "stride": _stride(sweep, layer), "cells": pixels / _stride(sweep, layer)
            if grid is not None else math.nan,
            "relative_error": math.nan if cells == 0 else math.sqrt(err / ref) if ref > 0
            else (0.0 if err == 0 else math.inf),
            "error_sq": err, "reference_sq": ref, "valid_cells": cells,
            "images": int(counts[(name, magnitude)]), "exact_action": exact,
        })
    return pd.DataFrame(rows, columns=list(TABLES["errors"]))


def map_tables(ridge: float,
               fits: Sequence[FittedMap]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``learned_maps`` and ``learned_map_units`` tables (fit on even, score on odd)."""
    rows, unit_rows = [], []
    for (layer, name, magnitude), fit, held in fits:
        units = fit.xx.shape[0] - 1
        if fit.count > 0:
            weights = fit_map(fit, ridge)
            scores = score_map(weights, held)
            mixing = weights[:units].T.cpu().numpy()  # [out unit, source unit]
            bias = weights[units].cpu().numpy()
            partner = np.abs(mixing).argmax(1)
            strongest = mixing[np.arange(units), partner]
            share = np.abs(strongest) / np.maximum(np.abs(mixing).sum(1), 1e-300)
            unit_rows.append(pd.DataFrame({
                "layer": layer, "transform": name, "magnitude": magnitude,
                "unit": np.arange(units), "partner": partner, "weight": strongest,
                "share": share, "bias": bias}))
        else:
            nan = math.nan
            scores = {"learned": nan, "spatial": nan, "identity": nan, "positions": 0.0}
        rows.append({"layer": layer, "transform": name, "magnitude": magnitude,
                     "units": units, "one_minus_r2": scores["learned"],
                     "spatial_one_minus_r2": scores["spatial"],
                     "identity_one_minus_r2": scores["identity"],
                     "fit_positions": fit.count, "held_positions": scores["positions"],
                     "ridge": ridge})
    maps = pd.DataFrame(rows, columns=[*TABLES["learned_maps"], "ridge"])
    units = (pd.concat(unit_rows, ignore_index=True) if unit_rows else
             pd.DataFrame(columns=list(TABLES["learned_map_units"])))
    return maps, units


def weights_table(ridge: float, fits: Sequence[FittedMap]) -> pd.DataFrame:
    """The ``learned_map_weights`` table (full mixing matrices of small layers)."""
    frames = []
    for (layer, name, magnitude), fit, _ in fits:
        units = fit.xx.shape[0] - 1
        if fit.count <= 0 or units > MAP_WEIGHTS_MAX_UNITS:
            continue
        mixing = fit_map(fit, ridge)[:units].T.cpu().numpy()
        unit, source = np.meshgrid(np.arange(units), np.arange(units), indexing="ij")
        frames.append(pd.DataFrame({"layer": layer, "transform": name,
                                    "magnitude": magnitude, "unit": unit.ravel(),
                                    "source_unit": source.ravel(),
                                    "weight": mixing.ravel()}))
    return (pd.concat(frames, ignore_index=True) if frames else
            pd.DataFrame(columns=list(TABLES["learned_map_weights"])))


def lie_tables(sweep: Sweep,
               sums: Sequence[tuple[str, LieSums]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``lie`` and ``lie_attribution`` tables, one block per ``(transform, sums)``."""
    layer_rows, part_rows = [], []
    for name, lie in sums:
        transform = sweep.transform(name)
        per_pixel = transform.pixels(1.0, sweep.width)
        scale = 1.0 / per_pixel ** 2 if math.isfinite(per_pixel) else 1.0
        per = "input pixel" if math.isfinite(per_pixel) else transform.unit
        n = float(lie.images)
        total = float(lie.total)
        layers, norms = lie.layers.cpu().tolist(), lie.norms.cpu().tolist()
        for layer, lee, norm in zip(lie.order, layers, norms, strict=True):
            layer_rows.append({"layer": layer, "transform": name, "per": per,
                               "lee": lee * scale / n,
                               "relative": math.sqrt(lee * scale / norm) if norm > 0
                               else math.nan, "images": n})
        layer_rows.append({"layer": OUTPUT, "transform": name, "per": per,
                           "lee": total * scale / n, "relative": math.nan, "images": n})
        closure = math.sqrt(float(lie.closure) / total) if total > 0 else \
            math.sqrt(float(lie.closure))
        parts, dots = lie.parts.cpu().tolist(), lie.dots.cpu().tolist()
        for end, part, dot in zip(lie.ends, parts, dots, strict=True):
            part_rows.append({"layer": end, "transform": name, "per": per,
                              "contribution_sq": part * scale / n,
                              "share": dot / total if total > 0
                              else math.nan, "total_lee": total * scale / n,
                              "closure": closure, "images": n})
    return (pd.DataFrame(layer_rows, columns=list(TABLES["lie"])),
            pd.DataFrame(part_rows, columns=list(TABLES["lie_attribution"])))


def consistency_tables(sweep: Sweep,
                       sums: ConsistencySums) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``consistency`` summary and the neighbouring-shift ``shift_curve``."""
    s = {"agree": float(sums.agree), "pairs": float(sums.pairs),
         "correct": float(sums.correct)}
    steps = sweep.consistency_steps
    width = sweep.width
    task = "segmentation" if sweep.output_dims == 4 else "classification"
    labelled = float(sums.labelled)
    curve = []
    for k, (n, change, flipped) in enumerate(sums.steps.cpu().tolist()):
        curve.append({"step": k, "from_pixels": k, "to_pixels": k + 1,
                      "top1_change": flipped / n if n else math.nan,
                      "mean_abs_change": change / n if n else math.nan, "compared": n})
    curve_frame = pd.DataFrame(curve, columns=list(TABLES["shift_curve"]))
    compared = curve_frame["compared"].sum()
    summary = pd.DataFrame([{
        "task": task, "unit_compared": "pixel" if task == "segmentation" else "image",
        "accuracy": float(s["correct"]) / labelled if labelled else math.nan,
        "consistency": float(s["agree"]) / float(s["pairs"]) if float(s["pairs"]) else
        math.nan,
        "top1_change": float((curve_frame["top1_change"] * curve_frame["compared"]).sum()
                             / compared) if compared else math.nan,
        "mean_abs_change": float((curve_frame["mean_abs_change"]
                                  * curve_frame["compared"]).sum() / compared)
        if compared else math.nan,
        "max_offset_pixels": max(1, round(sweep.consistency_shift * width)),
        "steps": steps, "pairs": float(s["pairs"]),
    }], columns=list(TABLES["consistency"]))
    return summary, curve_frame
