"""Output stability under small shifts: Zhang (2019) and Azulay & Weiss (2019).

- Consistency (Zhang 2019): ``P[argmax F(shift₁ x) = argmax F(shift₂ x)]`` for
  two random crop offsets per image. The images here are already at the
  network's input size, so a "crop at offset o" is the image zero-padded by
  ``P`` pixels on each side and cropped back at ``o ∈ {0..2P}²`` (a shift by
  ``P − o`` with black fill); Zhang crops 224 px from 256 px images
  (offsets {0..31}², ±14 % of the side), the default here is ±1/8 of the side.
- Between neighbouring diagonal 1-pixel shifts ``k → k + 1`` (k = 0..steps−1,
  Azulay & Weiss 2019): P(top-1 change) and the mean absolute change of the
  softmax probability of the true class (of the class predicted at shift 0
  when the image has no label).
- Segmentation outputs ``Tensor[B, C, H, W]`` are compared per pixel over the
  part of the original image both crops see; the mean absolute change then
  uses the class predicted at the first shift of each pair.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from probe.state import State

#: Crop offsets are drawn in chunks of this many data-set indices.
DRAW_CHUNK = 4096


def crop_shift(images: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor,
               pad: int) -> torch.Tensor:
    """Zero-pad ``Tensor[B, C, H, W]`` by ``pad`` and crop ``H×W`` at per-image offsets ``[B]``."""
    b, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = oy.long()[:, None] + torch.arange(h, device=images.device)
    cols = ox.long()[:, None] + torch.arange(w, device=images.device)
    batch = torch.arange(b, device=images.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).contiguous()


def uncrop(maps: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, pad: int,
           fill: float = -1.0) -> torch.Tensor:
    """Put per-pixel maps ``Tensor[B, ..., H, W]`` of crops back on the original image grid.

    Returns ``Tensor[B, ..., H, W]`` in original-image coordinates; pixels the
    crop did not see hold ``fill``.
    """
    b, h, w = maps.shape[0], maps.shape[-2], maps.shape[-1]
    canvas = maps.new_full((*maps.shape[:-2], h + 2 * pad, w + 2 * pad), fill)
    rows = oy.long()[:, None] + torch.arange(h, device=maps.device)
    cols = ox.long()[:, None] + torch.arange(w, device=maps.device)
    batch = torch.arange(b, device=maps.device)[:, None, None]
    moved = canvas.movedim((-2, -1), (1, 2))
    moved[batch, rows[:, :, None], cols[:, None, :]] = maps.movedim((-2, -1), (1, 2))
    return moved.movedim((1, 2), (-2, -1))[..., pad:pad + h, pad:pad + w]


def agreement(out1: torch.Tensor, out2: torch.Tensor, offsets1: tuple[torch.Tensor, torch.Tensor],
              offsets2: tuple[torch.Tensor, torch.Tensor], pad: int,
              classes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor,
                                                            torch.Tensor, torch.Tensor]:
    """Top-1 agreement and probability change between two shifted outputs.

    Args:
        out1, out2: Logits ``Tensor[B, C]`` or ``Tensor[B, C, H, W]``.
        offsets1, offsets2: ``(oy, ox)`` crop offsets ``[B]`` of each output.
        pad: Padding used by :func:`crop_shift`.
        classes: ``Tensor[B]`` class whose probability change is measured
            (classification; ``None`` = the top-1 class of ``out1``).

    Returns:
        ``(agree, compared, abs_change_sum, changed_count)`` as float64 scalars:
        number of agreeing predictions (images or pixels), number compared, the
        sum of absolute probability changes, and the number of top-1 changes.
    """
    p1, p2 = out1.double().softmax(1), out2.double().softmax(1)
    if out1.dim() == 2:
        top1, top2 = p1.argmax(1), p2.argmax(1)
        cls = top1 if classes is None else torch.where(classes >= 0, classes, top1)
        change = (p1.gather(1, cls[:, None]) - p2.gather(1, cls[:, None])).abs().sum()
        agree = (top1 == top2).double().sum()
        n = torch.tensor(float(len(top1)), dtype=torch.float64, device=out1.device)
        return agree, n, change, n - agree
    top1 = uncrop(p1.argmax(1).double(), *offsets1, pad)
    top2 = uncrop(p2.argmax(1).double(), *offsets2, pad)
    valid = (top1 >= 0) & (top2 >= 0)
    q1 = uncrop(p1, *offsets1, pad, fill=0.0)
    q2 = uncrop(p2, *offsets2, pad, fill=0.0)
    index = top1.clamp(min=0).long()[:, None]
    change = ((q1.gather(1, index) - q2.gather(1, index)).abs()[:, 0] * valid).sum()
    agree = ((top1 == top2) & valid).double().sum()
    n = valid.double().sum()
    return agree, n, change, n - agree


def crop_draws(indices: torch.Tensor, seed: int) -> torch.Tensor:
    """Two random crop offsets (y, x) per data-set index, as fractions in [0, 1): ``[B, 4]``.

    Drawn in fixed chunks of indices from the run's seed, so an image gets the
    same offsets whichever shard or batch it falls in (CPU, float64).
    """
    indices = indices.cpu()
    chunks = indices.div(DRAW_CHUNK, rounding_mode="floor")
    out = torch.empty(len(indices), 4, dtype=torch.float64)
    for c in chunks.unique().tolist():
        generator = torch.Generator().manual_seed(seed * 1_000_003 + c)
        draws = torch.rand(DRAW_CHUNK, 4, generator=generator, dtype=torch.float64)
        chosen = chunks == c
        out[chosen] = draws[indices[chosen] % DRAW_CHUNK]
    return out


class ConsistencySums(State):
    """Sums over images of the consistency measurements (declared sum states, float64).

    Attributes:
        agree, pairs: Agreeing and compared predictions under two random crops.
        correct, labelled: Correct and labelled predictions (images or pixels).
        steps: ``Tensor[steps, 3]``: compared, Σ|Δp| and top-1 changes for each
            neighbouring shift ``k → k + 1``.
    """

    def __init__(self, steps: int, device: torch.device) -> None:
        z = {"dtype": torch.float64, "device": device}
        for name in ("agree", "pairs", "correct", "labelled"):
            self.add_state(name, torch.zeros((), **z), "sum")
        self.add_state("steps", torch.zeros(steps, 3, **z), "sum")
