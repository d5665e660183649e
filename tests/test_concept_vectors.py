"""``concept-vectors`` (Net2Vec): a planted AND of two units through ``probe run``, set IoU
on a hand-made case, the written-out gradient against autograd, bad options, views."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import probe
from probe import ArchitectureSpec, Option, ProbeDataset, hookimpl
from probe.cli import main
from probe.host import get_host
from probe.plugins.analyses.concept_vectors import ConceptVectors
from probe.plugins.analyses.concept_vectors.accumulator import split_sample
from probe.plugins.analyses.concept_vectors.fit import (
    coefficients,
    gradients,
    logits,
    pixel_loss,
    resize_matrix,
)
from probe.plugins.analyses.concept_vectors.scores import iou_from_counts, set_iou, units_holding

CONCEPTS = pd.DataFrame({"id": [1, 2], "name": ["both", "third"],
                         "category": ["object", "part"]})


class Planted(ProbeDataset):
    """16×16 images: channels 0-2 are random rectangles, channel 3 sparse noise. Concept
    ``both`` is channel 0 AND channel 1; concept ``third`` is channel 2."""

    name = "test-concept-vectors"
    image_size = 16
    mask_size = 16
    channels = 4
    mean = (0.0,) * 4
    std = (1.0,) * 4
    num_classes = 1
    concepts = CONCEPTS
    mask_categories = ("object", "part")
    scalar_categories = ()

    def __init__(self, size: int = 40, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.images = torch.zeros((size, 4, 16, 16))
        for i in range(size):
            for c in range(3):
                top, left = torch.randint(0, 9, (2,), generator=gen).tolist()
                h, w = torch.randint(4, 9, (2,), generator=gen).tolist()
                self.images[i, c, top:top + h, left:left + w] = 1.0
        self.images[:, 3] = (torch.rand((size, 16, 16), generator=gen) > 0.9).float()
        a, b, c = (self.images[:, k] > 0 for k in range(3))
        self.masks = torch.stack([(a & b).long(), c.long() * 2], 1)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "label": 0, "index": index,
                "masks": self.masks[index]}


def planted_model(**_options) -> nn.Module:
    """Unit k is input channel k (identity 1×1 conv, ReLU): units 0 and 1 AND to ``both``."""
    conv = nn.Conv2d(4, 4, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for k in range(4):
            conv.weight[k, k] = 1.0
    return nn.Sequential(conv, nn.ReLU())


class _PlantedPlugin:
    @hookimpl
    def probe_register_architectures(self, register):
        register(ArchitectureSpec(
            name="test-concept-vectors", build=planted_model, task="classification",
            family="test", input_size=16, in_channels=4,
            options=(Option("num_classes", int, 1), Option("in_channels", int, 4)),
            layers=lambda model: {"conv": "1"}))

    @hookimpl
    def probe_register_datasets(self, register):
        register(probe.DatasetSpec(name="test-concept-vectors", load=Planted,
                                   options=(Option("size", int, 40), Option("seed", int, 0)),
                                   description="planted AND of two units", has_masks=True))


@pytest.fixture
def planted_plugin():
    host = get_host()
    host.add_plugin(_PlantedPlugin(), "test-concept-vectors")
    try:
        yield
    finally:
        host.remove_plugin("test-concept-vectors")


def _run(out, *extra: str) -> int:
    return main(["run", "--arch", "test-concept-vectors", "--dataset", "test-concept-vectors",
                 "--analysis", "concept-vectors", "--set", "concept-vectors.quantile=0.5",
                 "--set", "concept-vectors.epochs=100", *extra, "--batch-size", "8",
                 "--device", "cpu", "--quiet", "--out", str(out)])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_planted_and_of_two_units_is_carried_by_them_and_beats_one_unit(tmp_path, capsys,
                                                                         planted_plugin):
    """T = 0 (fewer than half the values are > 0), so each unit's mask is its rectangle and
    ``both`` = unit 0 AND unit 1 exactly: a vector ``c·(x0 + x1) − 1.5c`` is exact, no
    single unit is. After 100 epochs (200 Adam steps) the two units hold 92 % of Σ|w|
    (the other two keep part of their random start: 0.8 is the bound asserted)."""
    out = tmp_path / "run"
    assert _run(out) == 0, capsys.readouterr().err
    run = probe.load_run(out)
    concepts = run.table("concept-vectors", "concepts").set_index("concept")
    weights = run.table("concept-vectors", "weights")
    both = weights[weights["concept"] == "both"].set_index("unit")
    assert both.loc[[0, 1], "share"].sum() >= 0.8
    assert (both.loc[[0, 1], "weight"] > 0).all() and list(both["rank"].loc[[0, 1]]) == [1, 2]
    row = concepts.loc["both"]
    assert row["iou"] == 1.0 and row["train_iou"] == 1.0
    assert row["best_unit"] in (0, 1) and row["best_unit_iou"] < 0.6
    assert row["gain"] == pytest.approx(1.0 - row["best_unit_iou"]) and row["wins"]
    assert row["units_50"] == 2 and row["label"] == 1 and row["category"] == "object"
    # the best unit's held-out IoU, computed directly from the masks (T = 0: mask = channel)
    data = Planted()
    _, held = split_sample(40, 0.25, 0)
    truth = (data.masks[held, 0] > 0).numpy()
    unit = (data.images[held, int(row["best_unit"])] > 0).numpy()
    assert row["best_unit_iou"] == pytest.approx(_iou(unit, truth), abs=1e-12)
    assert row["heldout_pixels"] == truth.sum() and row["heldout_images"] == 10
    # a concept that IS one unit: the vector matches it, and that unit carries the weight
    third = concepts.loc["third"]
    assert third["iou"] == 1.0 and third["best_unit"] == 2 and third["best_unit_iou"] == 1.0
    layers = run.table("concept-vectors", "layers").iloc[0]
    assert layers["concepts"] == 2 and layers["wins"] == 0.5 and layers["steps"] == 200
    # weights are on raw activations: binary inputs with T = 0 read as fitted
    assert np.allclose(weights["weight"], weights["fitted_weight"])


def test_set_iou_on_a_hand_made_case():
    """Two images of 4 pixels. Concept 0: M = {0,1 | 4}, L = {1,2 | 4,5}: I = 2, union 5 →
    2/5 (a mean of per-image IoUs would be (1/3 + 1/2)/2). Concept 1 with only image 2 in
    scope: M = {6}, L = {6, 7} → 1/2. An empty union is NaN."""
    pred = torch.zeros((3, 2, 4), dtype=torch.bool)
    truth = torch.zeros((3, 2, 4), dtype=torch.bool)
    pred[0, 0, [0, 1]] = True
    pred[0, 1, 0] = True
    truth[0, 0, [1, 2]] = True
    truth[0, 1, [0, 1]] = True
    pred[1, 0, :] = True            # out of scope: not counted
    pred[1, 1, 2] = True
    truth[1, 1, [2, 3]] = True
    scope = torch.tensor([[True, True], [False, True], [True, True]])
    iou = set_iou(pred, truth, scope)
    assert iou[0].item() == pytest.approx(2 / 5) and iou[1].item() == pytest.approx(1 / 2)
    assert torch.isnan(iou[2])
    assert iou_from_counts(torch.tensor(3), torch.tensor(4), torch.tensor(5)).item() == 0.5
    held = units_holding(torch.tensor([[4.0, -3.0, 2.0, 1.0], [1.0, 1.0, 0.0, 0.0],
                                       [0.0, 0.0, 0.0, 0.0]]), 0.5)
    assert held.tolist() == [2, 1, 0]  # 4 + 3 ≥ 5; one of two equal weights is half
    assert units_holding(torch.tensor([[4.0, -3.0, 2.0, 1.0]]), 0.9).tolist() == [3]


@pytest.mark.parametrize("form", ["bce", "linear"])
def test_written_out_gradient_equals_autograd(form):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((4, 5, 3, 3), generator=gen, dtype=torch.float64)
    w = torch.randn((3, 5), generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    rows = resize_matrix(3, 7, "antialias", torch.device("cpu")).double()
    cols = resize_matrix(3, 2, "antialias", torch.device("cpu")).double()  # shrinks
    target = torch.rand((3, 4, 14), generator=gen) > 0.7
    keep = torch.rand((3, 4), generator=gen) > 0.3
    alpha = torch.tensor([0.8, 0.0, 0.6], dtype=torch.float64)
    scores = logits(w, b, x, rows, cols).reshape(3, 4, 14)
    loss = (pixel_loss(scores, target, alpha, form) * keep.unsqueeze(-1)).sum() / (4 * 14)
    expected = torch.autograd.grad(loss, (w, b))
    a, n = coefficients(target, keep, alpha)
    got = gradients(w.detach(), b.detach(), x, (a.double(), n.double()), form, rows, cols)
    for e, g in zip(expected, got, strict=True):
        assert torch.allclose(e, g, atol=1e-12)


@pytest.mark.parametrize(("option", "line"), [
    ("holdout=1.5", "analysis concept-vectors.holdout must be <= 0.9, got 1.5"),
    ("optimizer=lbfgs", "analysis concept-vectors.optimizer must be one of ['adam', 'sgd'], "
                        "got 'lbfgs'"),
    ("images=1", "analysis concept-vectors.images must be >= 2, got 1"),
])
def test_bad_options_are_one_clear_line(tmp_path, capsys, planted_plugin, option, line):
    code = main(["run", "--arch", "test-concept-vectors", "--dataset", "test-concept-vectors",
                 "--analysis", "concept-vectors", "--set", f"concept-vectors.{option}",
                 "--device", "cpu", "--quiet", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code != 0 and line in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_unknown_layer_is_one_clear_error(tmp_path, planted_plugin):
    run = probe.analyze("test-concept-vectors", "test-concept-vectors",
                        [("concept-vectors", {"layers": ("nope",)})], out=tmp_path / "r",
                        device="cpu")
    entry = run.manifest["analyses"]["concept-vectors"]
    assert entry["status"] == "failed" and "concept-vectors.layers: layer 'nope'" in entry[
        "error"]


def test_views_show_the_tables(tmp_path, planted_plugin):
    from probe.views import Facts, Figure, RunView, Table, UnitColumns

    assert _run(tmp_path / "r", "--set", "concept-vectors.epochs=20") == 0
    view = RunView(probe.load_run(tmp_path / "r"))
    layers = view.table("concept-vectors", "layers")
    blocks = ConceptVectors.run_views(view)
    assert [b.name for b in blocks] == ["concept-vectors-iou", "concept-vectors-layers"]
    bars = {t.name: t.y[0] for t in blocks[0].figure.data}
    assert bars["concept vector"] == pytest.approx(layers["mean_iou"].iloc[0])
    assert bars["best single unit"] == pytest.approx(layers["mean_best_unit_iou"].iloc[0])
    layer = ConceptVectors.layer_views(view, "conv")
    assert [b.name for b in layer] == ["concept-vectors-scatter", "concept-vectors-concepts"]
    unit = ConceptVectors.unit_views(view, "conv", 2)
    assert isinstance(unit[0], Facts) and dict(unit[0].items)["best single unit of"] == "third"
    table = next(b for b in unit if isinstance(b, Table))
    assert table.frame["concept"].iloc[0] == "third"  # unit 2 carries "third" most
    summary = ConceptVectors.layer_summary(view)
    assert isinstance(summary, Table) and summary.frame["wins"].iloc[0] == 0.5
    columns = ConceptVectors.unit_columns(view, "conv")
    assert isinstance(columns, UnitColumns) and len(columns.frame) == 4
    assert ConceptVectors.headlines(view)[0].value == pytest.approx(0.5)
    assert all(isinstance(f, Figure) or f is not None
               for f in ConceptVectors.figures(view.tables("concept-vectors")))


def test_conforms_to_the_analysis_contract():
    from probe.testing import check_analysis

    results = check_analysis(ConceptVectors, options={"quantile": 0.02, "images": 12,
                                                      "epochs": 2},
                             device="cpu", layers=["conv1_1", "conv3_1"],
                             dataset_options={"size": 16}, batch_size=4)
    assert all(r.passed for r in results), [r for r in results if not r.passed]
