"""The masks compositional explanations search over, bit-packed per sample image.

Unit masks are dissection's own: the pixels :func:`dissection.active.active_pixel_chunks`
finds strictly above the unit's threshold after resizing to the mask size (the
same rule, the same chunked memory bound). Concept masks are dissection's
label maps: a label at a pixel in any mask layer (layers OR-ed), and an
image-level (scalar) label as a whole-image mask (REFERENCE §1).

Both are scattered straight into packed words (:mod:`.bits`), never held as
one boolean per pixel and concept.
"""

from __future__ import annotations

import torch

from probe.plugins.analyses.dissection.active import active_pixel_chunks

from .bits import WORD, pack_bits, words_per_image


def _scatter_bits(keys: torch.Tensor, pixels: int, rows: int) -> torch.Tensor:
    """``Tensor[rows, W]`` int64 words with bit ``key % pixels`` of row ``key // pixels`` set
    (``keys`` must be distinct)."""
    words = words_per_image(pixels)
    out = torch.zeros(rows * words, dtype=torch.int64, device=keys.device)
    row, pixel = keys // pixels, keys % pixels
    out.scatter_add_(0, row * words + pixel // WORD,
                     torch.ones_like(keys) << (pixel % WORD))  # distinct bits: + is |
    return out.view(rows, words)


def unit_bits(act: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int],
              downsample: str) -> torch.Tensor:
    """``Tensor[K, B, W]`` packed unit masks of ``act [B, K, h, w]`` at mask ``size``."""
    batch, units = act.shape[:2]
    pixels = size[0] * size[1]
    out = torch.zeros((units * batch, words_per_image(pixels)), dtype=torch.int64,
                      device=act.device)
    for maps, pixel in active_pixel_chunks(act, thresholds.to(act.device), size, downsample):
        image, unit = maps // units, maps % units
        out += _scatter_bits((unit * batch + image) * pixels + pixel, pixels, units * batch)
    return out.view(units, batch, -1)


def concept_bits(masks: torch.Tensor | None, scalars: torch.Tensor | None, num_labels: int,
                 size: tuple[int, int], batch: int) -> torch.Tensor:
    """``Tensor[num_labels, B, W]`` packed concept masks (row = label id; row 0 stays 0).

    Args:
        masks: ``Tensor[B, L, h, w]`` label maps (0 = unlabelled), or ``None``.
        scalars: ``Tensor[B, S]`` image-level labels (0 = none), or ``None``.
    """
    pixels = size[0] * size[1]
    device = masks.device if masks is not None else (
        scalars.device if scalars is not None else torch.device("cpu"))
    words = words_per_image(pixels)
    out = torch.zeros((num_labels, batch, words), dtype=torch.int64, device=device)
    if masks is not None and masks.numel():
        labels = masks.reshape(batch, masks.shape[1], pixels).long()
        image = torch.arange(batch, device=device).view(-1, 1, 1)
        pixel = torch.arange(pixels, device=device).view(1, 1, -1)
        keys = (labels * batch + image) * pixels + pixel
        keys = torch.unique(keys[labels > 0])  # a label in two layers at a pixel: once
        out += _scatter_bits(keys, pixels, num_labels * batch).view(num_labels, batch, words)
    if scalars is not None and scalars.numel():
        whole = pack_bits(torch.ones(pixels, dtype=torch.bool, device=device))
        label = scalars.long()
        image = torch.arange(batch, device=device).view(-1, 1).expand_as(label)
        present = label > 0
        out[label[present], image[present]] |= whole
    out[0] = 0
    return out
