"""Small real runs for tests, screenshots and the docs (LeNet-5 on digits, seconds on a CPU).

``python -m probe.sample_runs RUNS_DIR`` writes them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

#: Analyses added to the sample runs when their plugins are installed, with options that
#: keep them fast on a CPU.
OPTIONAL_ANALYSES: dict[str, dict[str, object]] = {"filters": {}}


def make_sample_runs(root: str | Path, size: int = 64,
                     extra: Sequence[str] | None = None) -> list[Path]:
    """Write two unit-stats runs of untrained LeNet-5 (seeds 0 and 1) on ``size`` digits.

    Args:
        root: Folder to hold the runs ``lenet5-a`` and ``lenet5-b``.
        size: Number of test digits analysed.
        extra: Further analyses to run as well (only those installed are used).

    Returns:
        The run directories.
    """
    import torch

    import probe
    from probe.host import get_host

    names = get_host().analyses.names()
    analyses = ["unit-stats", *[a for a in (extra or ()) if a in names]]
    out = []
    for seed, name in ((0, "lenet5-a"), (1, "lenet5-b")):
        torch.manual_seed(seed)
        path = Path(root) / name
        probe.analyze("lenet5", "digits", analyses, out=path, dataset_options={"size": size},
                      batch_size=64, seed=seed, overwrite=True,
                      layers=["c1", "s2", "c3", "s4", "c5"])
        out.append(path)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m probe.sample_runs RUNS_DIR")
    for path in make_sample_runs(sys.argv[1]):
        print(path)


def write_tables_run(path: str | Path, tables: dict[str, dict[str, object]],
                     layers: Sequence[str], *, arch: str = "synthetic",
                     dataset: dict[str, object] | None = None,
                     failed: dict[str, str] | None = None) -> Path:
    """Write a run directory from ready-made tables with the real :class:`RunStore`.

    For tests and benchmarks that need exact, hand-made (or very large) tables
    without running a model.

    Args:
        path: The run directory to create.
        tables: ``{analysis: {table name: DataFrame}}``; each analysis is complete.
        layers: The run's layers, in network order.
        arch: Architecture name recorded in the manifest.
        dataset: ``{"name": ..., "options": {...}, "size": n}`` or ``None``.
        failed: ``{analysis: error line}`` recorded as failed analyses.
    """
    from probe.store import RunStore, utc_now

    store = RunStore(path)
    store.manifest = {
        "schema": 1, "status": "partial" if failed else "complete", "created": utc_now(),
        "arch": {"name": arch, "options": {}}, "dataset": dataset, "layers": list(layers),
        "seed": 0, "analyses": {}, "timings": {"total": 0.0, "analyses": {}},
    }
    for analysis, frames in tables.items():
        for table, frame in frames.items():
            store.write_table(analysis, table, frame)  # type: ignore[arg-type]
        store.manifest["analyses"][analysis] = {"options": {}, "status": "complete",
                                                "error": None, "tables": sorted(frames)}
    for analysis, error in (failed or {}).items():
        store.manifest["analyses"][analysis] = {"options": {}, "status": "failed",
                                                "error": error, "tables": []}
    store.manifest["finished"] = utc_now()
    store.save_manifest()
    return Path(path)


CATEGORIES = ("color", "texture", "part", "object")


def synthetic_tables(units_per_layer: dict[str, int], images: int = 16, top_k: int = 4,
                     map_size: int = 4, mask_size: int = 32, kernel: int = 3,
                     seed: int = 0) -> dict[str, dict[str, object]]:
    """Random tables shaped like unit-stats, dissection, filters and equivariance write them.

    Every column the dashboard reads is present, values are random but
    consistent (a detector has IoU above 0.04, ranks are sorted, image indices
    are below ``images``), and there is one part→object edge between the
    first two layers. Used by tests (small) and the benchmark (≥ 5,000 units).
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    layers = list(units_per_layer)
    names = [f"concept{i}" for i in range(40)]
    stats, tops, dis, labels, exemplars, filters, partners = [], [], [], [], [], [], []
    for layer, n in units_per_layer.items():
        unit = np.arange(n)
        stats.append(pd.DataFrame({"layer": layer, "unit": unit, "mean": rng.random(n),
                                   "std": rng.random(n), "max": rng.random(n) * 4,
                                   "fraction_positive": rng.random(n), "count": 1000}))
        u, r = np.repeat(unit, top_k), np.tile(np.arange(top_k), n)
        value = np.sort(rng.random((n, top_k)), axis=1)[:, ::-1].ravel()
        tops.append(pd.DataFrame({
            "layer": layer, "unit": u, "rank": r, "image": rng.integers(0, images, n * top_k),
            "value": value, "label": rng.integers(0, 10, n * top_k), "map_height": map_size,
            "map_width": map_size,
            "map": list(rng.random((n * top_k, map_size * map_size)).astype(np.float32))}))
        best = rng.integers(0, len(names), n)
        iou = rng.random(n) * 0.1
        dis.append(pd.DataFrame({
            "layer": layer, "unit": unit, "label": best, "name": [names[b] for b in best],
            "category": [CATEGORIES[b % len(CATEGORIES)] for b in best], "iou": iou,
            "is_detector": iou > 0.04, "threshold": rng.random(n)}))
        labels.append(pd.DataFrame({
            "layer": layer, "unit": np.repeat(unit, 3), "category": "object",
            "rank": np.tile(np.arange(3), n), "label": rng.integers(0, len(names), 3 * n),
            "name": [names[i] for i in rng.integers(0, len(names), 3 * n)],
            "iou": np.sort(rng.random((n, 3)) * 0.1, axis=1)[:, ::-1].ravel()}))
        masks = rng.random((n * top_k, mask_size * mask_size)) > 0.7
        exemplars.append(pd.DataFrame({
            "layer": layer, "unit": u, "rank": r, "image": rng.integers(0, images, n * top_k),
            "activation": value, "active_pixels": masks.sum(1), "mask_height": mask_size,
            "mask_width": mask_size, "mask": [m.tobytes() for m in np.packbits(masks, axis=1)]}))
        fit = rng.random(n)
        filters.append(pd.DataFrame({
            "layer": layer, "unit": unit, "kind": "conv", "kernel_h": kernel,
            "kernel_w": kernel, "separability": rng.random(n),
            "gabor_status": np.where(fit > 0.2, "ok", "poor"), "gabor_r2": fit,
            "gabor_frequency": rng.random(n) / 2, "gabor_theta": rng.random(n) * np.pi,
            "map": list(rng.standard_normal((n, kernel * kernel)).astype(np.float32)),
            "fit": list(rng.standard_normal((n, kernel * kernel)).astype(np.float32))}))
        partners.append(pd.DataFrame({
            "layer": layer, "transform": "flip", "magnitude": 1.0, "unit": unit,
            "partner": rng.permutation(n), "weight": rng.random(n), "share": rng.random(n)}))
    # every column equivariance writes: "shift" a sweep in input pixels on a stride-2 grid,
    # "flip" a discrete transform
    errors = pd.DataFrame([{"layer": layer, "transform": t, "magnitude": m,
                            "unit": "px" if t == "shift" else "",
                            "pixels": m if t == "shift" else np.nan, "stride": 2,
                            "cells": m / 2 if t == "shift" else np.nan,
                            "relative_error": (i + 1) * m / 10,
                            "error_sq": ((i + 1) * m / 10) ** 2, "reference_sq": 1.0,
                            "valid_cells": 64.0, "images": images,
                            "exact_action": t != "shift" or m % 2 == 0}
                           for i, layer in enumerate(layers)
                           for t in ("shift", "flip") for m in (1.0, 2.0)])
    edge = {"part_layer": layers[0], "part_unit": 1, "part_label": 3, "part_name": "wheel",
            "part_iou": 0.08, "object_layer": layers[min(1, len(layers) - 1)],
            "object_unit": 0, "object_label": 7, "object_name": "car", "object_iou": 0.09,
            "weight_path": 0.25, "ablation_drop": 0.5, "ablation_baseline": 1.0,
            "ablation_images": 8}
    return {
        "unit-stats": {"units": pd.concat(stats, ignore_index=True),
                       "top_images": pd.concat(tops, ignore_index=True)},
        "dissection": {"units": pd.concat(dis, ignore_index=True),
                       "labels": pd.concat(labels, ignore_index=True),
                       "layers": pd.DataFrame({"layer": layers, "iou_threshold": 0.04}),
                       "exemplars": pd.concat(exemplars, ignore_index=True),
                       "edges": pd.DataFrame([edge])},
        "filters": {"units": pd.concat(filters, ignore_index=True)},
        "equivariance": {"errors": errors,
                         "learned_map_units": pd.concat(partners, ignore_index=True)},
    }
