"""Tallies of Network Dissection against hand-computed counts (REFERENCE §1)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import torch
from dissection_reference import ReferenceTally

from probe import ProbeDataset
from probe.plugins.analyses.dissection.labels import BatchLabels, LabelSpace
from probe.plugins.analyses.dissection.tally import LayerTally, iou, primary_categories
from probe.plugins.analyses.dissection.upsample import upsample

CONCEPTS = pd.DataFrame({"id": [1, 2, 3, 4], "name": ["car", "wheel", "window", "striped"],
                         "category": ["object", "part", "part", "texture"]})
SPACE = LabelSpace.from_concepts(CONCEPTS, ["object", "part", "part"], ["texture"])


def fixture_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Four 4×4 images in Broden layout (object, part_1, part_2 layers; texture scalar).

    Unit 0 is a 2×2 map with a single 4 (top-left, none, bottom-right, top-left);
    upsampled bilinearly (align_corners=False) it is 4·r_i·c_j with
    r = c = (1, .75, .25, 0), so ``> 0.5`` keeps 8 pixels. Unit 1 is constant 1.
    """
    masks = torch.zeros((4, 3, 4, 4), dtype=torch.int64)
    masks[0, 0, :2, :2] = 1                       # car block
    masks[0, 1, 1, 0:2] = 2                       # wheel on part_1
    masks[0, 2, 1, 1] = 2                         # wheel again on part_2 (OR-ed)
    masks[0, 2, 2, 1] = 2
    masks[0, 2, 0, 3] = 3                         # window
    masks[1, 0, 3, :] = 1                         # car bottom row
    masks[2, 0, 0, 0] = 1                         # car pixel the unit misses
    masks[2, 1, 3, 3] = 3                         # window
    scalars = torch.tensor([[4], [0], [0], [0]])
    acts = torch.zeros((4, 2, 2, 2))
    acts[0, 0, 0, 0] = 4
    acts[2, 0, 1, 1] = 4
    acts[3, 0, 0, 0] = 4
    acts[:, 1] = 1.0
    return acts, masks, scalars


THRESHOLDS = torch.tensor([0.5, 0.5])

# Hand counts (see fixture_batch): labels car, wheel, window, striped.
TRUTH = {1: 9, 2: 3, 3: 2, 4: 16}
INTERSECTION = {0: {1: 4, 2: 3, 3: 1, 4: 8}, 1: {1: 9, 2: 3, 3: 2, 4: 16}}
# activation per unit and label under each rule (label's category: object/part/part/texture)
ACTIVATION = {
    "paper": {0: {1: 16, 2: 16, 3: 16, 4: 8}, 1: {1: 48, 2: 32, 3: 32, 4: 16}},
    "lite": {0: {1: 8, 2: 16, 3: 16, 4: 8}, 1: {1: 48, 2: 32, 3: 32, 4: 16}},
    "unconditioned": {0: {1: 24, 2: 24, 3: 24, 4: 24}, 1: {1: 64, 2: 64, 3: 64, 4: 64}},
}


def expected_iou(rule: str, unit: int, label: int) -> Fraction:
    inter = INTERSECTION[unit][label]
    return Fraction(inter, ACTIVATION[rule][unit][label] + TRUTH[label] - inter)


def run_tally() -> tuple[LayerTally, BatchLabels]:
    acts, masks, scalars = fixture_batch()
    labels = BatchLabels.build(SPACE, masks, scalars, (4, 4), 4, torch.device("cpu"))
    tally = LayerTally(2, SPACE, torch.device("cpu"))
    tally.update(acts, THRESHOLDS, labels)
    return tally, labels


def test_worked_check_of_reference():
    """AlexNet conv5 unit 198, wheel: 561458 / (1584597 + 1540612 − 561458) = 0.218999."""
    value = iou(torch.tensor(561458), torch.tensor(1584597), torch.tensor(1540612))
    assert float(value) == pytest.approx(561458 / (1584597 + 1540612 - 561458), rel=1e-15)
    assert round(float(value), 6) == 0.218999


def test_iou_empty_union_is_zero():
    assert float(iou(torch.tensor(0), torch.tensor(0), torch.tensor(0))) == 0.0


def test_truth_counts_or_layers_and_whole_image_scalars():
    _, labels = run_tally()
    assert labels.truth.tolist() == [0, TRUTH[1], TRUTH[2], TRUTH[3], TRUTH[4]]


def test_skip_and_upsampled_counts():
    tally, _ = run_tally()
    assert tally.maps == 8
    assert tally.upsampled == 7  # unit 0 on image 1 has max 0 <= 0.5: skipped
    assert tally.active.tolist() == [24, 64]


@pytest.mark.parametrize("rule", ["paper", "lite", "unconditioned"])
def test_hand_computed_iou_per_rule(rule):
    tally, labels = run_tally()
    primary = primary_categories(labels.coverage, SPACE.default_category)
    assert primary.tolist()[1:] == [0, 1, 1, 2]
    activation = tally.activation_for(rule, primary)
    for unit in (0, 1):
        for label in (1, 2, 3, 4):
            assert int(tally.intersection[unit, label]) == INTERSECTION[unit][label]
            assert int(activation[unit, label]) == ACTIVATION[rule][unit][label]
            got = iou(tally.intersection[unit, label], activation[unit, label],
                      labels.truth[label])
            assert float(got) == pytest.approx(float(expected_iou(rule, unit, label)),
                                               abs=1e-15)
    # unit 1 is a perfect "striped" detector under the paper rule only
    assert expected_iou("paper", 1, 4) == 1
    assert expected_iou("unconditioned", 1, 4) == Fraction(1, 4)


def test_pixel_label_inside_scalar_label_is_not_double_counted():
    concepts = pd.DataFrame({"id": [1], "name": ["red"], "category": ["color"]})
    space = LabelSpace.from_concepts(concepts, ["color"], ["color"])
    masks = torch.zeros((1, 1, 2, 2), dtype=torch.int64)
    masks[0, 0, 0, 0] = 1
    labels = BatchLabels.build(space, masks, torch.tensor([[1]]), (2, 2), 1,
                               torch.device("cpu"))
    assert labels.truth.tolist() == [0, 4]
    tally = LayerTally(1, space, torch.device("cpu"))
    tally.update(torch.ones((1, 1, 2, 2)), torch.tensor([0.5]), labels)
    assert tally.intersection.tolist() == [[0, 4]]


def test_primary_category_ties_prefer_concept_table_then_first():
    coverage = torch.tensor([[0, 0, 0], [5, 5, 0], [5, 5, 0], [0, 2, 7], [0, 0, 0]])
    primary = primary_categories(coverage, (-1, 1, -1, 0, 2))
    assert primary.tolist() == [0, 1, 0, 2, 2]


def test_unknown_label_id_is_a_clear_error():
    masks = torch.full((1, 3, 2, 2), 9, dtype=torch.int64)
    with pytest.raises(ValueError, match="label id 9"):
        BatchLabels.build(SPACE, masks, torch.zeros((1, 1), dtype=torch.int64), (2, 2), 1,
                          torch.device("cpu"))


def dense_upsample(feature: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return upsample(torch.from_numpy(feature)[None], size)[0].numpy()


def test_device_tally_equals_reference_loop_on_random_data():
    gen = torch.Generator().manual_seed(3)
    acts = torch.nn.functional.avg_pool2d(torch.randn((6, 5, 10, 10), generator=gen), 3, 1, 1)
    acts = acts[:, :, ::2, ::2].contiguous()  # smooth-ish 5×5 maps
    masks = torch.randint(0, 5, (6, 3, 12, 12), generator=gen)
    masks[masks == 4] = 0
    masks[:, 1:][masks[:, 1:] == 1] = 2  # parts layers hold part labels
    scalars = torch.randint(0, 2, (6, 1), generator=gen) * 4
    thresholds = torch.quantile(acts.transpose(0, 1).reshape(5, -1), 0.8, dim=1)
    labels = BatchLabels.build(SPACE, masks, scalars, (12, 12), 6, torch.device("cpu"))
    tally = LayerTally(5, SPACE, torch.device("cpu"))
    for part in range(0, 6, 4):  # two batches
        sub = BatchLabels.build(SPACE, masks[part:part + 4], scalars[part:part + 4], (12, 12),
                                len(masks[part:part + 4]), torch.device("cpu"))
        tally.update(acts[part:part + 4], thresholds, sub)
    ref = ReferenceTally.zeros(5, SPACE)
    ref.add(acts.numpy(), thresholds.numpy(), masks.numpy(), scalars.numpy(), SPACE,
            upsample=dense_upsample)
    assert np.array_equal(tally.intersection.numpy(), ref.intersection)
    assert np.array_equal(tally.active.numpy(), ref.active)
    assert np.array_equal(tally.active_paper.numpy(), ref.active_paper)
    assert np.array_equal(tally.active_lite.numpy(), ref.active_lite)
    assert np.array_equal(labels.truth.numpy(), ref.truth)
    assert tally.intersection.sum() > 0 and (tally.active_lite != tally.active_paper).any()
    # coverage: pixels where the label is in some layer of the category, once per pixel
    cover = np.zeros((SPACE.num_labels, len(SPACE.categories)), np.int64)
    for image in range(len(masks)):
        for cat in set(SPACE.mask_categories):
            layers = [i for i, c in enumerate(SPACE.mask_categories) if c == cat]
            for label in range(1, SPACE.num_labels):
                cover[label, cat] += int((masks[image, layers] == label).any(0).sum())
        for slot, cat in enumerate(SPACE.scalar_categories):
            if scalars[image, slot]:
                cover[int(scalars[image, slot]), cat] += 12 * 12
    assert np.array_equal(labels.coverage.numpy(), cover)


class FixtureSet(ProbeDataset):
    """The four fixture images as a probe data set (for the Broden round trip)."""

    name = "fixture"
    image_size = 4
    mask_size = 4
    concepts = CONCEPTS
    mask_categories = ("object", "part", "part")
    scalar_categories = ("texture",)

    def __init__(self) -> None:
        _, self.masks, self.scalars = fixture_batch()

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict:
        return {"image": torch.zeros((3, 4, 4)), "label": -1, "index": index,
                "masks": self.masks[index], "scalars": self.scalars[index]}


@pytest.mark.parametrize("rule", ["paper", "lite", "unconditioned"])
def test_broden_format_fixture_gives_hand_computed_iou(tmp_path, rule):
    """Written as a Broden directory (index.csv, label PNGs) and read back by ``broden``."""
    import probe
    from probe.plugins.datasets.broden_export import export_broden

    root = export_broden(FixtureSet(), tmp_path / "broden")
    data = probe.load_dataset("broden", path=str(root))
    assert (root / "index.csv").is_file() and len(data) == 4
    space = LabelSpace.from_concepts(data.concepts, data.mask_categories,
                                     data.scalar_categories)
    samples = [data[i] for i in range(len(data))]
    masks = torch.stack([s["masks"] for s in samples])
    scalars = torch.stack([s["scalars"] for s in samples])
    labels = BatchLabels.build(space, masks, scalars, (4, 4), 4, torch.device("cpu"))
    tally = LayerTally(2, space, torch.device("cpu"))
    acts, _, _ = fixture_batch()
    tally.update(acts, THRESHOLDS, labels)
    primary = primary_categories(labels.coverage, space.default_category)
    activation = tally.activation_for(rule, primary)
    got = iou(tally.intersection, activation, labels.truth.view(1, -1))
    for unit in (0, 1):
        for label in (1, 2, 3, 4):
            assert float(got[unit, label]) == pytest.approx(
                float(expected_iou(rule, unit, label)), abs=1e-15)
