"""Figures of the filters analysis, from hand-made tables (pure functions of DataFrames)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from probe.plugins.analyses.filters.figures import (
    energy_curve_figure,
    filter_grid_figure,
    make_figures,
    orientation_frequency_figure,
)


def _units() -> pd.DataFrame:
    maps = [np.arange(9, dtype=np.float32) - 4, -2 * np.ones(9, np.float32)]
    fits = [0.5 * (np.arange(9, dtype=np.float32) - 4), np.zeros(9, np.float32)]
    return pd.DataFrame({
        "layer": "a", "unit": [0, 1], "kernel_h": 3, "kernel_w": 3,
        "gabor_status": ["ok", "ok"], "gabor_r2": [0.9, 0.5],
        "gabor_theta": [0.25, 1.0], "gabor_frequency": [0.2, 0.3],
        "map": maps, "fit": fits})


def test_filter_grid_places_each_map_beside_its_fit_on_the_maps_scale():
    fig = filter_grid_figure(_units(), "a", columns=2)
    z = np.asarray(fig.data[0].z, dtype=float)
    first = np.arange(9).reshape(3, 3) - 4
    np.testing.assert_allclose(z[0:3, 0:3], first / 4)
    np.testing.assert_allclose(z[0:3, 4:7], 0.5 * first / 4)  # the fit, same scale
    np.testing.assert_allclose(z[0:3, 9:12], -1.0)  # second unit (column 1 starts at 2w + 3)
    assert "median R² 0.70 over 2 units" in fig.layout.title.text


def test_orientation_figure_doubles_the_angle():
    fig = orientation_frequency_figure(_units())
    np.testing.assert_allclose(fig.data[0].theta, np.degrees([0.5, 2.0]))
    np.testing.assert_allclose(fig.data[0].r, [0.2, 0.3])


def test_energy_curves_draw_chance_and_skip_repeated_layers():
    energy = pd.DataFrame({
        "layer": ["a"] * 4 + ["b"] * 4,
        "basis": ["pca", "pca", "derivative", "pca_color"] * 2,
        "dim": [1, 2, 1, 1] * 2, "span_dim": [1, 2, 1, 1] * 2,
        "energy_mean": [0.3, 0.6, 0.2, 0.1] * 2,
        "chance": [0.25, 0.5, 0.25, 1 / 12] * 2, "random_mean": [0.24, 0.5, 0.26, 0.08] * 2})
    fig = energy_curve_figure(energy[energy["layer"] == "a"])
    names = [t.name for t in fig.data]
    assert "pca_color" not in names
    chance = next(t for t in fig.data if t.name.startswith("chance"))
    np.testing.assert_allclose(chance.y, [0.25, 0.5])
    layers = pd.DataFrame({"layer": ["a", "b"], "status": ["ok", "ok"],
                           "same_filters_as": ["a", "a"], "gabor_r2_median": [0.5, 0.5],
                           "gabor_r2_random_median": [0.1, 0.1], "bank_cos_mean": [0.3, 0.3],
                           "bank_cos_random": [0.2, 0.2], "redundancy_mean": [0.4, 0.4],
                           "redundancy_random": [0.1, 0.1]})
    figures = make_figures({"energy": energy, "layers": layers, "units": _units()})
    curves = figures[-1]
    assert [a.text for a in curves.layout.annotations] == ["a"]  # b repeats a's filters
    assert list(figures[0].data[0].x) == ["a"]
