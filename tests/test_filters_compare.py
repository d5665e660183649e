"""The filters comparison of several runs (Compare page, report): an engineered Gabor
bank (HMAX S1) against an untrained LeNet-5, through real runs of ``probe.analyze``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import probe
from probe.plugins.analyses.filters.compare import compare_figures, first_layer
from probe.report import build_report
from probe.views import RunView
from probe.views.blocks import Figure, Note, Pictures, Table
from probe.views.contributions import call_hook

FILTERS = {"filters": {"patches": 500, "random_filters": 16}}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory):
    """A tiny HMAX (S1 sizes 7 and 9 px), an untrained LeNet-5, and a LeNet-5 whose
    filters were measured only on a fully connected layer (no filter table to compare)."""
    root = tmp_path_factory.mktemp("filters-compare")
    hmax = probe.analyze("hmax", "digits", ["filters"], out=root / "hmax",
                         arch_options={"input_size": 32, "bands": 1, "patch_sizes": [4],
                                       "prototypes": 4},
                         dataset_options={"size": 8, "image_size": 32},
                         analysis_options=FILTERS)
    lenet = probe.analyze("lenet5", "digits", ["filters"], out=root / "lenet5",
                          dataset_options={"size": 8}, analysis_options=FILTERS)
    dense = probe.analyze("lenet5", "digits", ["filters"], out=root / "dense",
                          dataset_options={"size": 8}, analysis_options=FILTERS,
                          layers=["f6"])
    return root, hmax, lenet, dense


def _table(blocks: list) -> pd.DataFrame:
    tables = [b for b in blocks if isinstance(b, Table) and b.name == "filters-compare"]
    assert len(tables) == 1
    return tables[0].frame.set_index("run")


def _named(blocks: list, name: str):
    return next(b for b in blocks if getattr(b, "name", None) == name)


def test_numbers_are_the_runs_filters_tables(runs):
    _, hmax, lenet, _ = runs
    views = [RunView(hmax, label="HMAX"), RunView(lenet, label="LeNet-5 untrained")]
    assert [first_layer(v) for v in views] == ["s1_7", "c1"]
    frame = _table(call_hook("filters", "compare_figures", views).blocks)
    assert list(frame.index) == ["HMAX", "LeNet-5 untrained"]
    for label, run, layer in (("HMAX", hmax, "s1_7"), ("LeNet-5 untrained", lenet, "c1")):
        units = run.table("filters", "units")
        units = units[(units["layer"] == layer) & (units["gabor_status"] == "ok")]
        r2 = np.sort(units["gabor_r2"].to_numpy())
        n = len(r2)
        median = r2[n // 2] if n % 2 else (r2[n // 2 - 1] + r2[n // 2]) / 2  # by hand
        row = frame.loc[label]
        assert row["layer"] == layer
        assert row["gabor_r2"] == pytest.approx(median, abs=1e-12)
        assert row["above"] == pytest.approx(float((r2 > 0.7).mean()))
        layers = run.table("filters", "layers")
        info = layers[layers["layer"] == layer].iloc[0]
        assert row["gabor_r2_random"] == info["gabor_r2_random_median"]
        assert row["above_random"] == info["gabor_fraction_above_random"]
        assert row["redundancy"] == info["redundancy_mean"]
        energy = run.table("filters", "energy")
        pca = energy[(energy["layer"] == layer) & (energy["basis"] == "pca")
                     & (energy["dim"] == 3)].iloc[0]
        assert (row["pca3"], row["pca3_chance"]) == (pca["energy_mean"], pca["chance"])
        assert row["pca3_chance"] == pytest.approx(3 / int(units["kernel_h"].iloc[0]) ** 2)
    hm, le = frame.loc["HMAX"], frame.loc["LeNet-5 untrained"]
    assert hm["filters"] == "4@1×7×7" and le["filters"] == "6@1×5×5"
    assert hm["gabor_r2"] >= 0.999 and hm["above"] == 1.0
    assert le["gabor_r2"] < hm["gabor_r2"] - 0.2 and le["above"] < 1.0
    # HMAX's four orientations 0°, 45°, 90°, 135° fill four of the twelve 15° bins
    assert hm["orientation_bins"] == "4 of 12" and hm["gabor_like"] == 4
    assert hm["redundancy"] == pytest.approx(1.0, abs=1e-6)  # quarter turns and mirrors


def test_blocks_for_two_runs_and_for_many(runs):
    _, hmax, lenet, dense = runs
    two = compare_figures([RunView(hmax), RunView(lenet)])
    kinds = [type(b) for b in two]
    assert kinds == [Table, Figure, Figure, Pictures, Pictures]
    gallery = _named(two, "filters-compare-gallery")
    assert [p.caption.split(" · ")[0] for p in gallery.items] == ["hmax", "lenet5"]
    pca = _named(two, "filters-compare-pca")
    assert len(pca.items) == 2  # the 7×7 and 5×5 components
    bars = _named(two, "filters-compare-bars")
    assert list(bars.figure.data[0].y) == ["hmax", "lenet5"]  # one labelled row per run
    assert list(bars.figure.layout.yaxis.ticktext) == ["hmax", "lenet5"]
    # six runs, labels repeated, and one without filters: a Note, numbered labels
    many = [RunView(r) for r in (hmax, lenet, hmax, lenet, hmax, lenet)] + [RunView(dense)]
    blocks = compare_figures(many)
    notes = [b for b in blocks if isinstance(b, Note)]
    assert len(notes) == 1 and notes[0].text.startswith("dense:")
    frame = _table(blocks)
    assert list(frame.index) == ["hmax", "lenet5", "hmax (2)", "lenet5 (2)", "hmax (3)",
                                 "lenet5 (3)"]
    assert frame.loc["hmax (3)", "gabor_r2"] == frame.loc["hmax", "gabor_r2"]
    coverage = _named(blocks, "filters-compare-coverage")
    orient = np.asarray(coverage.figure.data[0].z)
    assert orient.shape == (6, 12)
    assert orient[0].sum() == pytest.approx(1.0)  # every HMAX filter is fitted: shares sum to 1
    assert orient[0].nonzero()[0].tolist() == [0, 3, 6, 9]  # 0°, 45°, 90°, 135°
    assert compare_figures([RunView(dense)])[0].text.startswith("dense:")


def test_report_has_the_comparison_once(runs):
    root, hmax, lenet, _ = runs
    text = build_report([hmax.path, lenet.path], root / "report" / "report.html").read_text()
    comparison = text[text.index('<section class="comparison"'):]
    comparison = comparison[:comparison.index("</section>")]
    assert comparison.count('data-analysis="filters"') == 1
    assert text.count("One row per run, its first layer with filters of its own") == 1
    assert text.count("beside its best-fitting Gabor (right)") == 1



def test_dashboard_compare_page_shows_the_comparison(runs):
    """The Compare page of two filters runs: the comparison fills the filters slot, with
    the numbers of the view's own table."""
    from dash_client import components, filled

    from probe.dashboards import create_app
    from probe.dashboards.data import clear_caches
    from probe.dashboards.pages import compare

    root, hmax, lenet, _ = runs
    clear_caches()
    create_app(root)
    page = filled(compare.compare_content("hmax", "lenet5"))
    section = next(c for c in components(page) if getattr(c, "id", None) == "compare-filters")
    assert section.children[0].children == "filters: hmax vs lenet5"
    grids = [c for c in components(section)
             if isinstance(getattr(c, "id", None), dict) and c.id.get("type") == "probe-grid"]
    shown = {r["run"]: r for r in grids[0].rowData}
    truth = _table(call_hook("filters", "compare_figures",
                             [RunView(hmax), RunView(lenet)]).blocks)
    assert set(shown) == set(truth.index) == {"hmax", "lenet5"}
    graphs = [c for c in components(section) if c.__class__.__name__ == "Graph"]
    assert len(graphs) == 2  # the measures and the coverage
