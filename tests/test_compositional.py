"""``compositional``: packed bits, the batched beam search, planted formulas through
``probe run``, a hand-made Broden fixture, parts → objects, views."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

import probe
from probe import ArchitectureSpec, Option, ProbeDataset, hookimpl
from probe.cli import main
from probe.host import get_host
from probe.plugins.analyses.compositional import Compositional
from probe.plugins.analyses.compositional.bits import (
    and_counts,
    count,
    pack_bits,
    popcount,
    unpack_bits,
)
from probe.plugins.analyses.compositional.masks import concept_bits
from probe.plugins.analyses.compositional.search import OPERATORS, beam_search, formula_text
from probe.plugins.datasets.broden_format import encode_ids

# -- packed bits ----------------------------------------------------------------------------


def _bin_count(word: int) -> int:
    return bin(word & (2**64 - 1)).count("1")


def test_popcount_matches_python_on_random_words_with_the_sign_bit():
    gen = torch.Generator().manual_seed(0)
    words = torch.randint(-2**63, 2**63 - 1, (2000,), dtype=torch.int64, generator=gen)
    words[:3] = torch.tensor([-1, -(2**63), 0])
    expected = torch.tensor([_bin_count(int(w)) for w in words])
    assert torch.equal(popcount(words), expected)
    assert popcount(torch.tensor([-1]))[0] == 64


def test_pack_round_trip_and_pair_counts_in_chunks():
    gen = torch.Generator().manual_seed(1)
    masks = torch.rand((6, 150), generator=gen) > 0.6  # 150 bits: 3 words, a padded tail
    packed = pack_bits(masks)
    assert packed.shape == (6, 3) and torch.equal(unpack_bits(packed, 150), masks)
    assert torch.equal(count(packed), masks.sum(1))
    expected = (masks[:, None] & masks[None, :4]).sum(-1)
    for chunk in (1, 5, 40, 2**22):  # any chunking gives the same counts
        assert torch.equal(and_counts(packed, packed[:4], chunk_values=chunk), expected)


def test_pair_counts_over_many_words_in_any_chunking():
    """All-ones words (64 bits each) too: 200 words summed as bytes, in slices or whole."""
    gen = torch.Generator().manual_seed(3)
    rows = torch.randint(-2**63, 2**63 - 1, (5, 200), dtype=torch.int64, generator=gen)
    cols = torch.randint(-2**63, 2**63 - 1, (7, 200), dtype=torch.int64, generator=gen)
    rows[0], cols[0] = -1, -1
    expected = popcount(rows[:, None] & cols[None]).sum(-1)
    assert expected[0, 0] == 64 * 200
    for chunk in (None, 40, 31 * 7, 10**6):
        assert torch.equal(and_counts(rows, cols, chunk_values=chunk), expected)


def test_concept_bits_or_layers_and_make_scalars_whole_images():
    masks = torch.tensor([[[[1, 0], [2, 0]], [[1, 2], [0, 0]]]])  # [B=1, L=2, 2, 2]
    scalars = torch.tensor([[3, 0]])
    bits = concept_bits(masks, scalars, 4, (2, 2), 1)
    unpacked = unpack_bits(bits, 4)[:, 0]  # [labels, pixels]
    assert unpacked[1].tolist() == [True, False, False, False]  # in both layers: counted once
    assert unpacked[2].tolist() == [False, True, True, False]
    assert unpacked[3].tolist() == [True] * 4 and not unpacked[0].any()


# -- the search against exhaustive enumeration ------------------------------------------------


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else 0.0


def _apply(left: np.ndarray, op: int, right: np.ndarray) -> np.ndarray:
    return [left | right, left & right, left & ~right][op]


def test_full_beam_finds_the_exhaustive_best_of_length_two_and_three():
    """With the beam as wide as the concepts, length 2 is exhaustive; length 3 is checked
    against an exhaustive search from the same beam (every beam formula × concept × op)."""
    gen = torch.Generator().manual_seed(2)
    concepts = torch.rand((7, 300), generator=gen) < torch.linspace(0.1, 0.5, 7).view(-1, 1)
    units = torch.zeros((3, 300), dtype=torch.bool)
    units[0] = (concepts[1] | concepts[4]) & ~concepts[6]
    units[1] = torch.rand(300, generator=gen) < 0.3
    units[2] = concepts[2] & concepts[3]
    allowed = torch.ones(7, dtype=torch.bool)
    result = beam_search(pack_bits(units), pack_bits(concepts), allowed, beam=7, length=3)
    c, u = concepts.numpy(), units.numpy()
    for k in range(3):
        singles = [_iou(u[k], c[i]) for i in range(7)]
        assert result.iou[k, 0].item() == pytest.approx(max(singles), abs=1e-12)
        pairs = {(a, op, b): _iou(u[k], _apply(c[a], op, c[b]))
                 for a, b in itertools.permutations(range(7), 2) for op in range(3)}
        best_pair = max(pairs.values())
        assert result.iou[k, 1].item() == pytest.approx(best_pair, abs=1e-12)
        # the reported formula really has that IoU
        labels, ops = result.labels[k, 1, :2].tolist(), result.operators[k, 1, :1].tolist()
        assert pairs[(labels[0], ops[0], labels[1])] == pytest.approx(best_pair, abs=1e-12)
        labels, ops = result.labels[k, 2].tolist(), result.operators[k, 2].tolist()
        mask = _apply(_apply(c[labels[0]], ops[0], c[labels[1]]), ops[1], c[labels[2]])
        assert _iou(u[k], mask) == pytest.approx(result.iou[k, 2].item(), abs=1e-12)
    assert result.iou[0, 2].item() == pytest.approx(1.0)
    assert result.iou[2, 1].item() == pytest.approx(1.0)
    assert result.best_length[2].item() == 2  # IoU 1 at length 2: ties keep the shorter


def test_narrow_beam_follows_compexp_on_a_known_case():
    """Beam 1: only the best single concept is extended (compexp keeps the top-``beam``)."""
    concepts = torch.zeros((3, 64), dtype=torch.bool)
    concepts[0, :20] = True       # best single concept of the unit
    concepts[1, 20:30] = True
    concepts[2, 40:64] = True     # never in the unit
    unit = torch.zeros((1, 64), dtype=torch.bool)
    unit[0, :30] = True
    result = beam_search(pack_bits(unit), pack_bits(concepts), torch.ones(3, dtype=torch.bool),
                         beam=1, length=2)
    assert result.labels[0, 1].tolist() == [0, 1] and result.operators[0, 1, 0].item() == 0
    assert result.iou[0].tolist() == [pytest.approx(20 / 30), 1.0]
    names = ["a", "b", "c"]
    assert formula_text([0, 1, 2], [0, 2], names) == "(a OR b) AND NOT c"
    assert OPERATORS == ("OR", "AND", "AND NOT")


# -- planted units through `probe run` ------------------------------------------------------

CONCEPTS = pd.DataFrame({"id": [1, 2, 3, 4], "name": ["car", "wheel", "red", "striped"],
                         "category": ["object", "part", "color", "texture"]})


class Planted(ProbeDataset):
    """16×16 images whose three channels ARE the masks of car, wheel and red."""

    name = "test-compositional-planted"
    image_size = 16
    mask_size = 16
    channels = 3
    mean = (0.0, 0.0, 0.0)
    std = (1.0, 1.0, 1.0)
    num_classes = 1
    concepts = CONCEPTS
    mask_categories = ("object", "part", "color")
    scalar_categories = ("texture",)
    part_parents = pd.DataFrame({"part_id": [2], "object_id": [1]})

    def __init__(self, size: int = 24, seed: int = 0) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.masks = torch.zeros((size, 3, 16, 16), dtype=torch.int64)
        for i in range(size):
            for layer, (label, low, high) in enumerate(((1, 3, 6), (2, 2, 5), (3, 2, 5))):
                top, left = torch.randint(0, 12, (2,), generator=gen).tolist()
                h, w = torch.randint(low, high, (2,), generator=gen).tolist()
                self.masks[i, layer, top:top + h, left:left + w] = label
        self.scalars = (torch.arange(size) % 3 == 0).long().view(-1, 1) * 4

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: int) -> dict:
        return {"image": (self.masks[index] > 0).float(), "label": 0, "index": index,
                "masks": self.masks[index], "scalars": self.scalars[index]}


def planted_model(**_options) -> nn.Module:
    """Units: 0 = car OR wheel, 1 = car AND NOT wheel, 2 = car AND wheel (0/1 inputs)."""
    conv = nn.Conv2d(3, 3, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0], conv.weight[0, 1] = 1.0, 1.0
        conv.weight[1, 0], conv.weight[1, 1] = 1.0, -1.0
        conv.weight[2, 0], conv.weight[2, 1] = 1.0, 1.0
        conv.bias.copy_(torch.tensor([0.0, 0.0, -1.0]))
    return nn.Sequential(conv, nn.ReLU())


class _PlantedPlugin:
    @hookimpl
    def probe_register_architectures(self, register):
        register(ArchitectureSpec(
            name="test-compositional-planted", build=planted_model, task="classification",
            family="test", input_size=16, in_channels=3,
            options=(Option("num_classes", int, 1), Option("in_channels", int, 3)),
            layers=lambda model: {"conv": "1"}))

    @hookimpl
    def probe_register_datasets(self, register):
        register(probe.DatasetSpec(name="test-compositional-planted", load=Planted,
                                   options=(Option("size", int, 24), Option("seed", int, 0)),
                                   description="planted concept masks", has_masks=True))


@pytest.fixture
def planted_plugin():
    host = get_host()
    host.add_plugin(_PlantedPlugin(), "test-compositional-planted")
    try:
        yield
    finally:
        host.remove_plugin("test-compositional-planted")


def test_planted_formulas_have_iou_one_and_shorter_ones_do_not(tmp_path, capsys,
                                                                planted_plugin):
    out = tmp_path / "run"
    code = main(["run", "--arch", "test-compositional-planted",
                 "--dataset", "test-compositional-planted", "--analysis", "compositional",
                 "--set", "compositional.quantile=0.5", "--set", "compositional.images=20",
                 "--batch-size", "7", "--device", "cpu", "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    run = probe.load_run(out)
    units = run.table("compositional", "units").set_index("unit")
    assert (units["threshold"] == 0.0).all()  # fewer than half the values are > 0: T = 0
    data = Planted()
    car, wheel = (data.masks[:20, 0] > 0).numpy(), (data.masks[:20, 1] > 0).numpy()
    planted = {0: (car | wheel, {"car OR wheel", "wheel OR car"}),
               1: (car & ~wheel, {"car AND NOT wheel"}),
               2: (car & wheel, {"car AND wheel", "wheel AND car"})}
    formulas = run.table("compositional", "formulas").set_index(["unit", "length"])
    for unit, (mask, texts) in planted.items():
        row = units.loc[unit]
        assert row["formula"] in texts and row["length"] == 2 and row["iou"] == 1.0
        single = max(_iou(mask, car), _iou(mask, wheel))  # the best concept is one of them
        assert row["label_iou"] == pytest.approx(single, abs=1e-12) and single < 1.0
        assert row["gain"] == pytest.approx(1.0 - single, abs=1e-12)
        assert formulas.loc[(unit, 1), "iou"] < 1.0
        assert formulas.loc[(unit, 2), "formula"] in texts
    parts = run.table("compositional", "parts_objects")
    layers = run.table("compositional", "parts_layers")
    # units 0 and 1 are labelled car; the only part is wheel (car's own): car OR wheel
    # is explained by it, car AND NOT wheel never meets a wheel (no parts formula)
    assert units.loc[[0, 1], "label"].tolist() == ["car", "car"]
    parts = parts.set_index("unit")
    assert sorted(parts.index) == [0, 1]
    assert parts.loc[0, "formula"] == "wheel" and parts.loc[0, "own_parts"]
    assert parts.loc[0, "iou"] == pytest.approx(_iou(car | wheel, wheel), abs=1e-12)
    assert parts.loc[1, "formula"] == "" and not parts.loc[1, "own_parts"]
    assert layers["object_units"].tolist() == [2] and layers["own_parts"].tolist() == [0.5]


# -- a hand-made Broden-format fixture -------------------------------------------------------

LABELS = """number,name,category,frequency,coverage,syns
1,red,color(2),2,0.5,
2,car,object(2),2,0.5,
3,wheel,part(2),2,0.3,
4,street,scene(1),1,1.0,
"""
HEADER = "image,split,ih,iw,sh,sw,color,object,part,material,scene,texture\n"
RED = {"a": [[1, 0, 0], [0, 0, 0], [0, 0, 0]], "b": [[0, 0, 0], [0, 0, 0], [0, 1, 1]]}
CAR = {"a": [[2, 2, 2], [0, 2, 0], [0, 0, 0]], "b": [[0, 2, 2], [2, 2, 0], [0, 0, 0]]}
WHEEL = {"a": [[0, 0, 0], [0, 0, 0], [0, 0, 3]], "b": [[0, 0, 0], [3, 0, 0], [0, 0, 0]]}
UNIT = {"a": [[1, 1, 1], [0, 1, 0], [0, 0, 0]], "b": [[0, 1, 1], [0, 1, 0], [0, 1, 0]]}
STREET = {"a": True, "b": False}


def _broden(root):
    (root / "images").mkdir(parents=True)
    (root / "label.csv").write_text(LABELS)
    for stem in ("a", "b"):
        red = np.array(UNIT[stem], dtype=np.uint8) * 255  # the image's red channel = unit
        Image.fromarray(np.stack([red, red * 0, red * 0], -1)).save(
            root / "images" / f"{stem}.png")
        for kind, ids in (("color", RED), ("object", CAR), ("part", WHEEL)):
            Image.fromarray(encode_ids(np.array(ids[stem]))).save(
                root / "images" / f"{stem}_{kind}.png")
    rows = [f"{s}.png,train,3,3,3,3,{s}_color.png,{s}_object.png,{s}_part.png,,"
            f"{4 if STREET[s] else 0}," for s in ("a", "b")]
    (root / "index.csv").write_text(HEADER + "\n".join(rows) + "\n")
    return root


def test_formula_ious_on_a_hand_made_broden_fixture(tmp_path, capsys, planted_plugin):
    """Two 3×3 images, pixels 0-8 (a) and 9-17 (b); the unit (the red channel) is
    U = {0, 1, 2, 4, 10, 11, 13, 16}, 8 px. Concepts: car {0, 1, 2, 4, 10, 11, 12, 13},
    wheel {8, 12}, red {0, 16, 17}, street (scene of a) {0..8}. By hand:
    car 7/9, red 2/9, street 4/13, wheel 0; car AND NOT wheel = U minus 16: 7/8
    (car OR red: 8/10); length 3: 16 and 17 are in the same concepts only (red), so the
    best is (car AND NOT wheel) OR red = U plus 17: 8/9."""
    root = _broden(tmp_path / "broden")
    out = tmp_path / "run"
    code = main(["run", "--arch", "test-compositional-planted", "--dataset", "broden",
                 "--set", f"dataset.path={root}", "--analysis", "compositional",
                 "--set", "compositional.quantile=0.5", "--set", "compositional.beam=4",
                 "--batch-size", "1", "--device", "cpu", "--quiet", "--out", str(out),
                 "--layers", "conv"])
    assert code == 0, capsys.readouterr().err
    run = probe.load_run(out)
    # the model's unit 0 is red + green channel (green is 0): 8 of 18 values > 0, so T = 0
    formulas = run.table("compositional", "formulas")
    mine = formulas[formulas["unit"] == 0].set_index("length")
    assert mine.loc[1, "formula"] == "car" and mine.loc[1, "iou"] == pytest.approx(7 / 9)
    assert mine.loc[2, "formula"] == "car AND NOT wheel"
    assert mine.loc[2, "iou"] == pytest.approx(7 / 8)
    assert mine.loc[3, "formula"] in {"(car AND NOT wheel) OR red",
                                      "(car OR red) AND NOT wheel"}
    assert mine.loc[3, "iou"] == pytest.approx(8 / 9)
    units = run.table("compositional", "units").set_index("unit")
    assert units.loc[0, "threshold"] == 0.0 and units.loc[0, "length"] == 3
    assert units.loc[0, "gain"] == pytest.approx(8 / 9 - 7 / 9)


# -- contract and views ---------------------------------------------------------------------


@pytest.mark.slow
def test_conforms_to_the_analysis_contract():
    from probe.testing import check_analysis

    results = check_analysis(Compositional, options={"quantile": 0.02, "images": 12},
                             device="cpu", layers=["conv1_1", "conv3_1"],
                             dataset_options={"size": 16}, batch_size=4)
    assert all(r.passed for r in results), [r for r in results if not r.passed]


def test_unknown_layer_is_one_clear_error(tmp_path, planted_plugin):
    run = probe.analyze("test-compositional-planted", "test-compositional-planted",
                        [("compositional", {"layers": ("nope",)})], out=tmp_path / "r",
                        device="cpu")
    assert run.manifest["analyses"]["compositional"]["status"] == "failed"
    assert "compositional.layers: layer 'nope'" in run.manifest["analyses"]["compositional"][
        "error"]


def test_views_show_the_tables(tmp_path, planted_plugin):
    from probe.views import Facts, Figure, RunView, Table, UnitColumns

    probe.analyze("test-compositional-planted", "test-compositional-planted",
                  [("compositional", {"quantile": 0.5, "images": 20})], out=tmp_path / "r",
                  device="cpu", batch_size=8)
    view = RunView(probe.load_run(tmp_path / "r"))
    units = view.table("compositional", "units")
    names = [b.name for b in Compositional.run_views(view)]
    assert names == ["compositional-gain", "compositional-layers", "compositional-parts"]
    gain = Compositional.run_views(view)[0].figure
    by_length = {t.name: t.y[0] for t in gain.data}
    formulas = view.table("compositional", "formulas")
    assert by_length["length 2"] == pytest.approx(formulas.query("length == 2")["iou"].mean())
    summary = Compositional.layer_summary(view)
    assert isinstance(summary, Table)
    row = summary.frame.iloc[0]
    assert row["mean_gain"] == pytest.approx(units["gain"].mean())
    assert row["own_parts"] == 0.5
    facts = next(b for b in Compositional.unit_views(view, "conv", 0) if isinstance(b, Facts))
    assert dict(facts.items)["best formula"] in {"car OR wheel", "wheel OR car"}
    layer = Compositional.layer_views(view, "conv")
    assert [b.name for b in layer] == ["compositional-units", "compositional-parts-objects"]
    columns = Compositional.unit_columns(view, "conv")
    assert isinstance(columns, UnitColumns) and columns.frame["improved"].tolist() == [
        g > 0 for g in units["gain"]]
    headline = Compositional.headlines(view)[0]
    assert headline.value == pytest.approx(units["gain"].mean())
    assert all(isinstance(f, Figure) or f is not None
               for f in Compositional.figures(view.tables("compositional")))


@pytest.mark.slow
def test_parts_world_formulas_agree_with_the_part_table(tmp_path):
    """On the parts world: every parts formula's ``own_parts`` is what the data set's part →
    object table says of its terms, and the layer share is their mean."""
    data = probe.load_dataset("parts", split="val", size=24, image_size=32, mask_size=16,
                              seed=3)
    model = probe.load_model("vgg11_bn", width=0.125, input_size=32, fc_width=32,
                             num_classes=9, seed=1)
    tables = probe.measure(model, data, [("compositional", {"quantile": 0.02, "images": 24})],
                           device="cpu", batch_size=8,
                           layers=["conv2_1", "conv4_2"])["compositional"]
    names = dict(zip(data.concepts["id"], data.concepts["name"], strict=True))
    owned: dict[str, set[str]] = {}
    for part, obj in zip(data.part_parents["part_id"], data.part_parents["object_id"],
                         strict=True):
        owned.setdefault(names[obj], set()).add(names[part])
    parts = tables["parts_objects"]
    units = tables["units"]
    assert len(units) == 16 + 64 and len(parts) > 0  # conv2_1: 16 units, conv4_2: 64
    assert (units["gain"] >= 0).all()
    assert (units["iou"] >= units["label_iou"]).all()
    for record in parts.to_dict("records"):
        terms = record["formula"].replace("(", "").replace(")", "")
        ops_ok = " AND NOT " not in f" {terms} "
        words = [w for w in terms.replace(" AND NOT ", " | ").replace(" AND ", " | ")
                 .replace(" OR ", " | ").split(" | ") if w]
        expected = bool(words) and ops_ok and set(words) <= owned[record["object"]]
        assert record["own_parts"] == expected, record
    summary = tables["parts_layers"].set_index("layer")
    for layer, frame in parts.groupby("layer"):
        assert summary.loc[layer, "own_parts"] == pytest.approx(frame["own_parts"].mean())
        assert summary.loc[layer, "object_units"] == len(frame)
