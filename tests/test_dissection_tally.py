"""Tallies of Network Dissection against hand-computed counts (REFERENCE §1)."""

from __future__ import annotations

import tracemalloc
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import torch
from dissection_reference import ReferenceTally
from torch._C._profiler import _EventType
from torch.profiler import ProfilerActivity, profile

from probe import ProbeDataset
from probe.plugins.analyses.dissection import active as active_module
from probe.plugins.analyses.dissection.active import active_pixels
from probe.plugins.analyses.dissection.labels import BatchLabels, LabelSpace
from probe.plugins.analyses.dissection.tally import (
    RULES,
    LayerTally,
    iou,
    labels_transient_bytes,
    primary_categories,
    transient_bytes,
)
from probe.plugins.analyses.dissection.upsample import upsample

CPU = torch.device("cpu")


def assert_intersection_within_activation(tally: LayerTally, primary: torch.Tensor) -> None:
    """I <= A for every unit and label under every rule (and I <= |M_k| summed)."""
    for rule in RULES:
        activation = tally.activation_for(rule, primary)
        assert bool((tally.intersection <= activation).all()), rule

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
    assert_intersection_within_activation(tally, primary)
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
    assert_intersection_within_activation(tally, labels.primary)


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
    # wheel and window are in the object layer too: the data set's primary categories
    # (from all six images) decide, in every batch
    primary = primary_categories(labels.coverage, SPACE.default_category)
    tally = LayerTally(5, SPACE, torch.device("cpu"))
    for part in range(0, 6, 4):  # two batches
        sub = BatchLabels.build(SPACE, masks[part:part + 4], scalars[part:part + 4], (12, 12),
                                len(masks[part:part + 4]), torch.device("cpu"), primary)
        tally.update(acts[part:part + 4], thresholds, sub)
    ref = ReferenceTally.zeros(5, SPACE)
    ref.add(acts.numpy(), thresholds.numpy(), masks.numpy(), scalars.numpy(), SPACE,
            upsample=dense_upsample, primary=primary.numpy())
    assert_intersection_within_activation(tally, primary)
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
    assert_intersection_within_activation(tally, primary)


# -- a label annotated in several categories (Broden: an object in one image, a part in
# another). Its activation count is gated by its own primary category wherever it is.

MULTI = pd.DataFrame({"id": [1, 2, 3], "name": ["car", "wheel", "window"],
                      "category": ["object", "part", "part"]})
MULTI_SPACE = LabelSpace.from_concepts(MULTI, ["object", "part"], [])  # no scalar slots


def multi_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Four 8×8 images, maps of mask size (active pixels = raw values above 0.5).

    0: wheel in the *object* layer, 16 px. 1: wheel in the *part* layer, 4 px (no
    object annotated). 2: a car, 8 px. 3: a window, 2 px. Wheel's coverage is 16 as an
    object against 4 as a part: its primary category is object.
    Unit 0 fires on image 1's wheel (4 px) and on 4 unlabelled pixels of images 2 and 3;
    unit 1 fires on every pixel.
    """
    masks = torch.zeros((4, 2, 8, 8), dtype=torch.int64)
    masks[0, 0, :4, :4] = 2
    masks[1, 1, :2, :2] = 2
    masks[2, 0, 4:6, :4] = 1
    masks[3, 1, 7, 6:] = 3
    acts = torch.zeros((4, 2, 8, 8))
    acts[1, 0, :2, :2] = 1.0
    acts[2, 0, 6:, :2] = 1.0
    acts[3, 0, :2, 6:] = 1.0
    acts[:, 1] = 1.0
    return acts, masks


# Hand counts: truth car 8, wheel 20, window 2. Categories present by primary category:
# images 0, 1, 2 hold an object-primary label (wheel, wheel, car), image 3 a part (window).
MULTI_TRUTH = {1: 8, 2: 20, 3: 2}
MULTI_INTER = {0: {1: 0, 2: 4, 3: 0}, 1: {1: 8, 2: 20, 3: 2}}
MULTI_ACT = {
    # unit 0: |M| = 0, 4, 4, 4. paper: object labels count images 0-2 (8), window image 3 (4)
    "paper": {0: {1: 8, 2: 8, 3: 4}, 1: {1: 192, 2: 192, 3: 64}},
    # lite: only image 1's active pixels touch a label (the wheel: object)
    "lite": {0: {1: 4, 2: 4, 3: 0}, 1: {1: 192, 2: 192, 3: 64}},
    "unconditioned": {0: {1: 12, 2: 12, 3: 12}, 1: {1: 256, 2: 256, 3: 256}},
}


def multi_iou(rule: str, unit: int, label: int) -> Fraction:
    inter = MULTI_INTER[unit][label]
    return Fraction(inter, MULTI_ACT[rule][unit][label] + MULTI_TRUTH[label] - inter)


@pytest.mark.parametrize("rule", RULES)
def test_label_in_two_categories_the_issue_example(rule):
    """Wheel: an object (16 px) in one image, a part (4 px) in another; the unit fires only
    on the part. I = 4, A = 4 (the wheel's own pixels gate it): IoU 4 / (4 + 20 − 4) = 0.2
    under every rule, as NetDissect-Lite counts (before: A = 0, IoU 0.25, I > A)."""
    acts, masks = multi_batch()
    acts, masks = acts[:2, :1], masks[:2]
    labels = BatchLabels.build(MULTI_SPACE, masks, None, (8, 8), 2, CPU)
    primary = primary_categories(labels.coverage, MULTI_SPACE.default_category)
    assert MULTI_SPACE.categories[int(primary[2])] == "object"
    tally = LayerTally(1, MULTI_SPACE, CPU)
    tally.update(acts, torch.tensor([0.5]), labels)
    activation = tally.activation_for(rule, primary)
    assert int(tally.intersection[0, 2]) == 4 and int(activation[0, 2]) == 4
    assert int(labels.truth[2]) == 20
    assert float(iou(tally.intersection[0, 2], activation[0, 2], labels.truth[2])) == 0.2
    assert_intersection_within_activation(tally, primary)


@pytest.mark.parametrize("rule", RULES)
def test_label_in_two_categories_hand_computed_per_rule(rule):
    acts, masks = multi_batch()
    labels = BatchLabels.build(MULTI_SPACE, masks, None, (8, 8), 4, CPU)
    primary = primary_categories(labels.coverage, MULTI_SPACE.default_category)
    assert [MULTI_SPACE.categories[int(c)] for c in primary[1:]] == ["object", "object", "part"]
    tally = LayerTally(2, MULTI_SPACE, CPU)
    tally.update(acts, torch.tensor([0.5, 0.5]), labels)
    activation = tally.activation_for(rule, primary)
    assert labels.truth.tolist()[1:] == list(MULTI_TRUTH.values())
    for unit in (0, 1):
        for label in (1, 2, 3):
            assert int(tally.intersection[unit, label]) == MULTI_INTER[unit][label]
            assert int(activation[unit, label]) == MULTI_ACT[rule][unit][label]
            got = iou(tally.intersection[unit, label], activation[unit, label],
                      labels.truth[label])
            assert float(got) == pytest.approx(float(multi_iou(rule, unit, label)), abs=1e-15)
    assert multi_iou(rule, 0, 2) == {"paper": Fraction(1, 6), "lite": Fraction(1, 5),
                                     "unconditioned": Fraction(1, 7)}[rule]
    assert_intersection_within_activation(tally, primary)
    # the reference loop agrees, given the same primary categories
    ref = ReferenceTally.zeros(2, MULTI_SPACE)
    ref.add(acts.numpy(), np.array([0.5, 0.5]), masks.numpy(), None, MULTI_SPACE,
            primary=primary.numpy())
    assert np.array_equal(ref.intersection, tally.intersection.numpy())
    assert np.array_equal(ref.active_paper, tally.active_paper.numpy())
    assert np.array_equal(ref.active_lite, tally.active_lite.numpy())


def test_label_in_two_categories_primary_from_the_whole_data_set():
    """Batches {0, 2} and {1, 3}: the second alone would make the wheel a part. The
    accumulator fixes primary categories after pass 1 from all images, so the counts are
    the hand-computed ones, and the concept table's category is an option."""
    from probe import Batch
    from probe.plugins.analyses.dissection import Dissection
    from probe.plugins.analyses.dissection.accumulator import DissectionAccumulator

    acts, masks = multi_batch()
    for source, wheel in (("coverage", "object"), ("table", "part")):
        settings = Dissection(quantile=0.3, rule="lite", primary=source, top_labels=3,
                              hierarchy=False).settings
        acc = DissectionAccumulator(settings, MULTI_SPACE, ["l"], {"l": (2, 8, 8)}, 4,
                                    (8, 8), (3, 8, 8), CPU)
        for pass_index in (0, 1):
            for order in ([0, 2], [1, 3]):
                idx = torch.tensor(order)
                acc.update(Batch(images=torch.zeros((2, 3, 8, 8)), inputs=torch.zeros(1),
                                 indices=idx, labels=torch.zeros(2), outputs=torch.zeros(2),
                                 activations={"l": acts[idx]}, masks=masks[idx],
                                 image_concepts=None, pass_index=pass_index))
            acc.end_pass(pass_index, None)
            if pass_index == 0:
                acc.thresholds = {"l": torch.tensor([0.5, 0.5])}
        assert MULTI_SPACE.categories[int(acc.primary[2])] == wheel
        tally = acc.tallies["l"]
        assert_intersection_within_activation(tally, acc.primary)
        labels = acc.finalize(None)["labels"]
        assert (labels["intersection"] <= labels["activation"]).all()
        row = labels[(labels["unit"] == 0) & (labels["name"] == "wheel")].iloc[0]
        assert row["category"] == wheel
        assert (row["intersection"], row["activation"], row["truth"]) == (4, 4, 20)
        assert row["iou"] == pytest.approx(0.2, abs=1e-15)


def test_no_scalar_slots_and_no_mask_layers():
    """A Broden set without scene/texture labels has scalars [B, 0]; pass 2 must not fail
    (it raised IndexError in _zero_repeats_). Nor a set with only image-level labels."""
    acts, masks = multi_batch()
    labels = BatchLabels.build(MULTI_SPACE, masks, torch.zeros((4, 0), dtype=torch.int64),
                               (8, 8), 4, CPU)
    tally = LayerTally(2, MULTI_SPACE, CPU)
    tally.update(acts, torch.tensor([0.5, 0.5]), labels)
    assert tally.intersection[1, 1:].tolist() == [8, 20, 2]
    scenes = pd.DataFrame({"id": [1, 2], "name": ["street", "park"], "category": ["scene"] * 2})
    space = LabelSpace.from_concepts(scenes, [], ["scene"])
    labels = BatchLabels.build(space, None, torch.tensor([[1], [2], [0], [1]]), (8, 8), 4, CPU)
    assert labels.truth.tolist() == [0, 128, 64]
    tally = LayerTally(2, space, CPU)
    tally.update(acts, torch.tensor([0.5, 0.5]), labels)
    assert tally.intersection[1].tolist() == [0, 128, 64]
    assert_intersection_within_activation(tally, labels.primary)


def test_device_tally_equals_pil_reference_when_maps_are_larger_than_masks():
    """16×16 maps, 8×8 masks: the tally's antialiased resize counts what PIL's does."""
    gen = torch.Generator().manual_seed(7)
    acts = torch.nn.functional.avg_pool2d(torch.randn((5, 4, 18, 18), generator=gen), 3, 1)
    masks = torch.randint(0, 5, (5, 3, 8, 8), generator=gen)
    masks[masks == 4] = 0
    scalars = torch.randint(0, 2, (5, 1), generator=gen) * 4
    thresholds = torch.quantile(acts.transpose(0, 1).reshape(4, -1), 0.7, dim=1)
    labels = BatchLabels.build(SPACE, masks, scalars, (8, 8), 5, CPU)
    tally = LayerTally(4, SPACE, CPU)
    tally.update(acts, thresholds, labels)
    ref = ReferenceTally.zeros(4, SPACE)  # PIL bilinear, antialiased when shrinking
    ref.add(acts.numpy(), thresholds.numpy(), masks.numpy(), scalars.numpy(), SPACE,
            primary=labels.primary.numpy())
    assert tally.intersection.sum() > 0
    assert np.array_equal(tally.intersection.numpy(), ref.intersection)
    assert np.array_equal(tally.active.numpy(), ref.active)
    assert np.array_equal(tally.active_lite.numpy(), ref.active_lite)
    assert_intersection_within_activation(tally, labels.primary)


def test_owner_slices_between_maps_give_the_same_counts(monkeypatch):
    gen = torch.Generator().manual_seed(2)
    act = torch.randn((3, 5, 6, 6), generator=gen)
    thresholds = torch.zeros(5)
    whole = active_pixels(act, thresholds, (20, 20))
    monkeypatch.setattr(active_module, "CHUNK_RAW", 7)  # a few maps per slice
    monkeypatch.setattr(active_module, "GROUP_VALUES", 100)  # two maps per group
    sliced = active_pixels(act, thresholds, (20, 20))
    assert all(torch.equal(a, b) for a, b in zip(whole, sliced, strict=True))


BRODEN_CATEGORIES = ("color", "object", "part", "material", "scene", "texture")


def _peak_allocated(fn):
    """Peak bytes ``fn`` holds allocated at once, beyond what was live before it, as
    the allocators themselves count them: PyTorch's CPU allocator (the profiler's
    allocation events carry its running total) plus numpy's (``tracemalloc`` traces
    numpy's data buffers), the two peaks summed, which can only over-count.

    The resident set is not used: it counts pages, not allocations, and how many
    pages a buffer makes resident depends on the machine (the same call read 43 MiB
    here and 80 MiB on the CI machine), while the allocators' totals do not.
    """
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        tracemalloc.start()
        try:
            out = fn()
            numpy_peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    events, stack = [], list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        stack.extend(node.children)
        if node.tag == _EventType.Allocation:
            fields = node.extra_fields
            events.append((node.start_time_ns, fields.total_allocated, fields.alloc_size))
    if not events:
        return numpy_peak, out
    events.sort()
    before = events[0][1] - events[0][2]  # the running total before fn's first allocation
    return max(total for _, total, _ in events) - before + numpy_peak, out


@pytest.mark.parametrize(("batch", "units", "side", "worst"), [
    (64, 512, 7, False),    # Broden scale: 224 px input, 112 px masks, a 512-unit layer
    (64, 512, 28, False),
    (8, 64, 7, True),       # every pixel of every map active: 6.4 M active pixels
    (8, 64, 224, True),     # maps larger than the masks (antialiased path), all active
])
def test_transient_memory_per_batch_is_bounded_at_broden_scale(batch, units, side, worst):
    torch.set_num_threads(1)
    n_labels = 1198
    concepts = pd.DataFrame({"id": range(1, n_labels), "name": [f"c{i}" for i in
                                                                range(1, n_labels)],
                             "category": [BRODEN_CATEGORIES[i % 6] for i in range(1, n_labels)]})
    layers = ["color", "object", "part", "part", "part", "material"]
    space = LabelSpace.from_concepts(concepts, layers, ["scene", "texture"])
    gen = torch.Generator().manual_seed(batch + side)
    masks = torch.randint(0, n_labels, (batch, len(layers), 112, 112), generator=gen)
    scalars = torch.randint(0, n_labels, (batch, 2), generator=gen)
    if worst:
        act, thresholds = torch.ones((batch, units, side, side)), torch.zeros(units)
    else:  # smooth maps, threshold at the top 0.5 %
        act = torch.nn.functional.avg_pool2d(
            torch.randn((batch, units, side + 2, side + 2), generator=gen), 3, 1)
        thresholds = torch.quantile(act.transpose(0, 1).reshape(units, -1)[:, :100_000],
                                    0.995, dim=1)
    grown, labels = _peak_allocated(lambda: BatchLabels.build(space, masks, scalars, (112, 112),
                                                           batch, CPU))
    assert grown <= labels_transient_bytes(batch, (112, 112), len(layers))
    tally = LayerTally(units, space, CPU)
    peak = act.flatten(2).amax(2)
    grown, _ = _peak_allocated(lambda: tally.update(act, thresholds, labels, peak))
    bound = transient_bytes(batch, units, n_labels, len(space.categories), 2)
    assert grown <= bound, (grown / 2**20, bound / 2**20)
    assert bound < 128 * 2**20  # MiB: what the docs state for Broden scale
    active = int(tally.active.sum())
    assert active > 0
    if worst:  # the list of active pixels alone (two int64 each) is larger than the peak
        assert active * 16 > grown
    assert_intersection_within_activation(tally, labels.primary)


def test_or_of_category_bits_per_map_both_ways():
    """The lite rule's per-map OR of category bits: numpy's reduceat (CPU) and the
    scatter version (other devices) agree with a plain loop."""
    from probe.plugins.analyses.dissection.tally import _or_per_pair_, _or_per_pair_scatter_

    gen = torch.Generator().manual_seed(0)
    pair = torch.sort(torch.randint(0, 50, (1000,), generator=gen)).values
    bits = torch.randint(0, 32, (1000,), generator=gen, dtype=torch.int32)
    expected = torch.zeros(60, dtype=torch.int32)
    expected[3] = 64
    for p, b in zip(pair.tolist(), bits.tolist(), strict=True):
        expected[p] |= b
    for fn in (_or_per_pair_, _or_per_pair_scatter_):
        out = torch.zeros(60, dtype=torch.int32)
        out[3] = 64
        fn(out, pair, bits)
        assert torch.equal(out, expected)


def test_torch_and_numpy_cpu_paths_count_the_same(monkeypatch):
    """On the CPU the candidates and counts go through numpy; other devices run the torch
    code: both give the same tallies (here both on the CPU)."""
    gen = torch.Generator().manual_seed(4)
    acts = torch.nn.functional.avg_pool2d(torch.randn((6, 5, 10, 10), generator=gen), 3, 1, 1)
    acts = acts[:, :, ::2, ::2].contiguous()
    masks = torch.randint(0, 5, (6, 3, 12, 12), generator=gen)
    masks[masks == 4] = 0
    scalars = torch.randint(0, 2, (6, 1), generator=gen) * 4
    thresholds = torch.quantile(acts.transpose(0, 1).reshape(5, -1), 0.8, dim=1)
    labels = BatchLabels.build(SPACE, masks, scalars, (12, 12), 6, CPU)
    tallies = []
    for flag in (True, False):
        monkeypatch.setattr(active_module, "NUMPY", flag)
        tally = LayerTally(5, SPACE, CPU)
        tally.update(acts, thresholds, labels)
        tallies.append(tally)
    for name in ("intersection", "active", "active_paper", "active_lite"):
        assert torch.equal(getattr(tallies[0], name), getattr(tallies[1], name)), name
    assert tallies[0].intersection.sum() > 0


def test_every_run_checks_intersection_within_activation():
    """The finalize-time check that makes every dissection run assert I <= A (all rules)."""
    tally = LayerTally(2, SPACE, torch.device("cpu"))
    # primary category of none, car (object), wheel, window (part), striped (texture)
    primary = torch.tensor([0, 0, 1, 1, 2])
    tally.active += torch.tensor([5, 5])
    tally.active_paper += 5
    tally.active_lite += 5
    tally.intersection[1, 2] = 5
    tally.check_within_activation(primary)  # I == A is allowed
    tally.intersection[1, 2] = 6
    with pytest.raises(RuntimeError, match=r"1 unit × label intersection counts exceed .* "
                                           r"rule 'paper'"):
        tally.check_within_activation(primary)
    tally.active_paper += 1  # only Lite's rule is breached now
    with pytest.raises(RuntimeError, match="rule 'lite'"):
        tally.check_within_activation(primary)


@pytest.mark.parametrize(("shape", "size"), [((5, 5), (12, 12)), ((4, 7), (16, 9)),
                                             ((12, 12), (12, 12)), ((1, 3), (8, 8)),
                                             ((16, 16), (6, 6)), ((4, 4), (12, 12)),
                                             ((9, 14), (4, 14)), ((8, 8), (4, 4))])
@pytest.mark.parametrize("downsample", ["antialias", "bilinear"])
def test_compiled_numpy_and_torch_paths_count_the_same(monkeypatch, shape, size, downsample):
    """The compiled CPU kernels (found and counted in one pass), the vectorised numpy path
    and the torch code other devices run give the same tallies, count for count: maps
    that grow (square, non-square, a single row), keep their size or shrink, with
    values exactly at the threshold (ties are not active), under both shrinking rules."""
    from probe.plugins.analyses.dissection import fused

    gen = torch.Generator().manual_seed(sum(shape) * 31 + size[0])
    acts = torch.randn((7, 6, *shape), generator=gen)
    acts[:, 5, 0, 0] = 0.5  # ties with unit 5's threshold in every map
    if min(shape) >= 3:  # 4 -> 12 puts output 4 exactly on sample 1, read by an owner
        acts[:, 5, 1, 1], acts[:, 5, 1, 2] = 0.5, 2.0  # that also reads a sample above
    if shape == (8, 8):  # 8 -> 4 antialiased: output (1, 1) weighs rows and columns
        # 1..4 by 1/8, 3/8, 3/8, 1/8, so it is exactly 0.5 = T, with a tap at 0.75 above
        acts[:, 5, 1:5, 1:5] = torch.tensor([0.5, 0.25, 0.75, 0.5])
    masks = torch.randint(0, 5, (7, 3, *size), generator=gen)
    masks[masks == 4] = 0
    scalars = torch.randint(0, 2, (7, 1), generator=gen) * 4
    thresholds = torch.quantile(acts.transpose(0, 1).reshape(6, -1), 0.9, dim=1)
    thresholds[5] = 0.5
    labels = BatchLabels.build(SPACE, masks, scalars, size, 7, CPU)
    tallies = []
    for compiled, numpy_path in ((True, True), (False, True), (False, False)):
        monkeypatch.setattr(fused, "ENABLED", compiled)
        monkeypatch.setattr(active_module, "NUMPY", numpy_path)
        tally = LayerTally(6, SPACE, CPU)
        tally.update(acts, thresholds, labels, downsample=downsample)
        tallies.append(tally)
    for other in tallies[1:]:
        for name in ("intersection", "active", "active_paper", "active_lite"):
            assert torch.equal(getattr(tallies[0], name), getattr(other, name)), name
    assert tallies[0].intersection.sum() > 0
    assert_intersection_within_activation(tallies[0], labels.primary)
