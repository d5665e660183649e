"""``compositional``'s views: the exemplars' masks (table, unit page overlays), the parts
formulas beside dissection's part → object edges, and the report.

One planted run serves every test: two 1×1 convolutions on images whose channels ARE
the masks of car, wheel and red. Layer ``a`` copies them (a0 = car, a1 = wheel, a2 = red);
layer ``b`` has b0 = car OR wheel, b1 = car AND NOT wheel, b2 = car AND wheel. Both
``dissection`` and ``compositional`` run on it, with thresholds at 0 (quantile 0.5:
fewer than half the values are positive), so every mask is a planted one.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from dash_client import components, filled, ids
from PIL import Image
from test_compositional import Planted
from torch import nn

import probe
from probe import ArchitectureSpec, Option, hookimpl
from probe.host import get_host
from probe.plugins.analyses.compositional import Compositional
from probe.plugins.analyses.compositional.bits import pack_bits
from probe.plugins.analyses.compositional.edges import agreement_by_layer, agreement_by_unit
from probe.plugins.analyses.compositional.exemplars import to_packbits
from probe.plugins.analyses.compositional.mask_views import OVERLAY_SIZE
from probe.views import Pictures, RunView, Table
from probe.views.images import mask_overlay, thumbnail, unpack_mask

SAMPLE = 20  # compositional.images


def two_layers(**_options) -> nn.Module:
    """a = identity of (car, wheel, red); b = car + wheel, car − wheel, car + wheel − 1."""
    a, b = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        a.weight.zero_()
        a.bias.zero_()
        for i in range(3):
            a.weight[i, i] = 1.0
        b.weight.zero_()
        b.weight[0, 0], b.weight[0, 1] = 1.0, 1.0
        b.weight[1, 0], b.weight[1, 1] = 1.0, -1.0
        b.weight[2, 0], b.weight[2, 1] = 1.0, 1.0
        b.bias.copy_(torch.tensor([0.0, 0.0, -1.0]))
    return nn.Sequential(a, nn.ReLU(), b, nn.ReLU())


class TwoPlanted(Planted):
    """The planted images under this module's own data-set name (the run records it)."""

    name = "test-compositional-two"


class _Plugin:
    @hookimpl
    def probe_register_architectures(self, register):
        register(ArchitectureSpec(
            name="test-compositional-two", build=two_layers, task="classification",
            family="test", input_size=16, in_channels=3,
            options=(Option("num_classes", int, 1), Option("in_channels", int, 3)),
            layers=lambda model: {"a": "1", "b": "3"}))

    @hookimpl
    def probe_register_datasets(self, register):
        register(probe.DatasetSpec(name="test-compositional-two", load=TwoPlanted,
                                   options=(Option("size", int, 24), Option("seed", int, 0)),
                                   description="planted concept masks", has_masks=True))


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):
    """The run directory's parent (for the dashboard) and the run, plugin registered."""
    host = get_host()
    host.add_plugin(_Plugin(), "test-compositional-two")
    root = tmp_path_factory.mktemp("compositional-views")
    try:
        probe.analyze("test-compositional-two", "test-compositional-two",
                      [("dissection", {"quantile": 0.5}),
                       ("compositional", {"quantile": 0.5, "images": SAMPLE})],
                      out=root / "two", device="cpu", batch_size=8)
        yield root, probe.load_run(root / "two")
    finally:
        host.remove_plugin("test-compositional-two")


def _masks() -> dict[str, np.ndarray]:
    data = Planted()
    return {"car": (data.masks[:, 0] > 0).numpy(), "wheel": (data.masks[:, 1] > 0).numpy()}


# -- the exemplars table ------------------------------------------------------------------


def test_packed_words_become_numpy_packbits_of_the_same_pixels():
    gen = torch.Generator().manual_seed(4)
    masks = torch.rand((5, 2, 150), generator=gen) > 0.5  # 150 px: 3 words, 19 bytes
    words = pack_bits(masks).numpy()
    assert np.array_equal(to_packbits(words, 150), np.packbits(masks.numpy(), axis=-1))


def test_exemplars_hold_the_planted_masks_of_unit_terms_and_formula(planted):
    _, run = planted
    masks = _masks()
    car, wheel = masks["car"][:SAMPLE], masks["wheel"][:SAMPLE]
    units = run.table("compositional", "units").query("layer == 'b'").set_index("unit")
    ex = run.table("compositional", "exemplars")
    assert set(ex["mask_height"]) == {16} and {len(m) for m in ex["mask"]} == {32}  # 256 bits
    planted_units = {0: car | wheel, 1: car & ~wheel}
    for unit, truth in planted_units.items():
        rows = ex[(ex["layer"] == "b") & (ex["unit"] == unit)]
        # top 3 sample images by |U ∧ F| (U = F here: |U|), ties to the lower index
        overlap = truth.reshape(SAMPLE, -1).sum(1)
        order = sorted(range(SAMPLE), key=lambda i: (-overlap[i], i))[:3]
        assert rows.drop_duplicates("rank")["image"].tolist() == order
        assert rows.drop_duplicates("rank")["overlap"].tolist() == [overlap[i] for i in order]
        formula = units.loc[unit, "formula"]
        terms = formula.replace(" AND NOT ", " OR ").split(" OR ")
        for record in rows.to_dict("records"):
            mask = unpack_mask(record["mask"], 16, 16)
            image = record["image"]
            expected = truth[image] if record["role"] in ("unit", "formula") else \
                masks[record["concept"]][image]
            assert np.array_equal(mask, expected), record
            assert record["pixels"] == int(expected.sum())
        roles = rows[rows["rank"] == 0][["role", "term", "concept"]].values.tolist()
        assert roles == [["unit", -1, ""], ["term", 0, terms[0]], ["term", 1, terms[1]],
                         ["formula", -1, formula]]


# -- the unit page ------------------------------------------------------------------------


def _pictures(component) -> list[tuple[str, np.ndarray]]:
    out = []
    for item in components(component):
        src = getattr(item, "src", None)
        if isinstance(src, str) and src.startswith("data:image/png;base64,"):
            pixels = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
            out.append((item.alt, np.asarray(pixels.convert("RGB"))))
    return out


def test_unit_page_overlays_the_unit_each_term_and_the_formula(planted):
    from probe.dashboards import create_app
    from probe.dashboards.data import clear_caches
    from probe.dashboards.pages import unit

    root, run = planted
    clear_caches()
    create_app(root)
    page = filled(unit.layout(run="two", layer="b", unit="1"))
    section = next(c for c in components(page) if getattr(c, "id", None) == "unit-compositional")
    pictures = _pictures(section)
    ex = run.table("compositional", "exemplars").query("layer == 'b' and unit == 1")
    assert len(pictures) == len(ex) == 3 * 4  # 3 images × (unit, car, wheel, formula)
    masks = _masks()
    data = Planted()
    formula = ex[ex["role"] == "formula"]["concept"].iloc[0]
    assert formula == "car AND NOT wheel"
    for number, image in enumerate(ex.drop_duplicates("rank")["image"]):
        truth = {"unit": masks["car"][image] & ~masks["wheel"][image],
                 "term 1: car": masks["car"][image], "term 2: wheel": masks["wheel"][image],
                 f"formula: {formula}": masks["car"][image] & ~masks["wheel"][image]}
        drawn = pictures[4 * number:4 * number + 4]
        for (caption, pixels), (what, mask) in zip(drawn, truth.items(), strict=True):
            assert caption.startswith(f"{what} · {int(mask.sum())} px"), caption
            expected = thumbnail(mask_overlay(data[int(image)]["image"], mask), OVERLAY_SIZE)
            assert np.array_equal(pixels, expected), caption
    assert "IoU with the unit here 1.000" in drawn[3][0]


def test_unit_masks_without_images_are_listed_as_numbers(planted):
    _, run = planted

    class NoImages(RunView):
        def why_no_images(self) -> str | None:
            return "not here"

    blocks = Compositional.unit_views(NoImages(run), "b", 0)
    table = next(b for b in blocks if isinstance(b, Table) and b.name == "compositional-masks")
    assert not any(isinstance(b, Pictures) for b in blocks)
    ex = run.table("compositional", "exemplars").query("layer == 'b' and unit == 0")
    assert table.frame["pixels"].tolist() == ex["pixels"].tolist()


# -- parts formulas beside dissection's edges -----------------------------------------------


def test_agreement_of_hand_made_formulas_and_edges():
    """L2: units 0 and 1 are car, unit 4 house (dissection calls it car: its edge is left
    out); L3 unit 0 car with one edge of no weight path."""
    parts = pd.DataFrame({
        "layer": ["L2", "L2", "L2", "L3"], "unit": [0, 1, 4, 0],
        "object": ["car", "car", "house", "car"],
        "formula": ["wheel OR door", "window", "door", ""],
        "own_parts": [True, False, True, False], "terms": [[2, 3], [5], [3], []]})
    edges = pd.DataFrame({
        "part_layer": "L1", "part_unit": [7, 8, 7, 9, 9], "part_label": [2, 6, 2, 3, 3],
        "object_layer": ["L2", "L2", "L2", "L2", "L3"], "object_unit": [0, 0, 1, 4, 0],
        "object_name": ["car", "car", "car", "car", "car"],
        "weight_path": [0.3, 0.1, 0.2, 0.9, np.nan],
        "ablation_drop": [0.5, -0.2, 0.1, 0.9, np.nan]})
    per_unit = agreement_by_unit(parts, edges)
    assert per_unit["edges"].tolist() == [2, 1, 0, 1]
    assert per_unit["named"].tolist() == [1, 0, 0, 0]
    assert per_unit.loc[0, "named_weight"] == pytest.approx(0.3)
    assert per_unit.loc[1, "named_weight"] == 0.0
    layers = agreement_by_layer(per_unit, ["L1", "L2", "L3"]).set_index("layer")
    l2, l3 = layers.loc["L2"], layers.loc["L3"]
    assert (l2["object_units"], l2["linked_units"], l2["edges"]) == (3, 2, 3)
    assert l2["own_parts"] == pytest.approx(2 / 3) and l2["linked_own_parts"] == 0.5
    assert l2["edges_named"] == pytest.approx(1 / 3)
    assert l2["weight_named"] == pytest.approx(0.3 / 0.6)
    assert l2["drop_named"] == pytest.approx(0.5 / 0.6)  # drops clipped at 0
    assert (l3["linked_units"], l3["edges"], l3["edges_named"]) == (1, 1, 0.0)
    assert np.isnan(l3["weight_named"]) and np.isnan(l3["drop_named"])
    none = agreement_by_layer(agreement_by_unit(parts, edges.iloc[:0]))  # no edges at all
    assert none["edges"].tolist() == [0, 0] and none["linked_units"].tolist() == [0, 0]
    assert none["own_parts"].tolist() == pytest.approx([2 / 3, 0.0])


def test_planted_parts_formulas_beside_dissection_edges(planted):
    """By hand: dissection links wheel (a1) to the car units b0 and b1 (weight path
    |1| / (|1| + |1|) = 1/2 each). b0's parts formula is ``wheel`` (own parts, names the
    edge), b1 (car AND NOT wheel) meets no wheel (no formula): own parts 1/2, edges
    named 1/2, weight 1/2; zeroing a1 lowers b0 by |wheel| / |car + wheel| and raises
    b1, so the positive drops all come from the named edge (share 1)."""
    _, run = planted
    view = RunView(run)
    blocks = Compositional.run_views(view)
    names = [b.name for b in blocks]
    assert names == ["compositional-gain", "compositional-layers", "compositional-parts",
                     "compositional-parts-edges", "compositional-parts-edges-layers"]
    edges = run.table("dissection", "edges")
    assert edges[["part_layer", "part_unit", "object_layer", "object_unit"]].values.tolist() \
        == [["a", 1, "b", 0], ["a", 1, "b", 1]]
    table = next(b for b in blocks if b.name == "compositional-parts-edges-layers")
    layers = table.frame.set_index("layer")
    b = layers.loc["b"]
    assert (b["object_units"], b["linked_units"], b["edges"]) == (2, 2, 2)
    assert b["own_parts"] == 0.5 and b["edges_named"] == 0.5 and b["weight_named"] == 0.5
    assert b["drop_named"] == 1.0
    data = Planted()
    car, wheel = (data.masks[:, 0] > 0).numpy(), (data.masks[:, 1] > 0).numpy()
    drop = edges.set_index("object_unit")["ablation_drop"]
    assert drop[0] == pytest.approx(wheel.sum() / (car.sum() + wheel.sum()))
    assert drop[1] < 0
    a = layers.loc["a"]  # a0 (car) is an object unit with no earlier layer to be wired from
    assert (a["object_units"], a["linked_units"], a["edges"]) == (1, 0, 0)
    figure = next(b for b in blocks if b.name == "compositional-parts-edges").figure
    bars = {t.name: list(t.y) for t in figure.data}
    assert bars["parts formula is own parts (compositional)"] == [a["own_parts"], 0.5]
    assert bars["edges from a part the formula names (dissection)"][1] == 0.5
    layer = {blk.name: blk for blk in Compositional.layer_views(view, "b")}
    rows = layer["compositional-parts-objects"].frame.set_index("unit")
    assert rows["edges"].tolist() == [1, 1] and rows["named"].tolist() == [1, 0]
    facts = {blk.name: dict(blk.items) for blk in Compositional.unit_views(view, "b", 0)
             if hasattr(blk, "items") and blk.name == "compositional-parts"}
    assert facts["compositional-parts"] == {
        "object": "car", "parts formula": "wheel", "own parts": True,
        "parts formula IoU": pytest.approx(rows.loc[0, "iou"]),
        "dissection edges into the unit": 1, "from a part the formula names": 1}


# -- the report ---------------------------------------------------------------------------


def test_report_and_dashboard_show_the_gain_table_and_the_parts_agreement_plots(
        planted, tmp_path: Path):
    import plotly.graph_objects as go

    from probe.dashboards import create_app
    from probe.dashboards.data import clear_caches
    from probe.dashboards.pages import layers as layers_page
    from probe.report.html import build_report

    root, run = planted
    html = build_report([run.path], tmp_path / "report.html").read_text()
    part = html[html.index('data-analysis="compositional"'):]
    assert "mean IoU of the best formula by length" in part
    assert "mean concept IoU" in part and "formulas scored" in part  # the per-layer table
    layers = run.table("compositional", "layers").set_index("layer")
    for layer in ("a", "b"):
        assert f"<td>{layers.loc[layer, 'mean_gain']:.3f}</td>" in part
    assert "object units explained by their own parts" in part
    assert "beside wiring" in part and "edges named" in part
    assert "<td>50.0%</td>" in part  # layer b: own parts, edges named, weight named
    clear_caches()
    create_app(root)
    section = layers_page.run_views_section(run="two", analysis="compositional")
    shown = [i for i in ids(section) if i.startswith(("layers-compositional-",
                                                     "table-layers-compositional-"))]
    assert [i.split("-", 3 if i.startswith("table") else 2)[-1] for i in shown] == [
        "0-compositional-gain", "1-compositional-layers", "2-compositional-parts",
        "3-compositional-parts-edges", "4-compositional-parts-edges-layers"]
    figures = Compositional.figures(run.all_tables("compositional"))
    assert [type(f) for f in figures] == [go.Figure, go.Figure]
    parts = run.table("compositional", "parts_layers")
    assert list(figures[1].data[0].y) == parts["own_parts"].tolist() == [1.0, 0.5]
