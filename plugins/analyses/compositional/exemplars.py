"""The ``exemplars`` table: a unit's best formula drawn on a few of its sample images.

Built in ``finalize`` from the packed masks the search already holds (no pass
over the data): the unit's best formula ``F`` (its ``units`` row) is rebuilt
from the concept masks, word by word (:func:`formula_bits`); the sample images
are ranked by ``|U ∧ F|``, the pixels where unit and formula agree, and the
top ``exemplars`` images with ``|U ∧ F| > 0`` are kept (ties: the lower sample
index). For each kept image there is one row per mask: the unit's (``role =
"unit"``), each term's (``role = "term"``, ``term`` its position in the
formula) and the formula's (``role = "formula"``), each bit-packed with
``numpy.packbits`` of the row-major pixels (as dissection's ``exemplars``:
decode with :func:`probe.views.images.unpack_mask`).

Size: at most ``exemplars · (length + 2) · ceil(H·W / 8)`` bytes of masks per
unit (``H × W`` the mask size), plus a few numbers per row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .bits import count, popcount
from .search import SearchResult, extend

COLUMNS = ("layer", "unit", "rank", "image", "overlap", "role", "term", "concept", "pixels",
           "mask_height", "mask_width", "mask")


#: ``_REVERSED[b]`` is byte ``b`` with its bit order reversed.
_REVERSED = np.array([int(f"{b:08b}"[::-1], 2) for b in range(256)], dtype=np.uint8)


def to_packbits(words: np.ndarray, pixels: int) -> np.ndarray:
    """Packed int64 words ``[..., W]`` (pixel ``p`` = bit ``p % 64`` of word ``p // 64``) as
    ``numpy.packbits`` bytes ``[..., ceil(pixels / 8)]`` of the same pixels.

    A word's little-endian bytes hold pixels ``8b..8b+7`` low bit first, ``packbits``
    high bit first: each byte is bit-reversed, never unpacked to one value per pixel.
    """
    raw = np.ascontiguousarray(words, dtype="<i8").view(np.uint8)
    return _REVERSED[raw[..., :(pixels + 7) // 8]]


def best_terms(result: SearchResult, lengths: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``(labels [K, L], operators [K, L - 1])`` of each unit's best formula (``-1`` pads)."""
    pick = torch.as_tensor(np.clip(lengths - 1, 0, None), dtype=torch.int64,
                           device=result.labels.device)
    rows = torch.arange(len(pick), device=pick.device)
    labels, ops = result.labels[rows, pick].clone(), result.operators[rows, pick].clone()
    none = torch.as_tensor(lengths == 0, device=pick.device)
    labels[none], ops[none] = -1, -1
    return labels, ops


def formula_bits(labels: torch.Tensor, operators: torch.Tensor,
                 concepts: torch.Tensor) -> torch.Tensor:
    """``Tensor[K, N]`` packed masks of formulas ``labels [K, L]``, ``operators [K, L - 1]``.

    Read left to right as the search builds them; a unit without a formula
    (``labels[k, 0] = -1``) gets an empty mask.

    Args:
        concepts: ``Tensor[C, N]`` packed concept masks.
    """
    first = labels[:, 0]
    masks = concepts[first.clamp(min=0)].clone()
    masks[first < 0] = 0
    for i in range(1, labels.shape[1]):  # one step per formula position, all units at once
        extend(masks, concepts, labels[:, i], operators[:, i - 1])
    return masks


def exemplar_frame(layer: str, units: torch.Tensor, concepts: torch.Tensor,
                   result: SearchResult, lengths: np.ndarray, formulas: list[str],
                   names: list[str], mask_size: tuple[int, int], top: int) -> pd.DataFrame:
    """The ``exemplars`` rows of one layer.

    Args:
        units: ``Tensor[K, S, W]`` packed unit masks of the sample.
        concepts: ``Tensor[C, S, W]`` packed concept masks.
        result: The layer's search result; ``lengths``: ``[K]`` best lengths (0: none).
        formulas: ``[K]`` the best formulas' texts (``units.formula``).
        mask_size: ``(H, W)``; ``top``: images kept per unit.
    """
    n_units, sample, words = units.shape
    if top < 1 or not n_units or not sample:
        return pd.DataFrame(columns=list(COLUMNS))
    labels, ops = best_terms(result, lengths)
    flat = concepts.reshape(concepts.shape[0], -1)
    formula = formula_bits(labels, ops, flat).view(n_units, sample, words)
    overlap = popcount(formula & units).sum(-1)                         # [K, S]
    keep = min(top, sample)
    value, image = torch.sort(overlap, dim=1, descending=True, stable=True)
    value, image = value[:, :keep], image[:, :keep]                     # [K, E]
    rows = torch.arange(n_units, device=units.device).view(-1, 1)
    chosen = [units[rows, image], formula[rows, image]]                 # each [K, E, W]
    length = labels.shape[1]
    terms = concepts[labels.clamp(min=0).unsqueeze(1), image.unsqueeze(-1)]   # [K, E, L, W]
    stack = torch.cat([chosen[0].unsqueeze(2), terms, chosen[1].unsqueeze(2)], 2)
    pixels = count(stack).cpu().numpy()                                 # [K, E, L + 2]
    h, w = mask_size
    packed = to_packbits(stack.cpu().numpy(), h * w)                    # [K, E, L + 2, B]
    value, image = value.cpu().numpy(), image.cpu().numpy()
    labels_np = labels.cpu().numpy()
    records = []
    for k, e in zip(*np.nonzero(value > 0), strict=True):
        n = int(lengths[k])
        base = {"layer": layer, "unit": int(k), "rank": int(e), "image": int(image[k, e]),
                "overlap": int(value[k, e]), "mask_height": h, "mask_width": w}
        slots = [("unit", -1, "", 0)] + [("term", i, names[labels_np[k, i]], i + 1)
                                          for i in range(n)] + [("formula", -1, formulas[k],
                                                                 length + 1)]
        for role, term, concept, slot in slots:
            records.append({**base, "role": role, "term": term, "concept": concept,
                            "pixels": int(pixels[k, e, slot]),
                            "mask": packed[k, e, slot].tobytes()})
    if not records:
        return pd.DataFrame(columns=list(COLUMNS))
    return pd.DataFrame(records, columns=list(COLUMNS))
