"""The label side of Network Dissection: the label space and each batch's label maps.

:class:`LabelSpace` indexes a data set's concepts and categories;
:class:`BatchLabels` is the label side of one batch (OR-ed pixel labels, the
categories present per pixel and per image, truth and coverage counts),
computed once per batch on the device and shared by every layer's tally (see
:mod:`.tally` for the conventions). :func:`label_coverage` is the part pass 1
needs (pixels of each label per category, from which the primary categories
are fixed before pass 2, :func:`primary_categories`).

Categories present at a pixel or in an image are those of the labels there, by
each label's **primary** category — never the category of the mask layer that
holds them. A label annotated in several categories (Broden: a wheel is an
object in one image, a part in another) therefore always gates its own
activation count: whenever it is at a pixel, its primary category is present
there, so ``I <= A`` under every rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch

from .coverage import PRIMARY_SOURCES, LabelPlan, mixed_categories, primary_categories

__all__ = ["PRIMARY_SOURCES", "BatchLabels", "LabelPlan", "LabelSpace", "label_coverage",
           "mixed_categories", "primary_categories"]

@dataclass(frozen=True)
class LabelSpace:
    """Labels and categories of a data set, as the tallies index them.

    Attributes:
        names: Name per label id (index 0 = unlabelled).
        default_category: Category index of each label in the concept table (-1: none).
        categories: Category names, in order.
        mask_categories: Category index of each mask layer.
        scalar_categories: Category index of each scalar slot.
    """

    names: tuple[str, ...]
    default_category: tuple[int, ...]
    categories: tuple[str, ...]
    mask_categories: tuple[int, ...]
    scalar_categories: tuple[int, ...]

    @property
    def num_labels(self) -> int:
        """Label ids are ``0 .. num_labels - 1``."""
        return len(self.names)

    @classmethod
    def of_dataset(cls, dataset: Any, analysis: str) -> LabelSpace:
        """The label space of a run's data set (its concept table and layer layout).

        Raises:
            ValueError: ``ANALYSIS needs a data set with a concept table``.
        """
        if dataset is None or getattr(dataset, "concepts", None) is None:
            raise ValueError(f"{analysis} needs a data set with a concept table")
        return cls.from_concepts(dataset.concepts, dataset.mask_categories,
                                 dataset.scalar_categories)

    @classmethod
    def from_concepts(cls, concepts: pd.DataFrame, mask_categories: Sequence[str],
                      scalar_categories: Sequence[str]) -> LabelSpace:
        """Build from a concept table (``id``, ``name``, ``category``) and the layer layout."""
        categories = list(dict.fromkeys(concepts["category"]))
        for cat in (*mask_categories, *scalar_categories):
            if cat not in categories:
                categories.append(cat)
        ids = concepts["id"].astype(int)
        if (ids <= 0).any():
            raise ValueError(f"concept ids must be >= 1 (0 = unlabelled), got {int(ids.min())}")
        size = int(ids.max()) + 1 if len(ids) else 1
        names = [f"label{i}" for i in range(size)]
        names[0] = "-"
        default = [-1] * size
        for cid, name, cat in zip(ids, concepts["name"], concepts["category"], strict=True):
            names[cid] = str(name)
            default[cid] = categories.index(cat)
        return cls(tuple(names), tuple(default), tuple(categories),
                   tuple(categories.index(c) for c in mask_categories),
                   tuple(categories.index(c) for c in scalar_categories))


def _dedupe_last(values: torch.Tensor) -> torch.Tensor:
    """Zero every entry equal to an earlier one along the last dim (so each counts once).

    The last dim is a handful of scalar slots; returns a copy.
    """
    return _zero_repeats_(values.T.clone()).T


def _equal_to_earlier(layers: torch.Tensor, later: int, earlier: Sequence[int],
                      out: torch.Tensor) -> torch.Tensor:
    """``out[...] = layers[later]`` equals ``layers[m]`` for some ``m`` in ``earlier`` (bool)."""
    out.zero_()
    for m in earlier:  # a handful of mask layers or slots, not units or images
        out |= layers[later] == layers[m]
    return out


def _zero_repeats_(layers: torch.Tensor,
                   earlier: Sequence[Sequence[int]] | None = None) -> torch.Tensor:
    """Zero, in place, every entry of ``layers [L, ...]`` equal to an earlier layer's entry.

    Zeroing in order is safe: the first occurrence of a value is never zeroed as a
    repeat, so later layers still find it. ``L`` may be 0 or 1 (no scalar slots,
    e.g. a Broden set without scene/texture labels; a single mask layer): nothing to do.
    ``earlier[l]``: the earlier layers that can hold one of layer ``l``'s values (default
    all; :class:`LabelPlan` knows which from the data set's coverage).
    """
    if layers.shape[0] < 2:
        return layers
    repeat = torch.empty_like(layers[0], dtype=torch.bool)
    for layer in range(1, len(layers)):
        others = range(layer) if earlier is None else earlier[layer]
        if others:
            layers[layer] *= ~_equal_to_earlier(layers, layer, others, repeat)
    return layers


def _coverage_of_layers(raw: torch.Tensor, mask_categories: Sequence[int], n_labels: int,
                        n_cats: int) -> torch.Tensor:
    """``Tensor[num_labels, C]`` pixels of each label per category, each (label, category) once
    per pixel (a label in two layers of one category counts once)."""
    coverage = torch.zeros((n_cats, n_labels), dtype=torch.int64, device=raw.device)
    if not len(raw):  # image-level labels only
        return coverage.T.contiguous()
    repeat = torch.empty_like(raw[0], dtype=torch.bool)
    for layer, cat in enumerate(mask_categories):
        same = [m for m in range(layer) if mask_categories[m] == cat]
        values = raw[layer]
        if same:
            values = values * ~_equal_to_earlier(raw, layer, same, repeat)
        coverage[cat] += torch.bincount(values.view(-1), minlength=n_labels)
    return coverage.T.contiguous()


def _remove_repeats_(raw: torch.Tensor, scalars: torch.Tensor,
                     plan: LabelPlan | None = None) -> torch.Tensor:
    """Zero, in place, labels repeated from an earlier layer at the same pixel and labels
    equal to one of the image's scalar labels (``raw [L, B, P]``, ``scalars [B, S]``);
    ``plan`` skips the comparisons that cannot match."""
    _zero_repeats_(raw, None if plan is None else plan.earlier)
    for slot in range(scalars.shape[1]):  # a pixel inside a whole-image label: not again
        value = scalars[:, slot].view(-1, 1).to(raw.dtype)  # (0 == 0 changes nothing)
        for layer in (range(len(raw)) if plan is None else plan.slot_layers[slot]):
            raw[layer] *= raw[layer] != value
    return raw


def _as_inputs(space: LabelSpace, masks: torch.Tensor | None, scalars: torch.Tensor | None,
               size: tuple[int, int], batch_size: int,
               device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    h, w = size
    if masks is None:
        masks = torch.zeros((batch_size, 0, h, w), dtype=torch.int32, device=device)
    if scalars is None:
        scalars = torch.zeros((batch_size, 0), dtype=torch.int64, device=device)
    scalars = scalars.long()
    _check_layout(space, masks, scalars)
    return masks, scalars


def _raw_layers(masks: torch.Tensor) -> torch.Tensor:
    """``Tensor[L, B, P]`` int32 copy of ``masks [B, L, h, w]`` (one copy, any int dtype)."""
    batch, n_layers = masks.shape[:2]
    pixels = masks.shape[2] * masks.shape[3]
    raw = torch.empty((n_layers, batch, pixels), dtype=torch.int32, device=masks.device)
    raw.copy_(masks.transpose(0, 1).reshape(n_layers, batch, pixels))
    return raw


def _coverage(space: LabelSpace, raw: torch.Tensor, scalars: torch.Tensor,
              pixels_per_image: int) -> torch.Tensor:
    """``Tensor[num_labels, C]`` int64: pixels of each label per category in the batch."""
    n_labels, n_cats = space.num_labels, len(space.categories)
    slot_cat = torch.tensor(space.scalar_categories, dtype=torch.int64, device=raw.device)
    coverage = _coverage_of_layers(raw, space.mask_categories, n_labels, n_cats)
    slot_keys = _dedupe_last(torch.where(scalars != 0, scalars * n_cats + slot_cat, 0))
    coverage += (torch.bincount(slot_keys.flatten(), minlength=n_labels * n_cats)
                 * pixels_per_image).view(n_labels, n_cats)
    coverage[0] = 0
    return coverage


def label_coverage(space: LabelSpace, masks: torch.Tensor | None,
                   scalars: torch.Tensor | None, size: tuple[int, int], batch_size: int,
                   device: torch.device) -> torch.Tensor:
    """``Tensor[num_labels, C]`` int64 pixels of each label per category (layer / slot
    category; a label in two layers of one category counts once per pixel; a scalar
    label covers the whole image). Pass 1 sums it to fix the primary categories."""
    masks, scalars = _as_inputs(space, masks, scalars, size, batch_size, device)
    return _coverage(space, _raw_layers(masks), scalars, size[0] * size[1])


def _primary_lookup(primary: torch.Tensor, n_cats: int, device: torch.device) -> torch.Tensor:
    """``Tensor[num_labels]`` int64 primary category per label, ``n_cats`` for label 0."""
    lookup = primary.to(device=device, dtype=torch.int64).clone()
    lookup[0] = n_cats
    return lookup


def _category_bits(space: LabelSpace, raw: torch.Tensor, lookup: torch.Tensor,
                   mixed: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(bits, annotated)``: ``Tensor[B·P]`` int32 with bit ``c`` set where a label whose
    primary category is ``c`` is at the pixel, and ``Tensor[B, C]`` bool, any such pixel
    in the image.

    For a category in no ``mixed`` (always, for data sets whose labels each have one
    category) this is "some layer of ``c`` is labelled here", computed layer by layer;
    the layers of ``mixed`` categories have their labels mapped to their primary
    categories one by one.
    """
    n_cats = len(space.categories)
    n_layers, batch, pixels = raw.shape
    device = raw.device
    bits = torch.zeros(batch * pixels, dtype=torch.int32, device=device)
    annotated = torch.zeros((batch, n_cats), dtype=torch.bool, device=device)
    if not n_layers:
        return bits, annotated
    for cat in sorted(set(space.mask_categories) - set(mixed)):  # a handful of categories
        layers = [i for i, c in enumerate(space.mask_categories) if c == cat]
        in_cat = raw[layers[0]] != 0
        for layer in layers[1:]:
            in_cat |= raw[layer] != 0
        annotated[:, cat] |= in_cat.view(torch.uint8).amax(1) > 0  # (bool any is slow)
        bits.add_(in_cat.view(-1), alpha=1 << cat)  # distinct bits: + is |
    complex_layers = [i for i, c in enumerate(space.mask_categories) if c in set(mixed)]
    if complex_layers:
        # label 0 maps to bit n_cats, cleared below
        values = torch.ones(len(lookup), dtype=torch.int32, device=device) << lookup.int()
        extra = torch.zeros(batch * pixels, dtype=torch.int32, device=device)
        for layer in complex_layers:
            extra |= values.index_select(0, raw[layer].view(-1).long())
        extra &= (1 << n_cats) - 1
        bits |= extra
        for cat in range(n_cats):
            annotated[:, cat] |= ((extra.view(batch, pixels) >> cat) & 1).amax(1) > 0
    return bits, annotated


@dataclass
class BatchLabels:
    """The label side of one batch, shared by every layer.

    Attributes:
        table: ``Tensor[B·h·w, L + 1]`` int32, per pixel: the label id of each mask layer,
            OR-ed over layers (each label once per pixel, 0 elsewhere, scalar labels
            removed), then the pixel's category bits (bit ``c``: a label whose primary
            category is ``c`` is at the pixel, in any layer). One row gather gives a
            tally everything it needs about a pixel.
        scalars: ``Tensor[B, S]`` scalar labels, each once per image (0 = none).
        scalar_categories: ``Tensor[B, C]`` bool, the image has a scalar label whose
            primary category is ``c``.
        annotated: ``Tensor[B, C]`` bool, a label of primary category ``c`` is in the
            image (at some pixel, or as a scalar label).
        truth: ``Tensor[num_labels]`` int64 truth pixels ``|L_c|`` of the batch.
        coverage: ``Tensor[num_labels, C]`` int64 pixels of each label per (layer)
            category of the batch, or ``None`` when the primary categories and the mixed
            categories were given (pass 2 of the accumulator: not needed).
        primary: ``Tensor[num_labels]`` int64 primary category per label (as used).
        size: Mask resolution ``(h, w)``.
    """

    table: torch.Tensor
    scalars: torch.Tensor
    scalar_categories: torch.Tensor
    annotated: torch.Tensor
    truth: torch.Tensor
    coverage: torch.Tensor | None
    primary: torch.Tensor
    size: tuple[int, int]

    @property
    def pixels(self) -> torch.Tensor:
        """``Tensor[L, B·h·w]`` int32 label ids per mask layer and pixel (a view)."""
        return self.table[:, :-1].T

    @property
    def pixel_categories(self) -> torch.Tensor:
        """``Tensor[C, B·h·w]`` uint8, 1 where a label of primary category ``c`` is."""
        n_cats = self.annotated.shape[1]
        shifts = torch.arange(n_cats, device=self.table.device, dtype=torch.int32)
        return ((self.table[:, -1].view(1, -1) >> shifts.view(-1, 1)) & 1).to(torch.uint8)

    @classmethod
    def build(cls, space: LabelSpace, masks: torch.Tensor | None,
              scalars: torch.Tensor | None, size: tuple[int, int],
              batch_size: int, device: torch.device,
              primary: torch.Tensor | None = None,
              plan: LabelPlan | None = None) -> BatchLabels:
        """Compute the label side of a batch.

        Args:
            space: The label space.
            masks: ``Tensor[B, L, h, w]`` int label maps, or ``None``.
            scalars: ``Tensor[B, S]`` int image-level labels, or ``None``.
            size: Mask resolution ``(h, w)`` (used when ``masks`` is ``None``).
            batch_size: ``B``.
            device: Where to compute.
            primary: ``Tensor[num_labels]`` primary category of each label, fixed
                for the whole data set (the accumulator derives it after pass 1);
                ``None``: from this batch's own coverage (for a data set of one batch).
            plan: :class:`LabelPlan` of the whole data set (its primary categories
                replace ``primary``); ``None``: from this batch's coverage, exact for
                the batch.
        """
        n_labels, n_cats = space.num_labels, len(space.categories)
        if n_cats > 30:
            raise ValueError(f"at most 30 categories are supported, got {n_cats}")
        h, w = size
        pixels_per_image = h * w
        masks, scalars = _as_inputs(space, masks, scalars, size, batch_size, device)
        n_layers, batch = masks.shape[1], masks.shape[0]
        raw = _raw_layers(masks)  # [L, B, P] int32: int32 arithmetic is several times faster
        coverage = None
        if plan is None:
            coverage = _coverage(space, raw, scalars, pixels_per_image)
            if primary is None:
                primary = primary_categories(coverage, space.default_category)
            plan = LabelPlan.build(space, coverage, primary)
        primary = plan.primary.to(device=device, dtype=torch.int64)
        lookup = _primary_lookup(primary, n_cats, device)

        bits, annotated = _category_bits(space, raw, lookup, plan.mixed)
        scalar_cats = torch.zeros((batch, n_cats + 1), dtype=torch.bool, device=device)
        if scalars.shape[1]:
            scalar_cats.scatter_(1, lookup.index_select(0, scalars.flatten()).view(batch, -1),
                                 True)
        scalar_cats = scalar_cats[:, :n_cats].contiguous()

        scalars_once = _dedupe_last(scalars)
        pixels = _remove_repeats_(raw, scalars_once, plan)
        truth = torch.bincount(pixels.view(-1), minlength=n_labels)
        truth += torch.bincount(scalars_once.flatten(), minlength=n_labels) * pixels_per_image
        truth[0] = 0
        table = torch.empty((batch * pixels_per_image, n_layers + 1), dtype=torch.int32,
                            device=device)
        table[:, :n_layers] = pixels.reshape(n_layers, batch * pixels_per_image).T
        table[:, n_layers] = bits
        return cls(table=table, scalars=scalars_once, scalar_categories=scalar_cats,
                   annotated=annotated | scalar_cats, truth=truth, coverage=coverage,
                   primary=primary, size=(h, w))


def _check_layout(space: LabelSpace, masks: torch.Tensor, scalars: torch.Tensor) -> None:
    if masks.shape[1] != len(space.mask_categories):
        raise ValueError(f"masks have {masks.shape[1]} layers, the data set declares "
                         f"{len(space.mask_categories)} mask categories")
    if scalars.shape[1] != len(space.scalar_categories):
        raise ValueError(f"scalars have {scalars.shape[1]} slots, the data set declares "
                         f"{len(space.scalar_categories)} scalar categories")
    low, top = 0, 0
    for values in (masks, scalars):
        if values.numel():
            least, most = torch.aminmax(values)
            low, top = min(low, int(least)), max(top, int(most))
    if top >= space.num_labels or low < 0:
        bad = top if top >= space.num_labels else low
        raise ValueError(f"label id {bad} is not in the concept table "
                         f"(ids 1..{space.num_labels - 1})")
