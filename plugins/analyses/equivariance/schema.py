"""Names and required columns of the ``equivariance`` tables (see docs/equivariance.md)."""

TABLES: dict[str, tuple[str, ...]] = {
    "errors": ("layer", "transform", "magnitude", "unit", "pixels", "stride", "cells",
               "relative_error", "error_sq", "reference_sq", "valid_cells", "images",
               "exact_action"),
    "learned_maps": ("layer", "transform", "magnitude", "units", "one_minus_r2",
                     "spatial_one_minus_r2", "identity_one_minus_r2", "fit_positions",
                     "held_positions"),
    "learned_map_units": ("layer", "transform", "magnitude", "unit", "partner", "weight",
                          "share", "bias"),
    "learned_map_weights": ("layer", "transform", "magnitude", "unit", "source_unit",
                            "weight"),
    "lie": ("layer", "transform", "per", "lee", "relative", "images"),
    "lie_attribution": ("layer", "transform", "per", "contribution_sq", "share",
                        "total_lee", "closure", "images"),
    "consistency": ("task", "unit_compared", "accuracy", "consistency", "top1_change",
                    "mean_abs_change", "max_offset_pixels", "steps", "pairs"),
    "shift_curve": ("step", "from_pixels", "to_pixels", "top1_change", "mean_abs_change",
                    "compared"),
}
