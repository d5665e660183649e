"""Reduced gradient sums and the layers' fields → the ``receptive-field`` tables."""

from __future__ import annotations

import numpy as np
import pandas as pd

from probe.receptive_field import Field

from .effective import centre_cell, radius


def build_tables(layers: list[str], fields: dict[str, Field], maps: dict[str, np.ndarray],
                 layer_profiles: dict[str, np.ndarray],
                 unit_profiles: dict[str, np.ndarray] | None, images: int,
                 share: float) -> dict[str, pd.DataFrame]:
    """``layers`` (one row per layer), ``units`` (per unit) and ``maps`` (per input pixel).

    Args:
        layers: Captured layers in the run's order.
        fields: Their theoretical fields.
        maps: ``{layer: [H, W]}`` summed ``|∂ centre / ∂ input|`` over ``images`` images.
        layer_profiles: ``{layer: [1, bins]}`` the maps' mass per distance bin.
        unit_profiles: ``{layer: [K, bins]}`` per unit, or ``None`` when not measured.
        images: Images the sums cover.
        share: Share of the gradient mass inside the effective radius.
    """
    rows, units, pixels = [], [], []
    for layer in layers:
        field = fields[layer]
        cy, cx = field.centre(*centre_cell(field)) if field.spatial else field.start
        r = float(radius(layer_profiles[layer], share)[0]) if images else np.nan
        rows.append({
            "layer": layer, "map_height": field.grid.size[0], "map_width": field.grid.size[1],
            "size_y": field.size[0], "size_x": field.size[1],
            "jump_y": field.jump[0], "jump_x": field.jump[1],
            "start_y": field.start[0], "start_x": field.start[1],
            "centre_y": cy, "centre_x": cx, "exact": field.exact, "spatial": field.spatial,
            "effective_radius": r, "effective_size": 2 * r + 1, "images": images,
        })
        if unit_profiles is not None:
            radii = radius(unit_profiles[layer], share) if images else \
                np.full(len(unit_profiles[layer]), np.nan)
            units.append(pd.DataFrame({"layer": layer, "unit": np.arange(len(radii)),
                                       "effective_radius": radii,
                                       "effective_size": 2 * radii + 1}))
        mean = maps[layer] / max(images, 1)
        y, x = np.meshgrid(np.arange(mean.shape[0]), np.arange(mean.shape[1]), indexing="ij")
        pixels.append(pd.DataFrame({"layer": layer, "y": y.ravel(), "x": x.ravel(),
                                    "gradient": mean.ravel()}))
    empty_units = pd.DataFrame({"layer": pd.Series(dtype=object),
                                "unit": pd.Series(dtype=np.int64),
                                "effective_radius": pd.Series(dtype=np.float64),
                                "effective_size": pd.Series(dtype=np.float64)})
    return {
        "layers": pd.DataFrame(rows),
        "units": pd.concat(units, ignore_index=True) if units else empty_units,
        "maps": pd.concat(pixels, ignore_index=True),
    }


__all__ = ["build_tables"]
