"""The view hooks of the built-in ``unit-stats``, ``filters`` and ``equivariance`` analyses.

One small real run (LeNet-5 on 32 digits, cheap options) for the whole module,
plus hand-made tables (``probe.sample_runs.write_tables_run``) where exact numbers are needed.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import probe
from probe.plugins.analyses.equivariance.analysis import Equivariance
from probe.plugins.analyses.filters.analysis import Filters
from probe.plugins.analyses.unit_stats import UnitStats
from probe.plugins.analyses.unit_stats_views import exemplar_picture, map_scale
from probe.sample_runs import write_tables_run
from probe.views import Facts, Figure, Headline, Note, Pictures, RunView, Table, UnitColumns
from probe.views.format import layer_depth

LAYERS = ["c1", "s2", "c3", "c5"]


class LinkedView(RunView):
    """A run view whose units have pages (as in the dashboard)."""

    def unit_link(self, layer: str, unit: int) -> str | None:
        return f"/unit/{self.name}/{layer}/{int(unit)}"


@pytest.fixture(scope="module")
def run_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("views") / "run"
    probe.analyze(
        "lenet5", "digits",
        ["unit-stats", ("filters", {"patches": 500, "random_filters": 16, "iterations": 5}),
         ("equivariance", {"transforms": ("shift-x", "hflip", "rotate"),
                           "magnitudes": ("shift-x=0;1;2px", "rotate=0;10"),
                           "lie": False, "consistency": False})],
        out=path, dataset_options={"size": 32}, batch_size=16, seed=0, layers=LAYERS)
    return path


@pytest.fixture(scope="module")
def view(run_path):
    return LinkedView(probe.load_run(run_path))


def _png(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.format == "PNG"
    return image


def _one(blocks, kind):
    found = [b for b in blocks if isinstance(b, kind)]
    assert found, f"no {kind.__name__} in {blocks}"
    return found[0]


# -- unit-stats ---------------------------------------------------------------------------
def test_unit_stats_layer_summary_is_the_groupby_of_its_table(view):
    table = UnitStats.layer_summary(view)
    units = view.table("unit-stats", "units")
    grouped = units.groupby("layer")
    frame = table.frame.set_index("layer")
    assert list(frame.index) == LAYERS
    np.testing.assert_allclose(frame["unit_stats_max"], grouped["max"].mean()[LAYERS])
    np.testing.assert_allclose(frame["unit_stats_positive"],
                               grouped["fraction_positive"].mean()[LAYERS])
    assert list(frame["unit_stats_units"]) == [6, 6, 16, 120]
    assert table.labels["unit_stats_max"] == "mean max activation"
    assert table.formats["unit_stats_positive"] == "percent"


def test_unit_stats_unit_facts_and_exemplars(view):
    blocks = UnitStats.unit_views(view, "c3", 5)
    facts = dict(_one(blocks, Facts).items)
    row = view.unit_rows("unit-stats", "units", "c3", 5).iloc[0]
    assert facts["mean"] == row["mean"] and facts["max"] == row["max"]
    assert facts["std"] == row["std"] and facts["activations counted"] == row["count"]
    assert facts["fraction positive"] == row["fraction_positive"]
    pictures = _one(blocks, Pictures).items
    top = view.unit_rows("unit-stats", "top_images", "c3", 5).sort_values("rank")
    assert len(pictures) == len(top) == 8
    first = top.iloc[0]
    name = view.class_name(int(first["label"]))
    assert pictures[0].caption.startswith(f"#1 · image {int(first['image'])} · activation ")
    assert pictures[0].caption.endswith(f"class {name}")
    assert all(_png(p.png).size[1] >= 128 for p in pictures)


def test_heat_beside_width_and_crop_to_a_small_active_region():
    image = np.full((1, 32, 32), 0.5, dtype=np.float32)
    flat = np.ones((4, 4), dtype=np.float32)
    whole = exemplar_picture(image, flat, 1.0)
    bar = max(4, 32 // 12)
    assert whole.shape == (32, 2 * 32 + 2 + 2 + bar, 3)  # image | gap | heat | gap | bar
    spot = np.zeros((8, 8), dtype=np.float32)
    spot[1, 1] = 1.0
    cropped = exemplar_picture(image, spot, 1.0)
    assert cropped.shape[0] < 32  # cropped to the active corner
    height, width = cropped.shape[:2]
    assert width == 2 * height + 4 + max(4, height // 12)
    assert exemplar_picture(image, spot, 1.0, crop_share=0.0).shape == whole.shape
    magnified = exemplar_picture(image, flat, 1.0, height=128)
    assert magnified.shape[0] == 128


def test_heat_scale_is_the_best_exemplars_peak():
    rows = pd.DataFrame({"rank": [0, 1], "map_height": 2, "map_width": 2,
                         "map": [np.array([0, 1, 3, 2], np.float32),
                                 np.array([0, 5, 0, 0], np.float32)]})
    assert map_scale(rows) == 3.0


def test_unit_stats_thumbnails_are_pngs_of_the_requested_size(view):
    thumbs = UnitStats.unit_thumbnails(view, "c1", [0, 2, 4], size=80)
    assert sorted(thumbs) == [0, 2, 4]
    for png in thumbs.values():
        assert max(_png(png).size) == 80


def test_unit_stats_layer_views_link_units(view):
    blocks = UnitStats.layer_views(view, "c3")
    table = _one(blocks, Table)
    assert table.links == {"unit": "href"} and "href" in table.hidden
    assert list(table.frame["href"]) == [view.unit_link("c3", u) for u in table.frame["unit"]]
    strips = _one(blocks, Pictures).items
    assert len(strips) == 4 and all(p.href and p.href.startswith("/unit/") for p in strips)
    units = view.table("unit-stats", "top_images", layer="c3")
    best = units[units["rank"] == 0].sort_values("value", ascending=False)["unit"].head(4)
    assert [p.href for p in strips] == [view.unit_link("c3", int(u)) for u in best]
    assert isinstance(_one(UnitStats.run_views(view), Figure), Figure)


def test_unit_stats_columns_and_headlines(view):
    columns = UnitStats.unit_columns(view, "c1")
    assert isinstance(columns, UnitColumns) and columns.score == "max"
    assert list(columns.frame.columns) == ["unit", "mean", "max", "fraction_positive"]
    units = view.table("unit-stats", "units")
    heads = {h.label: h for h in UnitStats.headlines(view)}
    assert heads["units analysed"].value == len(units) == 148
    assert heads["layers analysed"].value == 4
    assert heads["dead units"].value == pytest.approx(float((units["max"] <= 0).mean()))


def test_unit_stats_without_images_shows_values(tmp_path, view):
    tables = {"unit-stats": {"units": view.table("unit-stats", "units"),
                             "top_images": view.table("unit-stats", "top_images")}}
    path = write_tables_run(tmp_path / "noimg", tables, LAYERS, dataset=None)
    bare = RunView(probe.load_run(path))
    blocks = UnitStats.unit_views(bare, "c1", 2)
    note = _one(blocks, Note)
    assert bare.why_no_images() in note.text
    values = _one(blocks, Table).frame
    top = view.unit_rows("unit-stats", "top_images", "c1", 2).sort_values("rank")
    assert list(values["value"]) == list(top["value"])
    assert list(values["rank"]) == list(range(1, 9))
    assert UnitStats.unit_thumbnails(bare, "c1", [0]) == {}


def test_unit_stats_compare_lines_up_by_relative_depth(view, tmp_path):
    units = view.table("unit-stats", "units")
    short = write_tables_run(tmp_path / "short", {"unit-stats": {
        "units": units[units["layer"].isin(["c1", "c3", "c5"])]}}, ["c1", "c3", "c5"])
    figures = UnitStats.compare_figures([view, RunView(probe.load_run(short))])
    xs = {tuple(trace.x) for trace in figures[0].figure.data}
    assert xs == {(0.0, 1 / 3, 2 / 3, 1.0), (0.0, 0.5, 1.0)}


# -- filters ------------------------------------------------------------------------------
def test_filters_layer_summary_is_the_groupby_of_its_table(view):
    frame = Filters.layer_summary(view).frame.set_index("layer")
    units = view.table("filters", "units")
    ok = units[units["gabor_status"] == "ok"]
    np.testing.assert_allclose(frame["filters_r2"], ok.groupby("layer")["gabor_r2"].median()
                               [LAYERS])
    np.testing.assert_allclose(frame["filters_separability"],
                               units.groupby("layer")["separability"].median()[LAYERS])
    np.testing.assert_allclose(frame["filters_fitted"],
                               units.groupby("layer")["gabor_status"].apply(
                                   lambda s: (s == "ok").mean())[LAYERS])
    layers = view.table("filters", "layers").set_index("layer")
    np.testing.assert_allclose(frame["filters_r2_random"],
                               layers["gabor_r2_random_median"][LAYERS])


def test_filters_unit_facts_and_pictures(view):
    blocks = Filters.unit_views(view, "c3", 4)
    row = view.unit_rows("filters", "units", "c3", 4).iloc[0]
    facts = dict(_one(blocks, Facts).items)
    assert facts["Gabor fit"] == row["gabor_status"] and facts["Gabor R²"] == row["gabor_r2"]
    assert facts["frequency (cycles/px)"] == row["gabor_frequency"]
    assert facts["orientation (°)"] == pytest.approx(np.degrees(row["gabor_theta"]))
    assert facts["colour separability"] == row["separability"]
    assert facts["best bank |cos|"] == row["bank_cos"]
    assert facts["redundancy |cos|"] == row["redundancy_cos"]
    assert facts["most similar filter"].startswith(f"unit {int(row['redundancy_partner'])} (")
    pictures = _one(blocks, Pictures).items
    assert len(pictures) == 2 and "Gabor fit" in pictures[1].caption
    assert _png(pictures[0].png).size == (100, 100)  # 5×5 magnified by 20


def test_filters_layer_views(view):
    blocks = Filters.layer_views(view, "c1")
    assert sum(isinstance(b, Figure) for b in blocks) == 2  # filter/fit grid, R² spread
    table = _one(blocks, Table)
    assert table.links == {"unit": "href"}
    assert list(table.frame["href"]) == [view.unit_link("c1", u) for u in range(6)]
    repeat = Filters.layer_views(view, "s2")
    assert len(repeat) == 1 and "same filters as c1" in repeat[0].text
    columns = Filters.unit_columns(view, "c3")
    assert columns.score == "gabor_r2" and len(columns.frame) == 16
    assert [b.name for b in Filters.run_views(view)] == ["filters-summary",
                                                         "filters-orientation", "filters-energy"]


def test_filters_headlines(view):
    heads = {h.label: h for h in Filters.headlines(view)}
    units = view.table("filters", "units")
    c1 = units[(units["layer"] == "c1") & (units["gabor_status"] == "ok")]
    assert heads["median Gabor R², first layer"].value == pytest.approx(c1["gabor_r2"].median())
    energy = view.table("filters", "energy", layer="c1")
    pca = energy[(energy["basis"] == "pca") & (energy["dim"] == 3)].iloc[0]
    head = heads["energy in the top-3 natural-image PCA components"]
    assert head.value == pytest.approx(pca["energy_mean"]) and "chance 12.0%" in head.detail


def _rgb_filters(n: int = 5, k: int = 3) -> pd.DataFrame:
    """A first layer of ``n`` 3-channel filters; weight [c, 0, 0] is 0, [0, 1, 1] the largest."""
    rng = np.random.default_rng(0)
    weights = rng.uniform(-0.5, 0.5, size=(n, 3, k, k)).astype(np.float32)
    weights[:, :, 0, 0] = 0.0
    weights[:, 0, 1, 1] = 1.0
    return pd.DataFrame({
        "layer": "conv1", "unit": np.arange(n), "kind": "conv", "channels": 3, "kernel_h": k,
        "kernel_w": k, "separability": 0.5, "gabor_status": "too_small", "gabor_r2": np.nan,
        "map": list(weights.sum(axis=1).reshape(n, -1)), "fit": list(np.zeros((n, k * k),
                                                                              np.float32)),
        "weights": list(weights.reshape(n, -1))})


def test_rgb_filter_grid_has_one_tile_per_filter_with_zero_as_grey(tmp_path):
    path = write_tables_run(tmp_path / "rgb", {"filters": {"units": _rgb_filters()}}, ["conv1"])
    run = RunView(probe.load_run(path))
    blocks = Filters.layer_views(run, "conv1")
    grid = np.asarray(_png(_one(blocks, Pictures).items[0].png).convert("RGB"))
    side, gap, columns = 24, 2, 3  # 3×3 kernels magnified by 8; ⌈√5⌉ columns
    assert grid.shape == (2 * side + gap, columns * side + (columns - 1) * gap, 3)
    tiles = [grid[r * (side + gap):r * (side + gap) + side, c * (side + gap):c * (side + gap)
                  + side] for r in range(2) for c in range(columns)]
    filled = [not (tile == 255).all() for tile in tiles]
    assert filled == [True] * 5 + [False]
    for tile in tiles[:5]:
        assert np.abs(tile[:8, :8].astype(int) - 128).max() <= 1  # weight 0 → grey
        assert (tile[8:16, 8:16, 0] == 255).all()  # the largest weight → white (red channel)
    assert any("too small" in b.text for b in blocks if isinstance(b, Note))
    unit = Filters.unit_views(run, "conv1", 0)
    assert any("colour filter" in p.caption for p in _one(unit, Pictures).items)
    thumbs = Filters.unit_thumbnails(run, "conv1", [0, 3], size=48)
    assert sorted(thumbs) == [0, 3]
    tile = np.asarray(_png(thumbs[3]).convert("RGB"))
    assert tile.shape == (48, 48, 3) and np.abs(tile[:16, :16].astype(int) - 128).max() <= 1
    columns_ = Filters.unit_columns(run, "conv1")
    assert columns_.score == "separability" and "gabor_r2" not in columns_.frame
    heads = Filters.headlines(run)
    assert heads[0].value == "too_small" and heads[0].format == "text"
    summary = Filters.layer_summary(run).frame
    assert "filters_r2" not in summary and summary["filters_fitted"].tolist() == [0.0]


# -- equivariance -------------------------------------------------------------------------
def _errors(layers: list[str], transforms: dict[str, tuple[float, ...]]) -> pd.DataFrame:
    rows = []
    for i, layer in enumerate(layers):
        for j, (name, sweep) in enumerate(transforms.items()):
            for m in sweep:
                identity = 1.0 if name == "scale" else 0.0
                error = 0.0 if m == identity else (i + 1) * (j + 1) * abs(m - identity) / 10
                rows.append({"layer": layer, "transform": name, "magnitude": m,
                             "unit": "u", "pixels": np.nan, "stride": 1.0,
                             "relative_error": error, "exact_action": False})
    return pd.DataFrame(rows)


def test_equivariance_layer_summary_leaves_identity_out(tmp_path, view):
    errors = _errors(["a", "b", "c"], {"hflip": (0.0, 1.0), "scale": (1.0, 0.8, 1.25)})
    path = write_tables_run(tmp_path / "eq", {"equivariance": {"errors": errors}},
                            ["a", "b", "c"])
    run = RunView(probe.load_run(path))
    table = Equivariance.layer_summary(run)
    frame = table.frame.set_index("layer")
    np.testing.assert_allclose(frame["equivariance_hflip"], [0.1, 0.2, 0.3])
    np.testing.assert_allclose(frame["equivariance_scale"],
                               [k * 2 * (0.2 + 0.25) / 2 / 10 for k in (1, 2, 3)])
    assert table.labels["equivariance_scale"] == "error under scale"
    heads = Equivariance.headlines(run)
    assert [h.value for h in heads] == ["scale", "hflip"]
    assert all("at c" in h.label for h in heads)
    # the real run: means over each sweep without its identity magnitude, per layer
    real = Equivariance.layer_summary(view).frame.set_index("layer")
    e = view.table("equivariance", "errors")
    e = e[(e["magnitude"] != 0) & (e["layer"] != "<output>")]
    expected = e.groupby(["layer", "transform"])["relative_error"].mean().unstack()
    for name in ("shift-x", "hflip", "rotate"):
        np.testing.assert_allclose(real[f"equivariance_{name}"], expected[name][LAYERS])
    assert list(real.index) == LAYERS


def test_equivariance_compare_x_values_are_relative_depths(tmp_path, view):
    errors = _errors(["a", "b", "c"], {"hflip": (0.0, 1.0), "scale": (1.0, 0.8)})
    path = write_tables_run(tmp_path / "eq", {"equivariance": {"errors": errors}},
                            ["a", "b", "c"])
    figure = Equivariance.compare_figures([view, RunView(probe.load_run(path))])[0].figure
    depths = {trace.name: tuple(trace.x) for trace in figure.data}
    assert depths[view.label] == tuple(layer_depth(LAYERS).values())
    assert depths["eq"] == (0.0, 0.5, 1.0)
    titles = [a.text for a in figure.layout.annotations]
    assert titles == ["shift-x", "hflip", "rotate", "scale"]
    assert figure.layout.yaxis2.matches == "y"  # shared y


def test_equivariance_unit_partners_link_to_units(view):
    blocks = Equivariance.unit_views(view, "c3", 2)
    assert isinstance(blocks[0], Figure)
    table = _one(blocks, Table)
    rows = view.unit_rows("equivariance", "learned_map_units", "c3", 2)
    assert list(table.frame["partner"]) == list(rows["partner"])
    assert list(table.frame["partner_href"]) == [view.unit_link("c3", int(p))
                                                 for p in rows["partner"]]
    assert table.links == {"partner": "partner_href"} and "partner_href" in table.hidden


def test_equivariance_layer_views(view):
    blocks = Equivariance.layer_views(view, "c3")
    figure = _one(blocks, Figure).figure
    assert [a.text for a in figure.layout.annotations] == ["shift-x", "hflip", "rotate"]
    shift = figure.data[0]
    assert tuple(shift.x) == (0.0, 1.0, 2.0)  # translations in input pixels
    maps = _one(blocks, Table).frame
    units = view.table("equivariance", "learned_map_units", layer="c3")
    hflip = units[units["transform"] == "hflip"]
    row = maps[maps["transform"] == "hflip"].iloc[0]
    assert row["self_share"] == pytest.approx((hflip["partner"] == hflip["unit"]).mean())
    names = [b.name for b in Equivariance.run_views(view)]
    assert names[0] == "equivariance-layers" and "equivariance-maps" in names
    assert Equivariance.unit_columns(view, "c3") is None
    assert all(isinstance(h, Headline) for h in Equivariance.headlines(view))
