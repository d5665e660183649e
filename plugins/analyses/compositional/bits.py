"""Bit-packed masks: one bit per pixel, 64 pixels per ``int64`` word, counted on the device.

A mask over a sample of ``S`` images of ``P = h·w`` pixels is kept as
``Tensor[..., S, W]`` int64 with ``W = ceil(P / 64)`` words per image (pixel ``p``
of an image is bit ``p % 64`` of word ``p // 64``; the padding bits of the last
word are always 0, so they never count). Memory is ``8·W`` bytes per image and
mask, a sixty-fourth of a ``bool`` mask.

:func:`popcount` counts bits with the SWAR bit trick (shifts, masks and adds
only: no multiplication that could overflow); :func:`and_counts` is the
"binary matrix product" ``|A_r ∧ B_c|`` of every row pair, chunked so its
temporaries stay under a fixed budget whatever the number of images.
"""

from __future__ import annotations

import torch

#: Words whose byte counts are summed before a fold (``8·GROUP <= 255``).
GROUP = 31
#: Bits per packed word.
WORD = 64
#: Largest temporary of :func:`and_counts` on a GPU, in int64 values (32 MiB) ...
CHUNK_VALUES = 2**22
#: ... and on the CPU (1 MiB: the block stays in cache, several times faster).
CPU_CHUNK_VALUES = 2**17

_M1 = 0x5555555555555555
_M2 = 0x3333333333333333
_M4 = 0x0F0F0F0F0F0F0F0F
_M8 = 0x00FF00FF00FF00FF
_M16 = 0x0000FFFF0000FFFF
_M32 = 0x00000000FFFFFFFF


def words_per_image(pixels: int) -> int:
    """Packed words holding ``pixels`` bits."""
    return (pixels + WORD - 1) // WORD


def pack_bits(masks: torch.Tensor) -> torch.Tensor:
    """Pack ``Tensor[..., P]`` bool into ``Tensor[..., ceil(P / 64)]`` int64 (bit ``p % 64``).

    Bits are disjoint, so their sum is their OR; the top bit wraps to the sign
    bit, which is the same pattern in two's complement.
    """
    pixels = masks.shape[-1]
    words = words_per_image(pixels)
    padded = torch.zeros((*masks.shape[:-1], words * WORD), dtype=torch.int64,
                         device=masks.device)
    padded[..., :pixels] = masks
    shifts = torch.arange(WORD, dtype=torch.int64, device=masks.device)
    return (padded.view(*masks.shape[:-1], words, WORD) << shifts).sum(-1)


def unpack_bits(packed: torch.Tensor, pixels: int) -> torch.Tensor:
    """Inverse of :func:`pack_bits`: ``Tensor[..., W]`` int64 → ``Tensor[..., pixels]`` bool."""
    shifts = torch.arange(WORD, dtype=torch.int64, device=packed.device)
    bits = (packed.unsqueeze(-1) >> shifts) & 1
    return bits.reshape(*packed.shape[:-1], -1)[..., :pixels].bool()


def popcount(words: torch.Tensor) -> torch.Tensor:
    """Set bits of every int64 word (same shape, int64), by the SWAR bit trick.

    ``>>`` is arithmetic on int64; each step masks before the sign bit can leak.
    """
    return _fold_bytes(_byte_counts_(words.clone()))


def count(packed: torch.Tensor) -> torch.Tensor:
    """Set bits per row: ``Tensor[..., N]`` int64 words → ``Tensor[...]`` int64."""
    return popcount(packed).sum(-1)


def _byte_counts_(x: torch.Tensor, t: torch.Tensor | None = None) -> torch.Tensor:
    """In place: each byte of every word becomes its own popcount (0..8); ``t`` is scratch
    space of ``x``'s shape (allocated when ``None``)."""
    t = torch.empty_like(x) if t is None else t
    torch.bitwise_right_shift(x, 1, out=t)
    t &= _M1
    x -= t
    torch.bitwise_right_shift(x, 2, out=t)
    t &= _M2
    x &= _M2
    x += t
    torch.bitwise_right_shift(x, 4, out=t)
    x += t
    x &= _M4
    return x


def _fold_bytes(x: torch.Tensor) -> torch.Tensor:
    """Sum the eight byte counts of every word (each at most 255) into the word."""
    x = (x & _M8) + ((x >> 8) & _M8)      # four 16-bit sums
    x = (x & _M16) + ((x >> 16) & _M16)   # two 32-bit sums
    return (x & _M32) + (x >> 32)


def chunk_for(device: torch.device) -> int:
    """The temporary size :func:`and_counts` uses by default: small enough for a CPU cache,
    large enough to keep a GPU busy."""
    return CHUNK_VALUES if device.type != "cpu" else CPU_CHUNK_VALUES


def and_counts(rows: torch.Tensor, columns: torch.Tensor,
               chunk_values: int | None = None) -> torch.Tensor:
    """``out[r, c] = |rows[r] ∧ columns[c]|`` for ``rows [R, N]`` and ``columns [C, N]`` words.

    One batched pass: blocks of rows × all columns × a slice of words at a time,
    each block's temporaries (the block and one scratch buffer) at most about
    ``chunk_values`` int64 values each (default :func:`chunk_for` the device). The
    SWAR steps run in place down to byte counts; those of :data:`GROUP` words are
    summed (``8·31 < 256``: no carry) before the bytes of a word are folded, so the
    fold runs once per group, not once per word.
    """
    n_rows, n_words = rows.shape
    n_cols = columns.shape[0]
    out = torch.zeros((n_rows, n_cols), dtype=torch.int64, device=rows.device)
    if not n_rows or not n_cols or not n_words:
        return out
    chunk = chunk_values or chunk_for(rows.device)
    whole = -(-n_words // GROUP) * GROUP  # all words in one slice, padded to a group
    step_words = min(whole, max(GROUP, chunk // n_cols // GROUP * GROUP))
    step_rows = max(1, chunk // (n_cols * step_words))
    for w0 in range(0, n_words, step_words):
        cols = columns[:, w0:w0 + step_words]
        pad = -cols.shape[1] % GROUP
        if pad:  # zero words count nothing
            cols = torch.nn.functional.pad(cols, (0, pad))
        cols = cols.unsqueeze(0)
        scratch = None
        for r0 in range(0, n_rows, step_rows):
            part = rows[r0:r0 + step_rows, w0:w0 + step_words]
            if pad:
                part = torch.nn.functional.pad(part, (0, pad))
            block = part.unsqueeze(1) & cols
            if scratch is None or scratch.shape != block.shape:
                scratch = torch.empty_like(block)
            counts = _byte_counts_(block, scratch)
            grouped = counts.view(*block.shape[:2], -1, GROUP).sum(-1)  # bytes <= 8·31
            out[r0:r0 + step_rows] += _fold_bytes(grouped).sum(-1)
    return out
