"""``dissection`` end to end: planted detectors, shards == one pass, tables, figures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import probe
from probe import Batch, ModelHandle, ProbeDataset, RunContext
from probe.plugins.analyses.dissection import Dissection
from probe.plugins.analyses.dissection.accumulator import DissectionAccumulator
from probe.plugins.analyses.dissection.labels import LabelSpace
from probe.plugins.analyses.dissection.tables import TABLES, unpack_mask
from probe.preprocessing import Preprocessing
from probe.state import reduce_in_process
from probe.testing import check_analysis

CONCEPTS = pd.DataFrame({"id": [1, 2, 3, 4], "name": ["car", "wheel", "red", "striped"],
                         "category": ["object", "part", "color", "texture"]})


def check_counts(tables: dict[str, pd.DataFrame]) -> None:
    """I <= A (and I <= T) for every unit and label the ``labels`` table holds."""
    labels = tables["labels"]
    assert len(labels) > 0
    assert (labels["intersection"] <= labels["activation"]).all()
    assert (labels["intersection"] <= labels["truth"]).all()


class Planted(ProbeDataset):
    """16×16 images whose channels ARE the concept masks (car, wheel, red)."""

    name = "planted"
    image_size = 16
    mask_size = 16
    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)
    concepts = CONCEPTS
    mask_categories = ("object", "part", "color")
    scalar_categories = ("texture",)
    part_parents = pd.DataFrame({"part_id": [2], "object_id": [1]})

    def __init__(self, count: int = 24, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.masks = torch.zeros((count, 3, 16, 16), dtype=torch.int64)
        for i in range(count):
            for layer, (label, low, high) in enumerate(((1, 4, 7), (2, 1, 3), (3, 1, 5))):
                top, left = torch.randint(0, 10, (2,), generator=gen).tolist()
                h, w = torch.randint(low, high, (2,), generator=gen).tolist()
                self.masks[i, layer, top:top + h, left:left + w] = label
        self.scalars = (torch.arange(count) % 3 == 0).long().view(-1, 1) * 4

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: int) -> dict:
        return {"image": (self.masks[index] > 0).float(), "label": 0, "index": index,
                "masks": self.masks[index], "scalars": self.scalars[index]}


def planted_model() -> nn.Module:
    """Channel k of the 1×1 conv outputs the mask of concept k+1 (the identity)."""
    conv = nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
        conv.bias.zero_()
    return nn.Sequential(conv, nn.ReLU())


@pytest.mark.parametrize("rule", ["paper", "lite", "unconditioned"])
def test_planted_units_are_labelled_with_iou_one(tmp_path, rule):
    data = Planted()
    coverage = (data.masks > 0).float().mean().item()
    run = probe.analyze(planted_model(), data,
                        [("dissection", {"quantile": 0.3, "rule": rule, "top_labels": 4})],
                        out=tmp_path / rule, layers=["1"], batch_size=10)
    check_counts({"labels": run.table("dissection", "labels")})
    assert coverage < 0.3  # so the threshold falls on the zeros: T = 0, M_k = mask
    units = run.table("dissection", "units")
    assert units["name"].tolist() == ["car", "wheel", "red"]
    assert units["category"].tolist() == ["object", "part", "color"]
    assert units["iou"].tolist() == [1.0, 1.0, 1.0]
    assert units["threshold"].tolist() == [0.0, 0.0, 0.0]
    assert units["is_detector"].all()
    summary = run.table("dissection", "summary")
    assert summary.set_index("category")["detectors"].to_dict() == {
        "object": 1, "part": 1, "color": 1, "texture": 0}
    exemplars = run.table("dissection", "exemplars")
    for _, row in exemplars.iterrows():  # each stored mask is the concept mask of its image
        unit = int(row["unit"])
        truth = (data.masks[int(row["image"]), unit] > 0).numpy()
        assert np.array_equal(unpack_mask(row), truth)


def test_hierarchy_edge_from_planted_part_to_object(tmp_path):
    """A second conv makes its unit 0 = car + wheel: wheel (part) feeds car (object)."""
    first = planted_model()
    second = nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        second.weight.zero_()
        second.bias.zero_()
        second.weight[0, 0] = 1.0  # car
        second.weight[0, 1] = 1.0  # + wheel
        second.weight[1, 1] = 1.0
    model = nn.Sequential(*first, second, nn.ReLU())
    run = probe.analyze(model, Planted(count=30, seed=1),
                        [("dissection", {"quantile": 0.3, "ablation_images": 30})],
                        out=tmp_path / "h", layers=["1", "3"], batch_size=16)
    check_counts({"labels": run.table("dissection", "labels")})
    edges = run.table("dissection", "edges")
    mine = edges[(edges["part_layer"] == "1") & (edges["object_layer"] == "3")
                 & (edges["part_unit"] == 1) & (edges["object_unit"] == 0)]
    units = run.table("dissection", "units").set_index(["layer", "unit"])
    assert units.loc[("3", 0), "name"] == "car"
    assert len(mine) == 1
    row = mine.iloc[0]
    assert (row["part_name"], row["object_name"]) == ("wheel", "car")
    assert row["weight_path"] == pytest.approx(0.5)  # |W| path: car 1, wheel 1
    car = torch.stack([Planted(count=30, seed=1)[i]["image"][:2] for i in range(30)])
    expected = 1 - car[:, 0].mean() / car.sum(1).mean()  # mean(car) / mean(car + wheel)
    assert row["ablation_drop"] == pytest.approx(float(expected), rel=1e-6)


def smooth_batches(seed: int = 0, count: int = 20, batch: int = 5):
    gen = torch.Generator().manual_seed(seed)
    acts = torch.nn.functional.avg_pool2d(torch.randn((count, 6, 12, 12), generator=gen),
                                          3, 1, 1)[:, :, ::2, ::2].contiguous()
    masks = torch.randint(0, 5, (count, 3, 12, 12), generator=gen)
    masks[:, 2][masks[:, 2] == 1] = 0
    scalars = torch.randint(0, 2, (count, 1), generator=gen) * 4
    out = []
    for start in range(0, count, batch):
        sl = slice(start, start + batch)
        out.append(dict(acts=acts[sl], masks=masks[sl], scalars=scalars[sl],
                        indices=torch.arange(start, min(start + batch, count))))
    return out


def make_batch(part: dict, pass_index: int) -> Batch:
    n = len(part["indices"])
    images = torch.rand((n, 3, 12, 12))
    return Batch(images=images, inputs=images, indices=part["indices"],
                 labels=torch.zeros(n), outputs=torch.zeros(n), activations={"l": part["acts"]},
                 masks=part["masks"], image_concepts=part["scalars"], pass_index=pass_index)


def bare_context() -> RunContext:
    """A context for driving the accumulator by hand (its steps here never use the model)."""
    model = nn.Identity()
    return RunContext(model=model, handle=ModelHandle(model, {"l": ""}, Preprocessing()),
                      layers={"l": ""}, device=torch.device("cpu"),
                      preprocessing=Preprocessing(), input_shape=(3, 12, 12),
                      layer_shapes={"l": (6, 6, 6)})


def new_accumulator(**options) -> DissectionAccumulator:
    space = LabelSpace.from_concepts(CONCEPTS, ["object", "part", "color"], ["texture"])
    settings = Dissection(quantile=0.05, exemplars=3, top_labels=4, **options).settings
    return DissectionAccumulator(settings, space, ["l"], {"l": (6, 6, 6)}, num_images=20,
                                 mask_size=(12, 12), input_shape=(3, 12, 12),
                                 device=torch.device("cpu"))


def one_pass(parts, **options) -> dict[str, pd.DataFrame]:
    acc, context = new_accumulator(**options), bare_context()
    for pass_index in (0, 1):
        for part in parts:
            acc.update(make_batch(part, pass_index))
        acc.end_pass(pass_index, context)
    acc.after_passes(context)
    tables = acc.finalize(context)
    check_counts(tables)
    return tables


def sharded(parts) -> dict[str, pd.DataFrame]:
    """Two shards as the runner drives them: only declared state reduced, then end_pass."""
    shards = [parts[0::2], parts[1::2]]
    accs = [new_accumulator(), new_accumulator()]
    context = bare_context()
    for pass_index in (0, 1):
        for acc, mine in zip(accs, shards, strict=True):
            for part in mine:
                acc.update(make_batch(part, pass_index))
        reduce_in_process(accs, pass_index, last_pass=1)
        for acc in accs:
            acc.end_pass(pass_index, context)
    accs[0].after_passes(context)
    tables = accs[0].finalize(context)
    check_counts(tables)
    return tables


def test_two_shards_merged_equal_one_pass():
    parts = smooth_batches()
    single, merged = one_pass(parts), sharded(parts)
    assert set(single) == set(TABLES)
    for name in TABLES:
        pd.testing.assert_frame_equal(single[name], merged[name], check_dtype=False)
    assert single["units"]["iou"].max() > 0
    assert (single["units"]["threshold_method"] == "exact").all()


def test_thresholds_are_torch_quantile_of_all_raw_activations():
    parts = smooth_batches()
    tables = one_pass(parts)
    acts = torch.cat([p["acts"] for p in parts])
    expected = torch.quantile(acts.transpose(0, 1).reshape(6, -1), 1 - 0.05, dim=1)
    assert np.array_equal(tables["units"]["threshold"].to_numpy(), expected.numpy())


def test_tables_have_declared_columns_and_consistent_labels():
    tables = one_pass(smooth_batches())
    for name, columns in TABLES.items():
        assert list(columns) == [c for c in tables[name].columns if c in columns]
    units, labels = tables["units"], tables["labels"]
    best = labels.sort_values(["unit", "iou"], ascending=[True, False]).groupby("unit").head(1)
    assert np.allclose(best["iou"].to_numpy(), units["iou"].to_numpy())
    recomputed = labels["intersection"] / (labels["activation"] + labels["truth"]
                                           - labels["intersection"])
    assert np.allclose(recomputed.fillna(0), labels["iou"])
    assert len(tables["exemplars"]) == 6 * 3


def test_figures_are_built_from_tables():
    tables = one_pass(smooth_batches())
    figures = Dissection.figures(tables)
    assert len(figures) == 3
    hierarchy = figures[0]
    by_name = {trace.name: list(trace.y) for trace in hierarchy.data}
    summary = tables["summary"]
    for category, rows in summary.groupby("category"):
        assert by_name[category] == rows["share_of_units"].tolist()


def test_unknown_layer_option_is_a_clear_error(tmp_path):
    run = probe.analyze(planted_model(), Planted(count=4),
                        [("dissection", {"layers": ("nope",)})], out=tmp_path / "x",
                        layers=["1"])
    entry = run.manifest["analyses"]["dissection"]
    assert entry["status"] == "failed"
    assert "dissection.layers: layer 'nope' is not in the run" in entry["error"]


@pytest.mark.slow
def test_two_process_run_equals_single_process(tmp_path, single_and_sharded):
    """torch.distributed (gloo, 2 ranks): state reduced by collectives, tables identical."""
    from probe.checkpoint import save_checkpoint

    torch.manual_seed(0)
    options = {"width": 0.125, "input_size": 32, "num_classes": 9}
    weights = save_checkpoint(probe.load_model("vgg11", **options), tmp_path / "vgg.safetensors",
                              "vgg11", options)
    a, b = single_and_sharded(
        ["run", "--arch", "vgg11", "--checkpoint", str(weights), "--dataset", "parts",
         "--set", "dataset.size=24", "--set", "dataset.image_size=32", "--batch-size", "8",
         "--analysis", "dissection", "--set", "dissection.quantile=0.02",
         "--set", "dissection.iou_threshold=0.01", "--layers", "conv2_1,conv3_2,conv4_2"])
    for table in ("units", "labels", "summary", "layers", "exemplars", "edges"):
        pd.testing.assert_frame_equal(a.table("dissection", table), b.table("dissection", table))
    assert a.table("dissection", "units")["iou"].max() > 0
    # the ablations ran on the merged sample (the same lowest-index images on both)
    edges = a.table("dissection", "edges")
    assert len(edges) > 0 and edges["ablation_drop"].notna().all()


def test_sketch_thresholds_report_their_bound():
    parts = smooth_batches()
    units = one_pass(parts, exact_cap=3)["units"]
    assert (units["threshold_method"] == "sketch").all()
    acts = torch.cat([p["acts"] for p in parts])
    exact = torch.quantile(acts.transpose(0, 1).reshape(6, -1), 1 - 0.05, dim=1).numpy()
    error = np.abs(units["threshold"].to_numpy() - exact)
    assert (error <= units["threshold_error_bound"].to_numpy()).all()
    assert (units["threshold_error_bound"] <= 2.0**-7 * np.abs(exact) + 1e-30).all()


@pytest.mark.slow
def test_conforms_to_the_analysis_contract():
    """probe.testing's kit: declared state on the device, no model kept, 2 shards == 1."""
    results = check_analysis(Dissection, options={"quantile": 0.02, "iou_threshold": 0.01},
                             device="cpu")
    assert all(r.passed for r in results)


@pytest.mark.slow
def test_parts_and_its_broden_export_give_identical_tables(tmp_path):
    """The same model on ``parts`` and on its Broden export: every table identical.

    Broden has no part → object field, so the export is read back without
    ``part_parents``; the test hands it the parts world's own relation (the
    one thing the format cannot carry), so the ``edges`` table is compared too.
    """
    from probe.plugins.datasets.broden_export import export_broden
    from probe.testing import assert_tables_equal

    parts = probe.load_dataset("parts", split="val", size=24, image_size=32, mask_size=16,
                               seed=3)
    broden = probe.load_dataset("broden", path=str(export_broden(parts, tmp_path / "broden")))
    assert broden.part_parents is None
    broden.part_parents = parts.part_parents
    model = probe.load_model("vgg11_bn", width=0.125, input_size=32, fc_width=32,
                             num_classes=9, seed=1)
    request = [("dissection", {"quantile": 0.02, "iou_threshold": 0.01})]
    one, two = (probe.measure(model, data, request, device="cpu", batch_size=8,
                              layers=["conv2_1", "conv3_2", "conv4_2"])["dissection"]
                for data in (parts, broden))
    assert_tables_equal(one, two, rtol=0, atol=0)  # exactly, every column
    check_counts(one)
    assert one["units"]["iou"].max() > 0 and len(one["exemplars"]) > 0
    assert len(one["edges"]) > 0 and one["edges"]["ablation_drop"].notna().any()


def test_reference_tool_conventions_by_option(tmp_path):
    """``detector_inclusive``: IoU equal to ``iou_threshold`` counts (NetDissect-Lite's
    report, ``>=``); ``unlabelled="lite"``: a unit with IoU 0 everywhere gets label 0, an
    empty name and the last category (Lite's argsort tie), not label -1 and no category."""
    conv = nn.Conv2d(3, 4, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[:3, :3, 0, 0] = torch.eye(3)
        conv.bias.zero_()
        conv.bias[3] = -1.0  # unit 3 is never active
    model = nn.Sequential(conv, nn.ReLU())
    data = Planted()
    tables = {}
    for name, options in (("default", {}), ("lite", {"detector_inclusive": True,
                                                     "unlabelled": "lite"})):
        run = probe.analyze(model, data, [("dissection", {"quantile": 0.3, "iou_threshold": 1.0,
                                                          "top_labels": 4, **options})],
                            out=tmp_path / name, layers=["1"], batch_size=12)
        tables[name] = run.table("dissection", "units")
        check_counts({"labels": run.table("dissection", "labels")})
    default, lite = tables["default"], tables["lite"]
    assert default["iou"].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert not default["is_detector"].any()  # 1.0 is not > 1.0
    assert lite["is_detector"].tolist() == [True, True, True, False]  # >=; IoU 0 never
    assert (default.loc[3, "label"], default.loc[3, "name"], default.loc[3, "category"]) == \
        (-1, "", "")
    assert (lite.loc[3, "label"], lite.loc[3, "name"], lite.loc[3, "category"]) == \
        (0, "", "texture")  # categories: object, part, color, texture
    assert lite["name"].tolist()[:3] == ["car", "wheel", "red"]
