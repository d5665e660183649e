"""The ``filters`` analysis end to end: weight layouts, tables, chance levels, figures."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from torch.nn import functional as F

import probe
from probe.analysis import ModelHandle, RunContext
from probe.plugins.analyses.filters.accumulator import FiltersAccumulator, PatchMoments
from probe.plugins.analyses.filters.analysis import Filters
from probe.plugins.analyses.filters.gabor import gabor
from probe.plugins.analyses.filters.weights import filters_module, kernel_sizes, layer_filters
from probe.preprocessing import Preprocessing
from probe.testing import assert_tables_equal

THETAS = (0.2, 0.9, 1.7, 2.5)


def _planted_model() -> nn.Module:
    """conv1: 4 Gabors, rot90 copies of the first two, 2 random; conv2: 3×3; then a Linear."""
    gen = torch.Generator().manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 11, bias=False), nn.ReLU(),
                          nn.Conv2d(8, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2),
                          nn.ReLU())
    params = torch.tensor([[0.3, -0.2, t, 0.2, 0.5, 1.8, 2.6, 1.0, 0.0] for t in THETAS],
                          dtype=torch.float64)
    gabors = gabor(params, (11, 11))
    weight = torch.cat([gabors, torch.rot90(gabors[:2], 1, (-2, -1)),
                        torch.randn(2, 11, 11, generator=gen, dtype=torch.float64) * 0.3])
    with torch.no_grad():
        model[0].weight.copy_(weight[:, None].float())
    return model.eval()


def _context(model: nn.Module, layers: dict[str, str]) -> RunContext:
    preprocessing = Preprocessing()
    return RunContext(model=model, handle=ModelHandle(model, layers, preprocessing),
                      layers=layers, device=torch.device("cpu"), preprocessing=preprocessing)


def _tables(analysis: Filters, model: nn.Module,
            layers: dict[str, str]) -> dict[str, pd.DataFrame]:
    """A weight-only run: the accumulator built and finalised with the same context."""
    context = _context(model, layers)
    return analysis.accumulator(context).finalize(context)


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    model = _planted_model()
    layers = {"conv1": "1", "conv2": "2", "fc": "6"}
    return _tables(Filters(patches=2000, random_filters=64), model, layers)


def test_conv_transpose_filters_are_the_equivalent_correlation_kernels():
    torch.manual_seed(0)
    layer = nn.ConvTranspose2d(4, 6, 3, padding=1, groups=2, bias=False).double()
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64)
    filters, kind = layer_filters(layer)
    assert kind == "transposed" and filters.shape == (6, 2, 3, 3)
    np.testing.assert_allclose(layer(x).detach().numpy(),
                               F.conv2d(x, filters, padding=1, groups=2).detach().numpy(),
                               atol=1e-12)


def test_deformable_and_plain_conv_layouts():
    from torchvision.ops import DeformConv2d

    deform = DeformConv2d(3, 5, 3)
    filters, kind = layer_filters(deform)
    assert kind == "deformable" and torch.equal(filters, deform.weight.detach())
    conv = nn.Conv2d(3, 5, 5)
    assert layer_filters(conv)[1] == "conv"


def test_layers_behind_a_linear_have_no_filters():
    model = _planted_model()
    assert filters_module(model, "1") is model[0]     # ReLU after conv1
    assert filters_module(model, "3") is model[2]
    assert filters_module(model, "6") is None         # ReLU after the Linear
    assert filters_module(model, "5") is None
    assert kernel_sizes(model, ["1", "3", "5", "6"]) == [(3, 3), (11, 11)]


def test_the_accumulator_keeps_no_module_and_declares_its_patch_sums():
    model = _planted_model()
    layers = {"conv1": "1", "conv2": "2", "fc": "6"}
    weight_only = Filters().accumulator(_context(model, layers))
    assert not any(isinstance(v, nn.Module) for v in vars(weight_only).values())
    assert weight_only.patches == {}
    data = Filters(pca_source="dataset").accumulator(_context(model, layers))
    assert sorted(data.patches) == ["11x11", "3x3"]
    assert [s.label for s in data.patches["3x3"].state_specs().values()] == ["sum"] * 3
    moments = data.patches["11x11"]
    assert isinstance(moments, PatchMoments) and moments.outer.shape == (121, 121)
    assert moments.total.dtype == torch.float64 and moments.count.dtype == torch.int64
    assert FiltersAccumulator.merge is probe.State.merge  # no merge code of its own


def test_units_table_recovers_planted_gabors_and_rotated_copies(tables):
    units = tables["units"]
    assert set(Filters.tables["units"]) <= set(units.columns)
    conv1 = units[units["layer"] == "conv1"].set_index("unit")
    assert (conv1.loc[:5, "gabor_r2"] > 0.999).all()
    theta = conv1.loc[:3, "gabor_theta"].to_numpy()
    np.testing.assert_allclose(theta, THETAS, atol=1e-4)
    np.testing.assert_allclose(conv1.loc[:5, "gabor_frequency"], 0.2, atol=1e-4)
    # rot90 turns θ into θ + π/2 (mod π).
    np.testing.assert_allclose(conv1.loc[4:5, "gabor_theta"],
                               np.mod(np.array(THETAS[:2]) + math.pi / 2, math.pi), atol=1e-4)
    np.testing.assert_allclose(conv1["gabor_nx"], conv1["gabor_sigma_x"] *
                               conv1["gabor_frequency"])
    assert conv1.loc[6:7, "gabor_r2"].max() < 0.5
    assert conv1.loc[[0, 1, 4, 5], "redundancy_partner"].tolist() == [4, 5, 0, 1]
    np.testing.assert_allclose(conv1.loc[[0, 1, 4, 5], "redundancy_cos"], 1.0, atol=1e-6)
    assert conv1.loc[0, "redundancy_transform"] == "rot270"
    assert (conv1.loc[:5, "bank_cos"] > conv1.loc[6:, "bank_cos"].max()).all()
    conv2 = units[units["layer"] == "conv2"]
    assert (conv2["gabor_status"] == "too_small").all() and conv2["gabor_r2"].isna().all()
    assert len(conv1.loc[0, "map"]) == 121 and len(conv1.loc[0, "fit"]) == 121


def test_chance_levels_and_layer_summary(tables):
    energy = tables["energy"]
    conv1 = energy[energy["layer"] == "conv1"]
    np.testing.assert_allclose(conv1["chance"], conv1["span_dim"] / 121)
    np.testing.assert_allclose(conv1["random_mean"], conv1["chance"], atol=0.05)
    full = conv1[(conv1["basis"] == "pca") & (conv1["dim"] == 121)]
    assert full["energy_mean"].item() == pytest.approx(1.0, abs=1e-9)
    layers = tables["layers"].set_index("layer")
    assert layers.loc["fc", "status"] == "no_convolution"
    assert layers.loc["conv2", "status"] == "too_small"
    assert layers.loc["conv1", "gabor_fraction_above"] == pytest.approx(6 / 8)
    assert layers.loc["conv1", "gabor_r2_random_median"] < 0.35
    subs = tables["subspaces"]
    for angles in subs["angles"]:
        assert np.all(np.diff(angles) <= 1e-7)  # largest first (to rounding)
        assert all(0 <= a <= math.pi / 2 + 1e-9 for a in angles)
    comps = tables["components"]
    assert set(comps["basis"]) == {"derivative", "pca", "pca_windowed"}
    deriv = comps[(comps["layer"] == "conv1") & (comps["basis"] == "derivative")]
    assert deriv["name"].tolist()[:3] == ["G", "Gx", "Gy"] and len(deriv) == 15


def test_figures_are_built_from_tables(tables):
    figures = Filters.figures(tables)
    titles = [f.layout.title.text for f in figures]
    assert len(figures) == 4, titles
    assert any("conv1" in t and "Gabor fit" in t for t in titles)
    assert not any("conv2 —" in t for t in titles)  # too small: no filter grid
    grid = next(f for f in figures if "conv1" in (f.layout.title.text or ""))
    z = np.asarray(grid.data[0].z, dtype=float)
    assert np.nanmax(np.abs(z)) == pytest.approx(1.0)


def test_dataset_pca_pass_merges_exactly():
    model = _planted_model()
    layers = {"conv1": "1"}
    analysis = Filters(pca_source="dataset", random_filters=8, iterations=5)
    assert analysis.num_passes() == 1 and Filters().num_passes() == 0
    gen = torch.Generator().manual_seed(3)
    images = torch.rand(6, 1, 24, 24, generator=gen)

    def batch(lo, hi):
        return probe.Batch(images=images[lo:hi], inputs=images[lo:hi],
                           indices=torch.arange(lo, hi), labels=torch.full((hi - lo,), -1),
                           outputs=torch.zeros(hi - lo), activations={})

    context = _context(model, layers)
    whole = analysis.accumulator(context)
    whole.update(batch(0, 6))
    left = analysis.accumulator(_context(model, layers))
    right = analysis.accumulator(_context(model, layers))
    left.update(batch(0, 2))
    right.update(batch(2, 6))
    left.merge(right)  # probe.State.merge, following the declared sums
    a, b = whole.patches["11x11"], left.patches["11x11"]
    assert int(a.count) == int(b.count) == 6 * 3 * 3  # stride 5: 3×3 positions per 24-px image
    torch.testing.assert_close(a.outer, b.outer, rtol=1e-12, atol=1e-9)
    torch.testing.assert_close(a.total, b.total, rtol=1e-12, atol=1e-9)
    assert isinstance(whole, FiltersAccumulator)
    out = whole.finalize(context)
    assert out["layers"]["pca_source"].tolist() == ["dataset"]
    merged = left.finalize(context)
    assert_tables_equal(out, merged)


def test_runs_weight_only_through_the_public_api(tmp_path):
    run = probe.analyze(_planted_model(), None, [("filters", {"patches": 500,
                                                              "random_filters": 16})],
                        out=tmp_path / "run", layers=["0"], device="cpu")
    assert run.manifest["analyses"]["filters"]["status"] == "complete"
    units = run.table("filters", "units")
    assert len(units) == 8 and units["gabor_r2"].iloc[:6].min() > 0.999
    with pytest.raises(probe.ProbeError):
        probe.analyze(_planted_model(), None, [("filters", {"rotations": 6})],
                      out=tmp_path / "bad", device="cpu")


def test_large_layers_compare_reduced_maps_for_redundancy(monkeypatch):
    from probe.plugins.analyses.filters import measure

    monkeypatch.setattr(measure, "REDUNDANCY_BUDGET", 0)
    model = _planted_model()
    out = _tables(Filters(patches=500, random_filters=8, iterations=10), model,
                  {"conv1": "0"})
    assert out["layers"]["redundancy_on"].tolist() == ["maps"]
    units = out["units"].set_index("unit")
    assert units.loc[[0, 1, 4, 5], "redundancy_partner"].tolist() == [4, 5, 0, 1]


def test_a_model_without_convolutions_gives_empty_declared_tables():
    from probe.analysis import check_tables

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    out = _tables(Filters(), model, {"fc": "1"})
    check_tables(Filters(), out)
    assert len(out["units"]) == 0
    assert out["layers"]["status"].tolist() == ["no_convolution"]


def test_colour_layers_get_a_colour_pca_basis():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 4, 5))
    out = _tables(Filters(patches=600, random_filters=64, iterations=5), model, {"conv": "0"})
    energy = out["energy"]
    colour = energy[energy["basis"] == "pca_color"]
    assert colour["dim"].max() == 75
    np.testing.assert_allclose(colour["chance"], colour["dim"] / 75)
    np.testing.assert_allclose(colour["random_mean"], colour["chance"], atol=0.05)
    assert colour[colour["dim"] == 75]["energy_mean"].item() == pytest.approx(1.0, abs=1e-9)
    comps = out["components"]
    first = comps[comps["basis"] == "pca_color"].iloc[0]
    assert first["channels"] == 3 and len(first["values"]) == 75
    # The first RGB component is (nearly) achromatic: equal sign in the three channels.
    values = np.asarray(first["values"]).reshape(3, 25)
    assert (np.sign(values) == np.sign(values[0])).all()


@pytest.mark.parametrize("source", ["natural", "dataset"])
def test_passes_the_conformance_kit(source):
    from probe.testing import check_analysis

    results = check_analysis(Filters, options={"pca_source": source, "patches": 500,
                                               "random_filters": 16, "iterations": 5},
                             device="cpu", raise_on_failure=False)
    assert all(r.passed for r in results), "\n".join(map(str, results))
    assert {r.name for r in results} >= {"no_model_in_state", "shards_equal_one_pass"}
