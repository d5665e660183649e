"""Scores of the vectors and of single units: set IoU and how spread a vector is.

Set IoU (Net2Vec's ``IoU_set``) sums over images before dividing:
``Σ_x |M(x) ∩ L(x)| / Σ_x |M(x) ∪ L(x)|``, counted only over the images in each
concept's scope; it is NaN where the union is empty. A vector's mask is
``σ(Σ_k w_k·x_k↑ + b) > 0.5``, i.e. a positive logit. A single unit's mask is
dissection's own (packed by :func:`compositional.masks.unit_bits`).
"""

from __future__ import annotations

import torch

from probe.plugins.analyses.compositional.bits import and_counts, count, unpack_bits

from .fit import logits, resize_matrix, step_batch
from .inputs import InputSource


def set_counts(pred: torch.Tensor, truth: torch.Tensor,
               scope: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """``(I, M, T)``, each ``Tensor[C]`` int64: intersection, predicted and true pixels.

    Args:
        pred, truth: ``Tensor[C, S, P]`` bool masks of ``C`` concepts on ``S`` images.
        scope: ``Tensor[C, S]`` bool, the images counted per concept (default all).
    """
    keep = torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device) \
        if scope is None else scope.to(pred.device)
    pred = pred & keep.unsqueeze(-1)
    truth = truth & keep.unsqueeze(-1)
    return ((pred & truth).sum((1, 2)), pred.sum((1, 2)), truth.sum((1, 2)))


def iou_from_counts(inter: torch.Tensor, pred: torch.Tensor,
                    truth: torch.Tensor) -> torch.Tensor:
    """``I / (M + T − I)`` in float64, NaN where the union is empty (broadcasts)."""
    union = (pred + truth - inter).double()
    return torch.where(union > 0, inter.double() / union.clamp(min=1),
                       torch.full_like(union, float("nan")))


def set_iou(pred: torch.Tensor, truth: torch.Tensor,
            scope: torch.Tensor | None = None) -> torch.Tensor:
    """``Tensor[C]`` set IoU of ``pred`` against ``truth`` (``Tensor[C, S, P]`` bool)."""
    return iou_from_counts(*set_counts(pred, truth, scope))


def vector_iou(weights: torch.Tensor, bias: torch.Tensor, inputs: InputSource,
               targets: torch.Tensor, scope: torch.Tensor, images: torch.Tensor,
               mask_size: tuple[int, int], downsample: str) -> torch.Tensor:
    """``Tensor[C]`` set IoU of the fitted vectors over the sample images ``images``.

    Batched over images as the fit is (temporaries of ``C·B·H·W`` values).
    """
    concepts = weights.shape[0]
    pixels = mask_size[0] * mask_size[1]
    h, w = inputs.map_size
    rows = resize_matrix(h, mask_size[0], downsample, weights.device)
    cols = resize_matrix(w, mask_size[1], downsample, weights.device)
    total = torch.zeros((3, concepts), dtype=torch.int64, device=weights.device)
    batch = step_batch(64, concepts, pixels)
    for start in range(0, len(images), batch):
        idx = images[start:start + batch].to(weights.device)
        scores = logits(weights, bias, inputs.batch(idx), rows, cols)
        pred = scores.reshape(concepts, len(idx), pixels) > 0
        truth = unpack_bits(targets[:, idx], pixels)
        total += torch.stack(set_counts(pred, truth, scope[:, idx]))
    return iou_from_counts(total[0], total[1], total[2])


def unit_iou(unit_bits: torch.Tensor, targets: torch.Tensor, scope: torch.Tensor,
             images: torch.Tensor) -> torch.Tensor:
    """``Tensor[K, C]`` set IoU of every single unit's mask with every concept.

    Args:
        unit_bits: ``Tensor[K, S, words]`` packed unit masks (dissection's).
        targets: ``Tensor[C, S, words]`` packed concept masks.
        scope: ``Tensor[C, S]`` bool, the images counted per concept.
        images: ``Tensor[n]`` sample positions counted.
    """
    idx = images.to(unit_bits.device)
    units, concepts = unit_bits.shape[0], targets.shape[0]
    unit = unit_bits[:, idx]
    concept = targets[:, idx]
    inter = and_counts(unit.reshape(units, -1), concept.reshape(concepts, -1))
    keep = scope[:, idx].to(torch.float64)                               # [C, n]
    active = count(unit).to(torch.float64) @ keep.T                      # [K, C]
    truth = (count(concept).to(torch.float64) * keep).sum(1)             # [C]
    return iou_from_counts(inter.double(), active, truth.view(1, -1))


def best_units(train_iou: torch.Tensor) -> torch.Tensor:
    """``Tensor[C]`` the unit of highest training IoU per concept (NaN as 0; ties: the
    lower unit)."""
    return torch.nan_to_num(train_iou, nan=0.0).argmax(0)


def units_holding(weights: torch.Tensor, share: float) -> torch.Tensor:
    """``Tensor[C]`` int64: the fewest units whose ``|w|`` sum to ``share`` of ``Σ|w|``.

    0 for an all-zero vector. A relative tolerance of ``1e-9`` absorbs the rounding
    of the cumulative sum (a vector with two equal weights holds half in one unit).
    """
    mags = weights.abs().double().sort(1, descending=True).values
    total = mags.sum(1, keepdim=True)
    running = mags.cumsum(1)
    short = running < share * total * (1 - 1e-9)
    return torch.where(total.squeeze(1) > 0, short.sum(1) + 1,
                       torch.zeros_like(total.squeeze(1), dtype=torch.int64)).long()
