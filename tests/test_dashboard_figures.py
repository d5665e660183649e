"""Pure figure/table builders of the dashboard (shared with ``probe report``), by hand numbers."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from probe.dashboards import figures as F


def _dissection() -> pd.DataFrame:
    # layer a: 4 units, detectors: 2 colour, 1 part; layer b: 2 units, 1 object detector
    return pd.DataFrame({
        "layer": ["a", "a", "a", "a", "b", "b"], "unit": [0, 1, 2, 3, 0, 1],
        "label": [5, 5, 9, 7, 30, 31],
        "name": ["red", "red", "wheel", "sky", "car", "dog"],
        "category": ["color", "color", "part", "scene", "object", "object"],
        "iou": [0.10, 0.05, 0.07, 0.01, 0.20, 0.03],
        "is_detector": [True, True, True, False, True, False],
    })


def test_detector_shares_by_hand() -> None:
    share = F.detector_shares(_dissection(), layers=["a", "b"]).set_index("layer")
    assert share.loc["a", "color"] == pytest.approx(2 / 4)
    assert share.loc["a", "part"] == pytest.approx(1 / 4)
    assert share.loc["a", "object"] == 0
    assert share.loc["b", "object"] == pytest.approx(1 / 2)
    assert "scene" not in share.columns  # the sky unit is no detector


def test_hierarchy_figure_stacks_shares_in_layer_order() -> None:
    fig = F.make_hierarchy_figure(_dissection(), layers=["b", "a"])
    assert fig.layout.barmode == "stack"
    traces = {t.name: t for t in fig.data}
    assert list(traces) == ["color", "part", "object"]
    assert list(traces["color"].x) == ["b", "a"]
    assert list(traces["color"].y) == pytest.approx([0.0, 0.5])
    assert list(traces["object"].y) == pytest.approx([0.5, 0.0])
    empty = F.make_hierarchy_figure(None)
    assert empty.layout.annotations[0].text == "no dissection in this run"


def test_layer_summary_combines_the_analyses() -> None:
    units = pd.DataFrame({"layer": ["a"] * 4 + ["b"] * 2, "unit": [0, 1, 2, 3, 0, 1],
                          "max": [1.0, 2.0, 3.0, 6.0, 0.5, 1.5],
                          "fraction_positive": [0.5] * 6})
    errors = pd.DataFrame({"layer": ["a", "a", "b", "b"], "transform": ["shift"] * 4,
                           "magnitude": [1, 2, 1, 2],
                           "relative_error": [0.1, 0.3, 0.2, math.inf]})
    filters = pd.DataFrame({"layer": ["a", "a", "a"], "unit": [0, 1, 2],
                            "gabor_r2": [0.9, 0.1, 0.5], "separability": [0.2, 0.4, 0.9]})
    summary = F.make_layer_summary(units, _dissection(), errors, filters,
                                   layers=["a", "b"]).set_index("layer")
    assert summary.loc["a", "units"] == 4 and summary.loc["b", "units"] == 2
    assert summary.loc["a", "mean_max_activation"] == pytest.approx(3.0)
    assert summary.loc["a", "detectors"] == 3 and summary.loc["b", "detectors"] == 1
    assert summary.loc["a", "detector_share"] == pytest.approx(0.75)
    assert summary.loc["a", "unique_concepts"] == 2  # red twice, wheel once
    assert summary.loc["a", "equivariance_error"] == pytest.approx(0.2)
    assert summary.loc["b", "equivariance_error"] == pytest.approx(0.2)  # inf left out
    assert summary.loc["a", "filter_r2"] == pytest.approx(0.5)  # median
    assert summary.loc["a", "filter_separability"] == pytest.approx(0.4)
    assert math.isnan(summary.loc["b", "filter_r2"])


def test_unit_table_merges_and_names_concepts() -> None:
    units = pd.DataFrame({"layer": "a", "unit": [0, 1, 2, 3], "mean": [0.1, 0.2, 0.3, 0.4],
                          "std": 1.0, "max": [1.0, 2.0, 3.0, 4.0], "fraction_positive": 0.5})
    table = F.make_unit_table(units, _dissection()[lambda d: d.layer == "a"])
    assert list(table["unit"]) == [0, 1, 2, 3]
    assert list(table["label"]) == ["red", "red", "wheel", "sky"]  # names, not ids
    assert list(table["is_detector"]) == [True, True, True, False]
    assert list(table["max"]) == [1.0, 2.0, 3.0, 4.0]
    only_stats = F.make_unit_table(units)
    assert "label" not in only_stats and len(only_stats) == 4


@pytest.mark.parametrize(("query", "expected"), [
    ("{iou} s> 0.1", [("iou", ">", "0.1")]),
    ('{label} contains "red" && {unit} = 3', [("label", "contains", "red"), ("unit", "=", "3")]),
    ("{category} part", [("category", "contains", "part")]),
    ("{label} sky", [("label", "contains", "sky")]),
    ("{iou} ge 0.2", [("iou", ">=", "0.2")]),
    ("", []),
])
def test_parse_filter_query(query: str, expected: list[tuple[str, str, str]]) -> None:
    assert F.parse_filter_query(query) == expected


def test_filter_sort_page_matches_pandas() -> None:
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"unit": np.arange(100), "iou": rng.random(100),
                          "label": rng.choice(["red", "wheel", "car"], 100)})
    rows, pages = F.filter_sort_page(table, '{iou} s> 0.5 && {label} contains "e"',
                                     [{"column_id": "iou", "direction": "desc"}], 1, 10)
    want = table[(table.iou > 0.5) & table.label.str.contains("e")].sort_values(
        "iou", ascending=False)
    assert pages == -(-len(want) // 10)
    assert list(rows["unit"]) == list(want["unit"].iloc[10:20])
    last, _ = F.filter_sort_page(table, None, None, 99, 30)  # past the end: last page
    assert list(last["unit"]) == list(range(90, 100))
    with pytest.raises(ValueError, match="unknown column 'nope'"):
        F.filter_sort_page(table, "{nope} = 1")
    with pytest.raises(ValueError, match="numeric"):
        F.filter_sort_page(table, "{iou} > abc")


def test_runs_table_from_manifests() -> None:
    manifest = {"arch": {"name": "vgg11", "checkpoint": "/w/vgg.safetensors",
                         "checkpoint_sha256": "abcdef0123456789"},
                "dataset": {"name": "parts", "size": 32}, "status": "partial",
                "layers": ["c1", "c2"], "timings": {"total": 12.345},
                "analyses": {"unit-stats": {"status": "complete"},
                             "dissection": {"status": "failed"}}}
    row = F.make_runs_table({"r1": manifest}).iloc[0]
    assert row["architecture"] == "vgg11"
    assert row["checkpoint"] == "vgg.safetensors (abcdef01)"
    assert row["dataset"] == "parts (32 images)"
    assert row["analyses"] == "unit-stats, dissection [failed]"
    assert row["status"] == "partial" and row["layers"] == 2 and row["seconds"] == 12.35


def test_compare_table_and_figure() -> None:
    a = pd.DataFrame({"layer": ["c1", "c2"], "units": [4, 8], "detectors": [1, 3]})
    b = pd.DataFrame({"layer": ["c1", "c3"], "units": [4, 16]})
    table = F.make_compare_table(a, b, "A", "B")
    assert list(table.columns) == ["layer", "units [A]", "units [B]", "detectors [A]"]
    assert list(table["layer"]) == ["c1", "c2", "c3"]
    assert table["units [B]"].tolist()[0] == 4 and math.isnan(table["units [B]"].tolist()[1])
    fig = F.make_compare_figure(a, b, "A", "B", "detectors")
    assert [t.name for t in fig.data] == ["A"] and list(fig.data[0].y) == [1, 3]


def test_concept_ranking_and_equivariance_figures() -> None:
    ranking = pd.DataFrame({"name": ["red", "car", "sky"], "category": ["color", "object",
                                                                        "scene"],
                            "iou": [0.05, 0.2, 0.01]})
    fig = F.make_concept_ranking_figure(ranking, top=2, threshold=0.04)
    assert list(fig.data[0].y) == ["red (color)", "car (object)"]  # best at the top
    assert list(fig.data[0].x) == [0.05, 0.2]
    errors = pd.DataFrame({"layer": ["a", "a", "a", "b"], "transform": ["shift", "shift",
                                                                        "flip", "shift"],
                           "magnitude": [2, 1, 1, 1], "relative_error": [0.4, 0.2, 0.0, 9.0]})
    fig = F.make_layer_equivariance_figure(errors, "a")
    shift = next(t for t in fig.data if t.name == "shift")
    assert list(shift.x) == [1, 2] and list(shift.y) == [0.2, 0.4]
    assert [t.name for t in fig.data] == ["shift", "flip"]  # one panel each, layer b left out
    assert F.make_layer_equivariance_figure(errors, "c").layout.annotations[0].text == \
        "no equivariance rows for layer c"


def test_filter_figure_falls_back_to_separability() -> None:
    filters = pd.DataFrame({"layer": ["a", "a", "b"], "unit": [0, 1, 0],
                            "gabor_r2": [float("nan")] * 3, "separability": [0.2, 0.4, 0.9]})
    fig = F.make_filter_figure(filters, ["a", "b"])
    assert fig.layout.yaxis.title.text == "separability"
    assert [list(t.y) for t in fig.data] == [[0.2, 0.4], [0.9]]
    fitted = filters.assign(gabor_r2=[0.5, 0.7, 0.9])
    assert F.make_filter_figure(fitted).layout.yaxis.title.text == "gabor_r2"


def test_timings_figure_stacks_analyses_per_run() -> None:
    manifests = {"a": {"timings": {"analyses": {"unit-stats": 1.5, "dissection": 3.0}}},
                 "b": {"timings": {"analyses": {"unit-stats": 0.5}}}}
    fig = F.make_timings_figure(manifests)
    bars = {t.name: list(t.y) for t in fig.data}
    assert bars == {"unit-stats": [1.5, 0.5], "dissection": [3.0, 0.0]}
    assert list(fig.data[0].x) == ["a", "b"]
