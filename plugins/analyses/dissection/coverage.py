"""What the data set's label coverage fixes before pass 2: primary categories, a plan.

Pass 1 sums the pixels of every label per category (:func:`.labels.label_coverage`);
from that sum :func:`primary_categories` gives each label its primary category and
:class:`LabelPlan` records which comparisons of the label side can ever match (so
pass 2 skips the others, exactly). Both are the same on every rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .labels import LabelSpace

#: Where a label's primary category comes from (:func:`primary_categories`).
PRIMARY_SOURCES = ("coverage", "table")


@dataclass(frozen=True)
class LabelPlan:
    """What the data set's label coverage says, fixed before pass 2 (exact shortcuts).

    Attributes:
        primary: ``Tensor[num_labels]`` primary category per label.
        mixed: Categories whose mask layers hold a label of another primary category
            (:func:`mixed_categories`).
        earlier: Per mask layer, the earlier layers that can hold one of its labels
            (same category, or categories sharing a label).
        slot_layers: Per scalar slot, the mask layers that can hold one of its labels.
    """

    primary: torch.Tensor
    mixed: tuple[int, ...]
    earlier: tuple[tuple[int, ...], ...]
    slot_layers: tuple[tuple[int, ...], ...]

    @classmethod
    def build(cls, space: LabelSpace, coverage: torch.Tensor,
              primary: torch.Tensor) -> LabelPlan:
        """From ``coverage [num_labels, C]`` (the data set's, or one batch's for that batch)."""
        seen = coverage.cpu() > 0
        seen[0] = False
        share = (seen.T.double() @ seen.double()) > 0  # [C, C]: categories sharing a label
        cats = space.mask_categories
        earlier = tuple(tuple(m for m in range(layer)
                              if cats[m] == cats[layer] or bool(share[cats[m], cats[layer]]))
                        for layer in range(len(cats)))
        slot_layers = tuple(tuple(layer for layer in range(len(cats))
                                  if bool(share[slot_cat, cats[layer]]))
                            for slot_cat in space.scalar_categories)
        return cls(primary.cpu().long(), mixed_categories(space, coverage, primary),
                   earlier, slot_layers)


def primary_categories(coverage: torch.Tensor, default: Sequence[int],
                       source: str = "coverage") -> torch.Tensor:
    """Primary category of each label.

    Args:
        coverage: ``Tensor[num_labels, C]`` pixels of each label per category (the
            data set's, summed; :func:`label_coverage`).
        default: Concept-table category per label (-1 = none).
        source: ``"coverage"`` — largest coverage; ties go to the concept-table
            category, then to the first; ``"table"`` — the concept-table category
            (labels not in the table: as ``"coverage"``).

    Returns:
        ``Tensor[num_labels]`` int64 category index (labels never seen keep
        their concept-table category, or 0).
    """
    cov = coverage.cpu().long()
    default_t = torch.tensor(default, dtype=torch.int64)
    best = cov.max(1, keepdim=True).values
    tied = cov == best
    first = tied.long().argmax(1)
    own = default_t.clamp(min=0)
    own_tied = tied.gather(1, own.view(-1, 1)).squeeze(1) & (default_t >= 0)
    out = torch.where(own_tied, own, first)
    unseen = best.squeeze(1) == 0
    out = torch.where(unseen, own, out)
    if source == "table":
        return torch.where(default_t >= 0, own, out)
    if source not in PRIMARY_SOURCES:
        raise ValueError(f"primary category source must be one of {list(PRIMARY_SOURCES)}, "
                         f"got {source!r}")
    return out


def mixed_categories(space: LabelSpace, coverage: torch.Tensor,
                     primary: torch.Tensor) -> tuple[int, ...]:
    """Categories whose mask layers hold a label of another primary category.

    Args:
        space: The label space.
        coverage: ``Tensor[num_labels, C]`` pixels of each label per layer category
            (of a batch, or of the whole data set).
        primary: ``Tensor[num_labels]`` primary category per label.
    """
    n_cats = len(space.categories)
    seen = coverage.cpu() > 0
    seen[0] = False  # label 0 never counts
    foreign = seen & (primary.cpu().view(-1, 1) != torch.arange(n_cats))
    layer_cats = set(space.mask_categories)
    return tuple(int(c) for c in foreign.any(0).nonzero().flatten().tolist() if c in layer_cats)
