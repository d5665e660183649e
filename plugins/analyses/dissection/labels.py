"""The label side of Network Dissection: the label space and each batch's label maps.

:class:`LabelSpace` indexes a data set's concepts and categories;
:class:`BatchLabels` is the label side of one batch (OR-ed pixel labels, the
categories annotated per image, truth and coverage counts), computed once per
batch on the device and shared by every layer's tally (see :mod:`.tally` for
the conventions).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch.nn import functional as F


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


def _zero_repeats_(layers: torch.Tensor) -> torch.Tensor:
    """Zero, in place, every entry of ``layers [L, ...]`` equal to an earlier layer's entry.

    Zeroing in order is safe: the first occurrence of a value is never zeroed as a
    repeat, so later layers still find it.
    """
    repeat = torch.empty_like(layers[0], dtype=torch.bool)
    for layer in range(1, len(layers)):
        layers[layer] *= ~_equal_to_earlier(layers, layer, range(layer), repeat)
    return layers


def _coverage_of_layers(raw: torch.Tensor, mask_categories: Sequence[int], n_labels: int,
                        n_cats: int) -> torch.Tensor:
    """``Tensor[num_labels, C]`` pixels of each label per category, each (label, category) once
    per pixel (a label in two layers of one category counts once)."""
    coverage = torch.zeros((n_cats, n_labels), dtype=torch.int64, device=raw.device)
    repeat = torch.empty_like(raw[0], dtype=torch.bool)
    for layer, cat in enumerate(mask_categories):
        same = [m for m in range(layer) if mask_categories[m] == cat]
        values = raw[layer]
        if same:
            values = values * ~_equal_to_earlier(raw, layer, same, repeat)
        coverage[cat] += torch.bincount(values.view(-1), minlength=n_labels)
    return coverage.T.contiguous()


def _remove_repeats_(raw: torch.Tensor, scalars: torch.Tensor) -> torch.Tensor:
    """Zero, in place, labels repeated from an earlier layer at the same pixel and labels
    equal to one of the image's scalar labels (``raw [L, B, P]``, ``scalars [B, S]``)."""
    _zero_repeats_(raw)
    for slot in range(scalars.shape[1]):  # a pixel inside a whole-image label: not again
        raw *= raw != scalars[:, slot].view(1, -1, 1).to(raw.dtype)  # (0 == 0 changes nothing)
    return raw


@dataclass
class BatchLabels:
    """The label side of one batch, shared by every layer.

    Attributes:
        pixels: ``Tensor[L, B·h·w]`` int32 label ids per mask layer and pixel, OR-ed over
            layers (each label once per pixel, 0 elsewhere, scalar labels removed).
        pixel_categories: ``Tensor[C, B·h·w]`` uint8, 1 where a layer of the
            category is labelled at the pixel.
        scalars: ``Tensor[B, S]`` scalar labels, each once per image (0 = none).
        scalar_categories: ``Tensor[B, C]`` bool, the image has a scalar label of the category.
        annotated: ``Tensor[B, C]`` bool, the category is annotated in the image at all.
        truth: ``Tensor[num_labels]`` int64 truth pixels ``|L_c|`` of the batch.
        coverage: ``Tensor[num_labels, C]`` int64 pixels of each label per category.
        size: Mask resolution ``(h, w)``.
    """

    pixels: torch.Tensor
    pixel_categories: torch.Tensor
    scalars: torch.Tensor
    scalar_categories: torch.Tensor
    annotated: torch.Tensor
    truth: torch.Tensor
    coverage: torch.Tensor
    size: tuple[int, int]

    @classmethod
    def build(cls, space: LabelSpace, masks: torch.Tensor | None,
              scalars: torch.Tensor | None, size: tuple[int, int],
              batch_size: int, device: torch.device) -> BatchLabels:
        """Compute the label side of a batch.

        Args:
            space: The label space.
            masks: ``Tensor[B, L, h, w]`` int label maps, or ``None``.
            scalars: ``Tensor[B, S]`` int image-level labels, or ``None``.
            size: Mask resolution ``(h, w)`` (used when ``masks`` is ``None``).
            batch_size: ``B``.
            device: Where to compute.
        """
        n_labels, n_cats = space.num_labels, len(space.categories)
        h, w = size
        pixels_per_image = h * w
        if masks is None:
            masks = torch.zeros((batch_size, 0, h, w), dtype=torch.int64, device=device)
        if scalars is None:
            scalars = torch.zeros((batch_size, 0), dtype=torch.int64, device=device)
        masks, scalars = masks.long(), scalars.long()
        _check_layout(space, masks, scalars)
        n_layers, batch = masks.shape[1], masks.shape[0]
        # [L, B, P] in int32: one copy, and int32 arithmetic is several times faster
        raw = torch.empty((n_layers, batch, pixels_per_image), dtype=torch.int32, device=device)
        raw.copy_(masks.transpose(0, 1).reshape(n_layers, batch, pixels_per_image))
        slot_cat = torch.tensor(space.scalar_categories, dtype=torch.int64, device=device)
        slot_onehot = F.one_hot(slot_cat, n_cats).float() if len(slot_cat) else \
            torch.zeros((0, n_cats), device=device)

        pixel_categories = torch.zeros((n_cats, batch * pixels_per_image), dtype=torch.uint8,
                                       device=device)
        annotated = torch.zeros((batch, n_cats), dtype=torch.bool, device=device)
        for cat in sorted(set(space.mask_categories)):  # a handful of categories
            layers = [i for i, c in enumerate(space.mask_categories) if c == cat]
            in_cat = raw[layers[0]] != 0
            for layer in layers[1:]:
                in_cat |= raw[layer] != 0
            pixel_categories[cat] = in_cat.view(-1)
            annotated[:, cat] = in_cat.any(1)
        scalar_cats = (scalars != 0).float() @ slot_onehot > 0

        coverage = _coverage_of_layers(raw, space.mask_categories, n_labels, n_cats)
        slot_keys = _dedupe_last(torch.where(scalars != 0, scalars * n_cats + slot_cat, 0))
        coverage += (torch.bincount(slot_keys.flatten(), minlength=n_labels * n_cats)
                     * pixels_per_image).view(n_labels, n_cats)
        coverage[0] = 0

        scalars_once = _dedupe_last(scalars)
        pixels = _remove_repeats_(raw, scalars_once)
        truth = torch.bincount(pixels.view(-1), minlength=n_labels)
        truth += torch.bincount(scalars_once.flatten(), minlength=n_labels) * pixels_per_image
        truth[0] = 0
        return cls(pixels=pixels.view(n_layers, -1), pixel_categories=pixel_categories,
                   scalars=scalars_once, scalar_categories=scalar_cats,
                   annotated=annotated | scalar_cats, truth=truth, coverage=coverage,
                   size=(h, w))


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
