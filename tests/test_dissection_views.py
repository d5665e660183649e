"""``dissection``'s view hooks on hand-made tables (exact numbers) and on one real run."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import probe
from probe.plugins.analyses.dissection import Dissection
from probe.plugins.analyses.dissection.view_data import (
    MIN_IMAGES,
    MIN_IMAGES_PER_CONCEPT,
    hierarchy_sentence,
)
from probe.sample_runs import write_tables_run
from probe.testing import DEFAULT_SETUPS
from probe.views import (
    CATEGORY_COLORS,
    Facts,
    Figure,
    Headline,
    Note,
    Pictures,
    RunView,
    Table,
    UnitColumns,
)

#: id, name, category of the hand-made concepts.
CONCEPTS = {1: ("red", "color"), 2: ("striped", "texture"), 3: ("wheel", "part"),
            4: ("car", "object"), 5: ("dog", "object"), 6: ("sky", "scene")}
#: (layer, unit, best label or -1, best IoU, gap to the runner-up "sky" or None).
UNITS = [("conv1", 0, 1, 0.10, 0.03), ("conv1", 1, 2, 0.08, 0.01), ("conv1", 2, 3, 0.03, 0.02),
         ("conv1", 3, -1, 0.0, None),
         ("conv2", 0, 3, 0.12, 0.05), ("conv2", 1, 3, 0.09, 0.04), ("conv2", 2, 1, 0.02, 0.01),
         ("conv2", 3, 4, 0.05, 0.02),
         ("conv3", 0, 4, 0.20, 0.10), ("conv3", 1, 4, 0.15, 0.06), ("conv3", 2, 3, 0.05, 0.01),
         ("conv3", 3, 5, 0.01, 0.005)]
LAYERS = ["conv1", "pool1", "conv2", "conv3"]  # pool1 is not dissected
MASK = 8


def hand_tables(layers: tuple[str, ...] = ("conv1", "conv2", "conv3"),
                extra_concepts: int = 0) -> dict[str, dict[str, pd.DataFrame]]:
    """Dissection tables of :data:`UNITS` (only ``layers``), consistent with each other."""
    units, labels, exemplars = [], [], []
    for layer, unit, label, iou, gap in UNITS:
        if layer not in layers:
            continue
        name, category = CONCEPTS.get(label, ("", ""))
        units.append({"layer": layer, "unit": unit, "label": label, "name": name,
                      "category": category, "iou": iou, "is_detector": iou > 0.04,
                      "threshold": 1.5 + unit, "threshold_method": "exact",
                      "threshold_error_bound": 0.0, "quantile": 0.005,
                      "activations": 200 * MASK * MASK})
        ranked = [] if label < 0 else [(label, iou)]
        ranked.append((6, 0.0 if gap is None else iou - gap))
        for rank, (lab, value) in enumerate(sorted(ranked, key=lambda x: -x[1])):
            labels.append({"layer": layer, "unit": unit, "category": CONCEPTS[lab][1],
                           "rank": rank, "label": lab, "name": CONCEPTS[lab][0], "iou": value,
                           "intersection": 1, "activation": 10, "truth": 50})
        mask = np.zeros((MASK, MASK), dtype=bool)
        mask[:2, :3] = True
        exemplars.append({"layer": layer, "unit": unit, "rank": 0, "image": unit,
                          "activation": 2.5, "active_pixels": 6, "mask_height": MASK,
                          "mask_width": MASK, "mask": np.packbits(mask.ravel()).tobytes()})
    for k in range(extra_concepts):  # more concepts present in the data set
        labels.append({"layer": layers[0], "unit": 0, "category": "object", "rank": 9,
                       "label": 100 + k, "name": f"thing{k}", "iou": 0.0, "intersection": 0,
                       "activation": 10, "truth": 5})
    frames = {
        "units": pd.DataFrame(units), "labels": pd.DataFrame(labels),
        "layers": pd.DataFrame({"layer": list(layers), "layer_index": range(len(layers)),
                                "units": 4, "height": MASK, "width": MASK,
                                "iou_threshold": 0.04}),
        "exemplars": pd.DataFrame(exemplars),
        "edges": pd.DataFrame([{
            "part_layer": "conv2", "part_unit": 0, "part_label": 3, "part_name": "wheel",
            "part_iou": 0.12, "object_layer": "conv3", "object_unit": 0, "object_label": 4,
            "object_name": "car", "object_iou": 0.2, "weight_path": 0.25,
            "ablation_drop": 0.5, "ablation_baseline": 1.0, "ablation_images": 8}]),
    }
    return {"dissection": frames}


def hand_run(path, size: int = 200, layers: tuple[str, ...] = ("conv1", "conv2", "conv3"),
             run_layers: list[str] | None = None, options: dict | None = None,
             extra_concepts: int = 0) -> RunView:
    """A run of :func:`hand_tables` whose data set cannot be reloaded (no images)."""
    write_tables_run(path, hand_tables(layers, extra_concepts), layers=run_layers or LAYERS,
                     dataset={"name": "no-such-dataset", "options": {}, "size": size})
    run = probe.load_run(path)
    run.manifest["analyses"]["dissection"]["options"] = dict(options or {})
    return RunView(run)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> RunView:
    return hand_run(tmp_path_factory.mktemp("hand") / "run")


def notes(blocks: list) -> list[Note]:
    return [b for b in blocks if isinstance(b, Note)]


def test_run_views_hierarchy_sentence_names_categories_and_peaks(run):
    blocks = Dissection.run_views(run)
    sentence = notes(blocks)[0].text
    assert "color: 1 (peak in conv1, 25.0% of its units)" in sentence
    assert "texture: 1 (peak in conv1, 25.0% of its units)" in sentence
    assert "part: 3 (peak in conv2, 50.0% of its units)" in sentence
    assert "object: 3 (peak in conv3, 50.0% of its units)" in sentence
    assert "No detectors of scene." in sentence
    assert "Objects peak later than parts (conv3 after conv2)." in sentence
    assert "agree with the textbook story" in sentence and "contradict" not in sentence
    assert "pool1" in notes(blocks)[1].text and "skipped 1 of the run's 4 layers" in \
        notes(blocks)[1].text
    figures = [b for b in blocks if isinstance(b, Figure)]
    assert [f.name for f in figures].count("dissection-hierarchy") == 1
    assert sum("share of units detecting" in (f.figure.layout.title.text or "")
               for f in figures) == 1
    assert {f.name for f in figures} >= {"dissection-detectors", "dissection-iou",
                                         "dissection-edges"}
    assert all(f.caption for f in figures)
    hierarchy = next(f.figure for f in figures if f.name == "dissection-hierarchy")
    shares = {t.name: list(t.y) for t in hierarchy.data}
    assert shares["part"] == [0.0, 0.5, 0.25] and shares["object"] == [0.0, 0.25, 0.5]
    assert {t.name: t.marker.color for t in hierarchy.data} == \
        {c: CATEGORY_COLORS[c] for c in ("color", "texture", "part", "object", "scene")}
    assert list(hierarchy.data[0].x) == ["conv1", "conv2", "conv3"]
    iou = next(f.figure for f in figures if f.name == "dissection-iou")
    assert iou.layout.shapes[0].y0 == 0.04  # the detector threshold line


def test_hierarchy_sentence_says_when_data_contradict_the_story():
    def counts(shares: dict[str, list[float]]) -> pd.DataFrame:
        return pd.DataFrame([{"layer": f"l{i}", "layer_index": i, "category": c, "units": 10,
                              "detectors": round(s * 10), "unique_concepts": 1,
                              "share_of_units": s}
                             for c, values in shares.items() for i, s in enumerate(values)])

    text = hierarchy_sentence(counts({"color": [0, 0, 0.3], "part": [0, 0.2, 0],
                                      "object": [0.4, 0.1, 0]}), 0.04)
    assert "object: 5 (peak in l0, 40.0% of its units)" in text
    assert "Objects peak earlier than parts (l0 before l1)." in text
    assert "Color peaks (l2) after parts (l1) and objects (l0)." in text
    assert "contradict the textbook story" in text
    text = hierarchy_sentence(counts({"color": [0.1, 0], "part": [0, 0], "object": [0, 0]}),
                              0.04)
    assert "No detectors of part, object." in text
    assert "With no part or object detectors" in text and "cannot be checked" in text
    none = hierarchy_sentence(counts({"color": [0, 0], "part": [0, 0]}), 0.04)
    assert none.startswith("No unit of the 2 dissected layers is a detector")


def test_too_few_images_warning_follows_the_rule(tmp_path):
    def warned(view: RunView) -> bool:
        return any(n.level == "warning" and "too noisy" in n.text
                   for n in notes(Dissection.run_views(view)))

    assert MIN_IMAGES == 100 and MIN_IMAGES_PER_CONCEPT == 10
    view = hand_run(tmp_path / "a", size=MIN_IMAGES - 1)  # 6 concepts: the 100 rule decides
    assert warned(view)
    view.run.manifest["dataset"]["size"] = MIN_IMAGES
    assert not warned(view)
    view = hand_run(tmp_path / "b", size=149, extra_concepts=9)  # 15 concepts: 150 decides
    assert warned(view)
    text = next(n.text for n in notes(Dissection.run_views(view)) if n.level == "warning")
    assert "149 images for 15 concepts" in text and "fewer than 10 images per concept" in text
    view.run.manifest["dataset"]["size"] = 150
    assert not warned(view)


def test_layer_views_mute_exactly_the_non_detectors(run):
    blocks = Dissection.layer_views(run, "conv2")
    counts, units = (b for b in blocks if isinstance(b, Table))
    assert units.muted == "not_detector" and units.links == {"unit": "href"}
    frame = units.frame
    assert list(frame["unit"]) == [0, 1, 3, 2]  # by IoU, descending
    assert list(frame.loc[frame["not_detector"], "unit"]) == [2]
    assert (frame["not_detector"] == (frame["iou"] <= 0.04)).all()
    assert np.allclose(frame["gap"], [0.05, 0.04, 0.02, 0.01])
    assert list(frame["runner_up"]) == ["sky"] * 4
    by_category = counts.frame.set_index("category")
    assert by_category.loc["part", "detectors"] == 2
    assert by_category.loc["part", "concepts"] == "wheel ×2"
    assert by_category.loc["color", "detectors"] == 0


def test_skipped_layer_says_skipped_not_no_detectors(tmp_path, run):
    [note] = Dissection.layer_views(run, "pool1")
    assert "skipped layer pool1" in note.text and "no detectors" not in note.text.lower()
    assert "pooling" in note.text
    chosen = hand_run(tmp_path / "c", options={"layers": ["conv1", "conv2", "conv3"]})
    [note] = Dissection.unit_views(chosen, "pool1", 0)
    assert "not among the layers selected by the dissection.layers option" in note.text


def test_layer_summary_counts_and_blank_for_skipped(run):
    table = Dissection.layer_summary(run)
    frame = table.frame.set_index("layer")
    assert list(frame.index) == LAYERS
    assert frame.loc["pool1"].isna().all()
    assert frame.loc["conv1", "detectors"] == 2 and frame.loc["conv1", "detector_share"] == 0.5
    assert frame.loc["conv2", "detectors"] == 3 and frame.loc["conv2", "detector_share"] == 0.75
    assert list(frame["unique_concepts"].fillna(-1)) == [2, -1, 2, 2]
    assert table.formats["detector_share"] == "percent"


def test_unit_views_of_a_non_detector_without_images(run):
    blocks = Dissection.unit_views(run, "conv2", 2)
    first = notes(blocks)[0].text
    assert "not a detector" in first and "0.02 ≤ threshold 0.04" in first
    facts = dict(next(b for b in blocks if isinstance(b, Facts)).items)
    assert facts["best concept"] == "red" and facts["detector"] is False
    assert facts["gap to runner-up"] == pytest.approx(0.01)
    assert notes(blocks)[1].level == "warning" and run.why_no_images() in notes(blocks)[1].text
    exemplars = next(b for b in blocks if isinstance(b, Table) and b.name ==
                     "dissection-exemplars")
    assert exemplars.frame.iloc[0].to_dict() == {"rank": 1, "image": 2, "activation": 2.5,
                                                 "active_pixels": 6, "mask_share": 6 / 64}
    ranking = next(b.figure for b in blocks if isinstance(b, Figure))
    assert {t.name: t.marker.color for t in ranking.data} == \
        {"color": CATEGORY_COLORS["color"], "scene": CATEGORY_COLORS["scene"]}
    assert ranking.layout.shapes[0].x0 == 0.04


def test_unit_views_links_and_columns(run):
    blocks = Dissection.unit_views(run, "conv2", 0)
    assert not any("not a detector" in n.text for n in notes(blocks))
    links = next(b for b in blocks if isinstance(b, Table) and b.name == "dissection-links")
    assert links.frame[["role", "other", "concept"]].to_dict("records") == [
        {"role": "part of", "other": "conv3 · unit 0", "concept": "wheel → car"}]
    columns = Dissection.unit_columns(run, "conv3")
    assert isinstance(columns, UnitColumns)
    assert (columns.title, columns.score, columns.flag, columns.search) == \
        ("name", "iou", "is_detector", "name")
    assert list(columns.frame["is_detector"]) == [True, True, True, False]
    none = Dissection.unit_columns(run, "conv1").frame.set_index("unit").loc[3]
    assert none["name"] == "" and none["runner_up"] == "" and np.isnan(none["gap"])
    assert Dissection.unit_columns(run, "pool1") is None
    assert Dissection.unit_thumbnails(run, "conv1", [0, 1], 64) == {}


def test_headlines_and_report_sections(run):
    heads = {h.label: h for h in Dissection.headlines(run) if isinstance(h, Headline)}
    assert heads["detector units"].value == 8
    assert heads["detector units"].detail == "of 12 units in 3 dissected layers, IoU > 0.04"
    assert heads["object detectors"].value == 3 and heads["part detectors"].value == 3
    assert heads["most frequent concepts"].value.startswith("car (3), wheel (3)")
    sections = Dissection.report_sections(run)
    assert [s.layer for s in sections] == [None, "conv1", "conv2", "conv3"]
    from probe.plugins.analyses.dissection.unit_views import layer_blocks

    blocks = layer_blocks(run, "conv3", limit=2)
    assert len(blocks[1].frame) == 2 and list(blocks[1].frame["unit"]) == [0, 1]
    assert blocks[2].text.startswith("2 more units of conv3 are not listed")


def test_compare_figures_line_up_by_relative_depth(tmp_path, run):
    other = hand_run(tmp_path / "two", layers=("conv1", "conv3"),
                     run_layers=["conv1", "conv3"], options={"iou_threshold": 0.1})
    run.run.manifest["analyses"]["dissection"]["options"] = {"iou_threshold": 0.04}
    try:
        from probe.views.summary import options_differ

        blocks = Dissection.compare_figures([run, other])
        warning = options_differ([run, other], "dissection")  # the compare page adds it
    finally:
        run.run.manifest["analyses"]["dissection"]["options"] = {}
    assert not notes(blocks)
    assert warning.level == "warning" and "iou_threshold (" in warning.text
    assert "0.04" in warning.text and "0.1" in warning.text
    depth = next(b.figure for b in blocks if getattr(b, "name", "") == "dissection-compare-depth")
    xs = {t.name: list(t.x) for t in depth.data}
    assert xs[f"{run.label} · part"] == [0.0, 0.5, 1.0]
    assert xs[f"{other.label} · part"] == [0.0, 1.0]
    assert {t.line.color for t in depth.data if t.name.endswith("· object")} == \
        {CATEGORY_COLORS["object"]}
    assert depth.layout.yaxis.range == depth.layout.yaxis2.range  # one y-scale
    totals = next(b.figure for b in blocks if getattr(b, "name", "") ==
                  "dissection-compare-totals")
    assert {t.name: list(t.y) for t in totals.data}["object"] == [3, 2]
    assert Dissection.compare_figures([run]) == []


def test_views_of_a_real_dissection_run(tmp_path):
    arch, arch_options, data, data_options = DEFAULT_SETUPS["masks"]
    real = probe.analyze(arch, data, ["dissection"], out=tmp_path / "real",
                         arch_options=arch_options, dataset_options=data_options,
                         batch_size=8, layers=["conv1_1", "pool1", "conv2_1"])
    view = RunView(real)
    blocks = Dissection.run_views(view)
    assert next(n.level for n in notes(blocks)) == "warning"  # 24 images: too few
    assert sum(isinstance(b, Figure) and b.name == "dissection-hierarchy" for b in blocks) == 1
    summary = real.table("dissection", "summary")
    hierarchy = next(b.figure for b in blocks if getattr(b, "name", "") ==
                     "dissection-hierarchy")
    for trace in hierarchy.data:
        expected = summary[summary["category"] == trace.name]["share_of_units"]
        assert list(trace.y) == pytest.approx(list(expected))
    frame = Dissection.layer_summary(view).frame.set_index("layer")
    units = real.table("dissection", "units")
    assert np.isnan(frame.loc["pool1", "detectors"])
    assert frame.loc["conv1_1", "detectors"] == units[units["layer"] == "conv1_1"][
        "is_detector"].sum()
    best = units.sort_values("iou", ascending=False).iloc[0]
    pictures = next(b for b in Dissection.unit_views(view, best["layer"], int(best["unit"]))
                    if isinstance(b, Pictures))
    assert len(pictures.items) == 8
    assert Image.open(io.BytesIO(pictures.items[0].png)).format == "PNG"
    thumbs = Dissection.unit_thumbnails(view, "conv1_1", [0, 1, 2], 48)
    assert sorted(thumbs) == [0, 1, 2]
    assert max(Image.open(io.BytesIO(thumbs[0])).size) == 48
    top = [b for b in Dissection.headlines(view) if isinstance(b, Pictures)]
    if units["is_detector"].any():
        assert 1 <= len(top[0].items) <= 6 and "IoU" in top[0].items[0].caption


def test_both_stacked_category_charts_list_the_categories_in_one_order():
    """The hierarchy chart and the detector-counts chart draw the same stacks; their
    legends list the categories in the same (stack) order, in the same colours."""
    from probe.plugins.analyses.dissection.figures import detector_counts_figure, hierarchy_figure

    summary = pd.DataFrame([
        {"layer": layer, "layer_index": i, "category": category, "detectors": d,
         "unique_concepts": d, "share_of_units": d / 10}
        for i, layer in enumerate(("a", "b")) for category, d in
        (("color", 1), ("texture", 0), ("part", 2), ("object", 1), ("scene", 0))])
    charts = [hierarchy_figure(summary), detector_counts_figure(summary)]

    # plotly.js reverses a stacked chart's legend by itself only when no trace has a
    # legend group (the counts chart has them): the order must be declared, not left
    # to that default, for the two legends to agree
    orders = [fig.layout.legend.traceorder for fig in charts]
    assert orders == ["reversed", "reversed"]
    entries = [[(t.name, t.marker.color) for t in fig.data if t.showlegend is not False]
               for fig in charts]
    assert entries[0] == entries[1]
    assert [name for name, _ in entries[0]][::-1][0] == "scene"  # the top of the stack first
