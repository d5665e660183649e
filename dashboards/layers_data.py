"""Per-layer tables of a run, gathered from whichever analyses it holds (cached by run)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from probe.dashboards.data import RunSource
from probe.dashboards.figures import make_layer_summary
from probe.errors import ProbeError

#: Columns read for the layer and unit views (stored arrays such as maps are left on disk).
DISSECTION_COLUMNS = ("layer", "unit", "label", "name", "category", "iou", "is_detector",
                      "threshold")
FILTER_COLUMNS = ("layer", "unit", "gabor_r2", "gabor_status", "separability")


def first_table(source: RunSource, run: Any, analysis: str, names: tuple[str, ...],
                needed: tuple[str, ...], columns: tuple[str, ...] | None = None,
                layer: str | None = None) -> pd.DataFrame | None:
    """The first of ``names`` (then any table) of ``analysis`` with the ``needed`` columns.

    Only ``columns`` (default: all) and, when given, one ``layer``'s rows are read.
    """
    if analysis not in source.completed(run):
        return None
    candidates = [*names, *(t for _, t in run.tables(analysis) if t not in names)]
    for name in candidates:
        if run.has_table(analysis, name) and set(needed) <= set(
                source.columns(run, analysis, name)):
            return source.table(run, analysis, name, columns=columns, layer=layer)
    return None


def run_tables(source: RunSource, run: Any, problems: dict[str, str] | None = None
               ) -> dict[str, pd.DataFrame | None]:
    """The per-unit and per-layer tables the layer views use (``None`` when absent).

    Keys: ``units`` (unit-stats), ``dissection`` (per-unit best concept),
    ``equivariance`` (``errors``: ``layer, transform, relative_error``),
    ``filters`` (``units``: per-unit ``gabor_r2``).

    Args:
        problems: When given, a table that cannot be read is ``None`` and its
            error is stored here under its key; otherwise the error is raised.

    Raises:
        ProbeError: a table cannot be read (only without ``problems``).
    """
    readers = {
        "units": lambda: source.optional(run, "unit-stats", "units",
                                         columns=("layer", "unit", "mean", "std", "max",
                                                  "fraction_positive")),
        "dissection": lambda: first_table(source, run, "dissection", ("units",),
                                          ("layer", "unit", "label", "category",
                                           "is_detector"), DISSECTION_COLUMNS),
        "equivariance": lambda: first_table(source, run, "equivariance", ("errors",),
                                            ("layer", "transform", "relative_error")),
        "filters": lambda: first_table(source, run, "filters", ("units",),
                                       ("layer", "unit", "gabor_r2"), FILTER_COLUMNS),
    }
    out: dict[str, pd.DataFrame | None] = {}
    for key, read in readers.items():
        try:
            out[key] = read()
        except ProbeError as exc:
            if problems is None:
                raise
            problems[key] = str(exc)
            out[key] = None
    return out


def layer_summary(source: RunSource, run: Any) -> pd.DataFrame:
    """:func:`make_layer_summary` of a run, in the run's layer order (cached per run)."""
    def compute() -> pd.DataFrame:
        tables = run_tables(source, run)
        return make_layer_summary(tables["units"], tables["dissection"],
                                  tables["equivariance"], tables["filters"],
                                  layers=source.layers(run))
    return source.memo(run, ("layer-summary",), compute).copy()


#: Every ``(analysis, table)`` the dashboard reads and the columns it relies on.
#: A test checks them against the analyses' declared ``tables``.
READS: dict[tuple[str, str], tuple[str, ...]] = {
    ("unit-stats", "units"): ("layer", "unit", "mean", "std", "max", "fraction_positive"),
    ("unit-stats", "top_images"): ("layer", "unit", "rank", "image", "value", "label", "map"),
    ("dissection", "units"): ("layer", "unit", "label", "name", "category", "iou",
                              "is_detector", "threshold"),
    ("dissection", "labels"): ("layer", "unit", "category", "rank", "name", "iou"),
    ("dissection", "layers"): ("layer", "iou_threshold"),
    ("dissection", "exemplars"): ("layer", "unit", "rank", "image", "activation",
                                  "active_pixels", "mask_height", "mask_width", "mask"),
    ("dissection", "edges"): ("part_layer", "part_unit", "part_name", "object_layer",
                              "object_unit", "object_name", "weight_path", "ablation_drop"),
    ("filters", "units"): ("layer", "unit", "kernel_h", "kernel_w", "separability",
                           "gabor_status", "gabor_r2", "gabor_frequency", "gabor_theta",
                           "bank_cos", "redundancy_cos", "map", "fit"),
    ("equivariance", "errors"): ("layer", "transform", "magnitude", "unit", "relative_error"),
    ("equivariance", "learned_map_units"): ("layer", "transform", "magnitude", "unit",
                                            "partner", "weight", "share"),
}
