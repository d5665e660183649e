"""Turning the ``equivariance`` accumulator's sums into tidy tables."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch

from .lie import OUTPUT
from .ridge import fit_map, score_map
from .schema import TABLES

if TYPE_CHECKING:
    from .accumulator import EquivarianceAccumulator

#: Full channel-mixing matrices are stored only for layers with at most this many units.
MAP_WEIGHTS_MAX_UNITS = 64


def _stride(acc: EquivarianceAccumulator, layer: str) -> float:
    grid = acc.grids.get(layer)
    return float(grid.stride[1]) if grid is not None else math.nan


def error_table(acc: EquivarianceAccumulator) -> pd.DataFrame:
    """The ``errors`` table: one row per (layer, transform, magnitude)."""
    by_name = {t.name: t for t in acc.transforms}
    width = acc.input_size[1]  # type: ignore[index]
    rows = []
    for (layer, name, magnitude), sums in acc.errors.items():
        err, ref, cells = (float(v) for v in sums.cpu())
        transform = by_name[name]
        pixels = transform.pixels(magnitude, width)
        grid = acc.grids.get(layer)
        exact = grid is None or transform.is_exact(magnitude, grid)
        rows.append({
            "layer": layer, "transform": name, "magnitude": magnitude,
            "unit": transform.unit, "pixels": pixels,
            "stride": _stride(acc, layer), "cells": pixels / _stride(acc, layer)
            if grid is not None else math.nan,
            "relative_error": math.nan if cells == 0 else math.sqrt(err / ref) if ref > 0
            else (0.0 if err == 0 else math.inf),
            "error_sq": err, "reference_sq": ref, "valid_cells": cells,
            "images": acc.images.get((name, magnitude), 0), "exact_action": exact,
        })
    return pd.DataFrame(rows, columns=list(TABLES["errors"]))


def map_tables(acc: EquivarianceAccumulator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``learned_maps`` and ``learned_map_units`` tables (fit on even, score on odd)."""
    ridge = acc.settings["ridge"]
    rows, unit_rows = [], []
    for (layer, name, magnitude), (fit, held) in acc.maps.items():
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


def weights_table(acc: EquivarianceAccumulator) -> pd.DataFrame:
    """The ``learned_map_weights`` table (full mixing matrices of small layers)."""
    frames = []
    for (layer, name, magnitude), (fit, _) in acc.maps.items():
        units = fit.xx.shape[0] - 1
        if fit.count <= 0 or units > MAP_WEIGHTS_MAX_UNITS:
            continue
        mixing = fit_map(fit, acc.settings["ridge"])[:units].T.cpu().numpy()
        unit, source = np.meshgrid(np.arange(units), np.arange(units), indexing="ij")
        frames.append(pd.DataFrame({"layer": layer, "transform": name,
                                    "magnitude": magnitude, "unit": unit.ravel(),
                                    "source_unit": source.ravel(),
                                    "weight": mixing.ravel()}))
    return (pd.concat(frames, ignore_index=True) if frames else
            pd.DataFrame(columns=list(TABLES["learned_map_weights"])))


def lie_tables(acc: EquivarianceAccumulator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``lie`` and ``lie_attribution`` tables."""
    by_name = {t.name: t for t in acc.transforms}
    width = acc.input_size[1]  # type: ignore[index]
    layer_rows, part_rows = [], []
    for name, sums in acc.lie.items():
        transform = by_name[name]
        per_pixel = transform.pixels(1.0, width)
        scale = 1.0 / per_pixel ** 2 if math.isfinite(per_pixel) else 1.0
        per = "input pixel" if math.isfinite(per_pixel) else transform.unit
        n = float(sums["images"])
        total = float(sums["total"])
        for layer in acc.order:
            lee = float(sums[f"layer:{layer}"])
            norm = float(sums[f"norm:{layer}"])
            layer_rows.append({"layer": layer, "transform": name, "per": per,
                               "lee": lee * scale / n,
                               "relative": math.sqrt(lee * scale / norm) if norm > 0
                               else math.nan, "images": n})
        layer_rows.append({"layer": OUTPUT, "transform": name, "per": per,
                           "lee": total * scale / n, "relative": math.nan, "images": n})
        closure = math.sqrt(float(sums["closure"]) / total) if total > 0 else \
            math.sqrt(float(sums["closure"]))
        for end in [*acc.order, OUTPUT]:
            part_rows.append({"layer": end, "transform": name, "per": per,
                              "contribution_sq": float(sums[f"part:{end}"]) * scale / n,
                              "share": float(sums[f"dot:{end}"]) / total if total > 0
                              else math.nan, "total_lee": total * scale / n,
                              "closure": closure, "images": n})
    return (pd.DataFrame(layer_rows, columns=list(TABLES["lie"])),
            pd.DataFrame(part_rows, columns=list(TABLES["lie_attribution"])))


def consistency_tables(acc: EquivarianceAccumulator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The ``consistency`` summary and the neighbouring-shift ``shift_curve``."""
    s = {k: v.cpu().numpy() if isinstance(v, torch.Tensor) else v
         for k, v in acc.consistency.items()}
    steps = acc.settings["consistency_steps"]
    width = acc.input_size[1]  # type: ignore[index]
    task = "segmentation" if acc.output_dims == 4 else "classification"
    labelled = float(s.get("labelled", 0.0))
    curve = []
    for k in range(steps):
        n, change, flipped = (float(v) for v in s[f"step:{k}"])
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
        "max_offset_pixels": max(1, round(acc.settings["consistency_shift"] * width)),
        "steps": steps, "pairs": float(s["pairs"]),
    }], columns=list(TABLES["consistency"]))
    return summary, curve_frame
