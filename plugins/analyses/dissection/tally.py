"""Data-set-wide intersection / union tallies of Network Dissection, on the model's device.

The label side of a batch (:class:`BatchLabels`) is computed once and shared by
every layer; each layer's :class:`LayerTally` then adds, for the unit maps whose
raw maximum exceeds the unit's threshold (skipping the others is exact, see
REFERENCE §1), the upsampled active pixels counted per unit × label with one
``bincount``. No Python loop over units or images.

Conventions (REFERENCE §1):

* label 0 is "unlabelled" (pixels and scalar slots alike);
* mask layers are OR-ed per label per pixel: a label present at a pixel in two
  layers counts once;
* an image-level (scalar) label is a whole-image mask: ``T += h·w`` and
  ``I += |M_k|``; a pixel label equal to one of the image's scalar labels is
  inside that whole-image mask and not counted again;
* the activation count ``A`` of a label is taken in its primary category,
  under one of three rules: ``paper`` (images where that category is annotated
  at all, i.e. some mask layer or scalar slot of the category is non-zero),
  ``lite`` (images where the unit's active pixels touch a labelled pixel of
  that category, or the image has a scalar label of it; as NetDissect-Lite),
  ``unconditioned`` (all images). All three are tallied; the rule picks one at
  the end.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from probe.state import State

from .labels import BatchLabels, LabelSpace
from .upsample import active_pixels

RULES = ("paper", "lite", "unconditioned")


def iou(intersection: torch.Tensor, activation: torch.Tensor,
        truth: torch.Tensor) -> torch.Tensor:
    """Data-set-wide IoU ``I / (A + T - I)`` from summed counts (0 where the union is empty).

    Args:
        intersection: ``Tensor[...]`` summed ``|M_k ∩ L_c|``.
        activation: ``Tensor[...]`` summed ``|M_k|`` (under the chosen rule).
        truth: ``Tensor[...]`` summed ``|L_c|``.

    Returns:
        ``Tensor[...]`` float64 IoU.
    """
    inter = intersection.double()
    union = activation.double() + truth.double() - inter
    return torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))


def _gather_columns(table: torch.Tensor, columns: torch.Tensor) -> torch.Tensor:
    """``table[:, columns]`` for a short ``table [R, N]``: one ``index_select`` per row.

    On the CPU this is several times faster than advanced indexing along dim 1.
    """
    return torch.stack([row.index_select(0, columns) for row in table])


class LayerTally(State):
    """Intersection and activation counts of one layer, declared sums on the device.

    Attributes:
        intersection: ``Tensor[K, num_labels]`` int64 ``Σ |M_k ∩ L_c|``.
        active: ``Tensor[K]`` int64 ``Σ |M_k|`` over all images (``unconditioned``).
        active_paper: ``Tensor[K, C]`` int64, over images where the category is annotated.
        active_lite: ``Tensor[K, C]`` int64, over images where ``M_k`` touches the category.
        upsampled: int64 scalar: unit maps with a raw value above the threshold (the
            others are skipped; of these only the owners next to such a value
            are expanded, see :mod:`.upsample`).
        maps: int64 scalar: unit maps seen.

    Every tensor is a ``"sum"``: shards reduce with no merge code (:meth:`merge`
    is :meth:`probe.State.merge`, following the declarations).
    """

    def __init__(self, units: int, space: LabelSpace, device: torch.device) -> None:
        n_cats = len(space.categories)
        self.units, self.num_labels = units, space.num_labels

        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(shape, dtype=torch.int64, device=device)

        self.add_state("intersection", zeros(units, space.num_labels), "sum")
        self.add_state("active", zeros(units), "sum")
        self.add_state("active_paper", zeros(units, n_cats), "sum")
        self.add_state("active_lite", zeros(units, n_cats), "sum")
        self.add_state("upsampled", zeros(), "sum")
        self.add_state("maps", zeros(), "sum")

    def update(self, act: torch.Tensor, thresholds: torch.Tensor,
               labels: BatchLabels, peak: torch.Tensor | None = None) -> None:
        """Add one batch.

        Args:
            act: ``Tensor[B, K, h, w]`` raw activations.
            thresholds: ``Tensor[K]`` per-unit thresholds.
            labels: The batch's :class:`BatchLabels`.
            peak: ``Tensor[B, K]`` raw maximum of each map, if already known.
        """
        batch, units = act.shape[:2]
        n_labels, n_cats = self.num_labels, labels.annotated.shape[1]
        self.maps += batch * units
        if peak is None:
            peak = act.flatten(2).amax(2)  # [B, K]
        self.upsampled += (peak > thresholds.to(peak.dtype).view(1, -1)).sum()
        image, unit, pixel = active_pixels(act, thresholds, labels.size)
        pair = image * units + unit
        counts = torch.bincount(pair, minlength=batch * units)  # |M_k| per image and unit
        per_image = counts.view(batch, units)
        self.active += per_image.sum(0)
        self.active_paper += (per_image.T.double() @ labels.annotated.double()).round().long()
        rows = image * (labels.size[0] * labels.size[1]) + pixel
        if labels.pixels.shape[0]:
            keys = unit * n_labels + _gather_columns(labels.pixels, rows)  # 0 → column 0
            self.intersection += torch.bincount(
                keys.flatten(), minlength=units * n_labels).view(units, n_labels)
        if labels.scalars.shape[1]:
            found = labels.scalars.repeat_interleave(units, dim=0)  # [B·K, S]
            keys = torch.arange(units, device=act.device).repeat(batch).view(-1, 1) * n_labels
            weights = counts.view(-1, 1).expand_as(found)
            self.intersection.view(-1).index_add_(0, (keys + found).flatten(), weights.flatten())
        self.intersection[:, 0] = 0
        touched = torch.zeros((n_cats, batch * units), dtype=torch.int32, device=act.device)
        touched.index_add_(1, pair, _gather_columns(labels.pixel_categories, rows).int())
        hit = (touched.T > 0).view(batch, units, n_cats) | (
            labels.scalar_categories.view(batch, 1, n_cats) & (per_image > 0).unsqueeze(2))
        self.active_lite += (per_image.unsqueeze(2) * hit.long()).sum(0)

    def activation_for(self, rule: str, primary: torch.Tensor) -> torch.Tensor:
        """``Tensor[K, num_labels]`` activation counts of each label under ``rule``.

        Args:
            rule: One of :data:`RULES`.
            primary: ``Tensor[num_labels]`` primary category index of each label.
        """
        if rule == "unconditioned":
            return self.active.view(-1, 1).expand(-1, self.num_labels)
        table = self.active_paper if rule == "paper" else self.active_lite
        if rule not in RULES:
            raise ValueError(f"rule must be one of {list(RULES)}, got {rule!r}")
        return table[:, primary.to(table.device)]


def primary_categories(coverage: torch.Tensor, default: Sequence[int]) -> torch.Tensor:
    """Primary category of each label: largest coverage; ties → concept-table category, then first.

    Args:
        coverage: ``Tensor[num_labels, C]`` pixels of each label per category.
        default: Concept-table category per label (-1 = none).

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
    return torch.where(unseen, own, out)
