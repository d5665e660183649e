"""The active pixels of a layer: where the resized maps exceed their thresholds, sparse.

:func:`active_pixel_chunks` finds, for ``Tensor[B, K, h, w]`` activations and
per-unit thresholds ``T``, every mask pixel whose resized value
(:mod:`.upsample`'s rule) is strictly above ``T``, without materialising the
resized maps, in chunks whose memory is bounded whatever the data.

The sparse path (:func:`active_pixels`, used when no axis shrinks under the
antialiased rule) never materialises a full upsampled map.
Every output pixel has one *owner* per axis, the unclamped ``floor(s)`` in
``-1 .. h-1``; owner ``o`` reads samples ``clamp(o)`` and ``clamp(o + 1)``, which
are exactly the clamped ``y0``, ``y1`` above (where ``s < 0`` the second is
``a[0]`` instead of ``a[1]``, but its weight is 0, so the value is the same bit
for bit). A pixel can only exceed ``T`` when one of its owner's four samples
does (so a map whose raw maximum is ``<= T`` is never touched), and only the
owners next to a raw value above ``T`` are expanded (found from the positions of
those values), each into a block of the same shape (padded with NaN weights,
never active): one vectorised evaluation per chunk, work proportional to the
active region, not to the map size. When an axis shrinks (antialiased), only the
outputs whose taps (:class:`TapPlan`) reach a raw value above ``T`` are
evaluated, with the dense path's sums in its order; groups of maps with many
such values are resized whole. On the CPU the scans and the candidates go
through numpy (same operations, same float64 results, lower per-call cost).

Transient memory is bounded whatever the data: candidates are evaluated in
chunks of ``CHUNK_CANDIDATES`` output pixels, and :func:`active_pixel_chunks`
hands the active pixels over in chunks of at most ``CHUNK_CANDIDATES`` each.

Where an axis shrinks (antialiased), only the outputs whose taps reach a raw
value above ``T`` are evaluated, with :func:`.upsample._resample_taps`'s sums in
its order (sparse equals dense bit for bit); groups of maps with many such values
are resized whole. On the CPU the scans go through numpy (``flatnonzero`` is
several times faster than ``torch.nonzero`` there).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np
import torch

from .upsample import AxisPlan, _resample_taps, _reverse, plan, shrinks, taps

#: Largest number of candidate output pixels evaluated at once (bounds transient memory;
#: small enough that the temporaries are reused from the heap instead of fresh pages).
CHUNK_CANDIDATES = 2**17

#: Raw values scanned at once (maps are taken in groups of about this many values).
GROUP_VALUES = 2**20

#: Scan and count with numpy on the CPU (same results; much lower cost there). Tests
#: switch it off to check the torch code that other devices run.
NUMPY = True

#: Raw values above ``T`` turned into owners at once (slices cut between maps).
CHUNK_RAW = 2**16

#: Float64 values held by one temporary where maps shrink and are resized whole.
DENSE_CHUNK = 2**19

#: Where an axis shrinks, a group of maps with more than 1/DENSE_SHARE of its raw values
#: above ``T`` is resized whole (cheaper than evaluating the reached outputs one by one).
DENSE_SHARE = 32

#: Relative bound on what float64 rounding can add to a convex combination of two
#: values in the bilinear formula (a few units in the last place, 2⁻⁵² ≈ 2.2e-16, with
#: a wide safety factor): a block column is skipped only when its larger row value
#: plus this share of its magnitude is still ``<= T``.
MARGIN = 1e-12



def flat_nonzero(mask: torch.Tensor) -> torch.Tensor:
    """``Tensor[n]`` int64 flat indices of the true entries of a contiguous bool ``mask``.

    On the CPU, numpy's ``flatnonzero`` (several times faster than ``torch.nonzero``
    there); elsewhere ``torch.nonzero``.
    """
    flat = mask.reshape(-1)
    if NUMPY and flat.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(flat.numpy()))
    return flat.nonzero().squeeze(1)


def above(values: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Flat indices of ``values [G, ...] > thresholds [G]`` (float32 compare; numpy on the CPU)."""
    if NUMPY and values.device.type == "cpu" and values.is_contiguous() \
            and values.dtype in (torch.float32, torch.float64):
        shape = (-1,) + (1,) * (values.dim() - 1)
        over = values.numpy() > thresholds.numpy().reshape(shape)
        return torch.from_numpy(np.flatnonzero(over))
    return flat_nonzero(values > thresholds.view((-1,) + (1,) * (values.dim() - 1)))


def active_pixels(act: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int],
                  downsample: str = "antialias",
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every output pixel whose resized value is strictly above its unit's threshold.

    Args:
        act: ``Tensor[B, K, h, w]`` raw activations.
        thresholds: ``Tensor[K]``.
        size: Output (mask) resolution ``(H, W)``.
        downsample: Rule for an axis that shrinks (:data:`DOWNSAMPLE`).

    Returns:
        ``(image, unit, pixel)``: ``Tensor[n]`` each, ``pixel = y·W + x``, ordered by
        image, then unit.
    """
    units = act.shape[1]
    parts = list(active_pixel_chunks(act, thresholds, size, downsample))
    if not parts:
        empty = torch.zeros(0, dtype=torch.int64, device=act.device)
        return empty, empty, empty
    maps = torch.cat([m for m, _ in parts]) if len(parts) > 1 else parts[0][0]
    pixel = torch.cat([p for _, p in parts]) if len(parts) > 1 else parts[0][1]
    return maps // units, maps % units, pixel


def active_pixel_chunks(act: torch.Tensor, thresholds: torch.Tensor, size: tuple[int, int],
                        downsample: str = "antialias", chunk: int | None = None,
                        peak: torch.Tensor | None = None,
                        ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`active_pixels` in chunks, so that what is held at once is bounded whatever the
    data: only the maps whose raw maximum is above ``T`` are read, in groups of about
    ``GROUP_VALUES`` raw values, candidates are evaluated ``CHUNK_CANDIDATES`` at a time,
    and each chunk holds at most ``chunk`` (default ``CHUNK_CANDIDATES``) pixels.

    Args:
        peak: ``Tensor[B, K]`` raw maximum of each map, if already known.

    Yields:
        ``(map, pixel)`` of each chunk, ``map = image·K + unit`` (non-decreasing over the
        whole sequence), ``pixel = y·W + x``; chunks with no pixel are skipped.
    """
    batch, units, h, w = act.shape
    height, width = size
    device = act.device
    limit = chunk or CHUNK_CANDIDATES
    thr = thresholds.to(device=device, dtype=act.dtype)
    if peak is None:
        peak = act.flatten(2).amax(2)
    candidates = flat_nonzero(peak > thr.to(peak.dtype).view(1, -1))
    if not candidates.numel():
        return
    maps = act.reshape(batch * units, h, w)  # a view when act is contiguous
    same = (h, w) == (height, width)
    dense = not same and shrinks((h, w), size, downsample)
    if not same and not dense:
        rows, cols = plan(h, height, device), plan(w, width, device)
        offsets = _cell_offsets(h, w, device)
        block = rows.block.shape[1] * cols.block.shape[1]
        step = max(1, limit // block)  # candidates (and so active pixels) per chunk <= limit
    group = max(1, GROUP_VALUES // (h * w))
    # most maps above T (early layers): read them in place, no copy; else gather those maps
    in_place = maps.is_contiguous() and 2 * candidates.numel() > batch * units
    if in_place:
        candidates = torch.arange(batch * units, device=device)
    for first in range(0, candidates.numel(), group):
        chosen = candidates[first:first + group]
        # [G, h, w]: a view in place, else a copy of the chosen maps
        sub = maps[first:first + group] if in_place else maps.index_select(0, chosen)
        sub_thr = thr.index_select(0, chosen % units)
        spot = above(sub, sub_thr)
        if dense and spot.numel() * DENSE_SHARE > sub.numel():  # many active: resize whole maps
            del spot
            yield from ((chosen.index_select(0, local), pixel) for local, pixel in
                        _dense_chunks(sub, sub_thr, size, downsample, limit))
            continue
        if dense:
            thr64 = sub_thr.double()
            for spots in _whole_maps(spot, h * w, CHUNK_RAW):
                for local, pixel in _shrink_chunks(sub.view(-1), thr64, spots, (h, w), size,
                                                   downsample, limit):
                    yield chosen.index_select(0, local), pixel
            continue
        if same:  # same size: the formula returns the raw value itself
            for begin in range(0, spot.numel(), limit):
                part = spot[begin:begin + limit]
                yield chosen.index_select(0, part // (h * w)), part % (h * w)
            continue
        values = sub.view(-1)
        thr64 = sub_thr.double()
        for spots in _whole_maps(spot, h * w, CHUNK_RAW):
            owner_map, owner_cell = _owners_of(spots, h, w)
            for begin in range(0, owner_map.numel(), step):  # chunks bound memory only
                part = slice(begin, begin + step)
                local, pixel = _expand_owners(values, thr64, (h, w), width, rows, cols,
                                              offsets, owner_map[part], owner_cell[part])
                if local.numel():
                    yield chosen.index_select(0, local), pixel


def _whole_maps(spot: torch.Tensor, cells: int, limit: int) -> Iterator[torch.Tensor]:
    """Slices of the sorted ``spot`` (``map·cells + cell``) of about ``limit`` entries, cut
    only between maps (owners of different maps never coincide, so each owner is
    expanded once); a single map with more entries is one slice (at most ``cells``)."""
    total = spot.numel()
    if total <= limit:
        yield spot
        return
    begin = 0
    while begin < total:
        end = min(begin + limit, total)
        if end < total:
            first_of_map = (spot[end] // cells) * cells  # cut before the map of entry `end`
            cut = int(torch.searchsorted(spot, first_of_map))
            end = cut if cut > begin else int(torch.searchsorted(spot, first_of_map + cells))
        yield spot[begin:end]
        begin = end


def _owners_of(spot: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(map, cell)`` of the owners (padded ``(h + 1)·(w + 1)`` cells, sorted, unique) that
    read a raw sample above ``T``; ``spot = map·h·w + i·w + j`` are those samples.

    Sample ``(i, j)`` is read by the owners in padded rows ``i, i + 1`` and columns
    ``j, j + 1``.
    """
    cell = spot % (h * w)
    i, j = cell // w, cell % w
    base = (spot // (h * w)) * ((h + 1) * (w + 1)) + i * (w + 1) + j
    keys = torch.stack([base, base + 1, base + (w + 1), base + (w + 2)]).view(-1)
    cells = (h + 1) * (w + 1)
    if NUMPY and keys.device.type == "cpu" and keys.numel():  # a bitmap of the owners
        grid = np.zeros(int(keys.max()) + 1, dtype=np.bool_)
        grid[keys.numpy()] = True
        keys = torch.from_numpy(np.flatnonzero(grid))
    else:
        keys = torch.unique(keys)  # sorted
    return keys // cells, keys % cells


def _dense_chunks(maps: torch.Tensor, thr: torch.Tensor, size: tuple[int, int],
                  downsample: str, limit: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Active pixels ``(local map, pixel)`` of the maps ``[G, h, w]`` (thresholds ``[G]``),
    each resized whole by :func:`_resample_taps`, ``DENSE_CHUNK`` values at a time."""
    _, h, w = maps.shape
    height, width = size
    # a float64 copy of the map, then four temporaries of the rows' or columns' pass
    per_map = max(h * w, 4 * height * max(w, width))
    step = max(1, DENSE_CHUNK // per_map)
    thr64 = thr.double()
    for begin in range(0, len(maps), step):
        resized = _resample_taps(maps[begin:begin + step], size, downsample)
        spots = flat_nonzero(resized > thr64[begin:begin + step].view(-1, 1, 1))
        del resized
        for start in range(0, spots.numel(), limit):
            part = spots[start:start + limit]
            yield part // (height * width) + begin, part % (height * width)


def _shrink_chunks(values: torch.Tensor, thr64: torch.Tensor, spot: torch.Tensor,
                   shape: tuple[int, int], size: tuple[int, int], downsample: str,
                   limit: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Active pixels ``(local map, pixel)`` where an axis shrinks: only the outputs whose
    taps reach a raw value above ``T`` (``spot``, sorted, cut between maps) are evaluated,
    with :func:`_resample_taps`'s sums in its order (so sparse equals dense bit for bit)."""
    h, w = shape
    height, width = size
    device = values.device
    rows, cols = taps(h, height, downsample, device), taps(w, width, downsample, device)
    rev_y, rev_x = _reverse(h, height, downsample, device), _reverse(w, width, downsample, device)
    cell = spot % (h * w)
    ry = rev_y.index_select(0, cell // w)  # [n, Ry] outputs reading the sample's row
    rx = rev_x.index_select(0, cell % w)
    keys = ((spot // (h * w)) * (height * width)).view(-1, 1, 1) \
        + ry.unsqueeze(2) * width + rx.unsqueeze(1)
    valid = (ry.unsqueeze(2) >= 0) & (rx.unsqueeze(1) >= 0)
    keys = torch.unique(keys[valid])  # sorted: map, then pixel
    ty, tx = rows.index.shape[1], cols.index.shape[1]
    step = max(1, limit // (ty * tx))
    for begin in range(0, keys.numel(), step):
        part = keys[begin:begin + step]
        local, pixel = part // (height * width), part % (height * width)
        oy, ox = pixel // width, pixel % width
        base = (local * (h * w)).view(-1, 1)
        iy = rows.index.index_select(0, oy) * w  # [c, Ty]
        wy = rows.weight.index_select(0, oy)
        ix = cols.index.index_select(0, ox)  # [c, Tx]
        wx = cols.weight.index_select(0, ox)
        value = top = None
        for t in range(tx):
            column = None
            for u in range(ty):
                a = values.index_select(0, (base[:, 0] + iy[:, u] + ix[:, t])).double()
                term = wy[:, u] * a
                column = term if column is None else column + term
                top = a if top is None else torch.maximum(top, a)
            term = wx[:, t] * column
            value = term if value is None else value + term
        on = flat_nonzero(torch.minimum(value, top) > thr64.index_select(0, local))
        if on.numel():
            yield local.index_select(0, on), pixel.index_select(0, on)


@functools.lru_cache(maxsize=64)
def _cell_offsets(h: int, w: int, device: torch.device) -> torch.Tensor:
    """``Tensor[(h + 1)·(w + 1), 4]``: flat offsets ``r·w + c`` in a map of the four samples
    owner cell ``(p, q)`` reads: rows ``clamp(p - 1), clamp(p)``, columns likewise, in the
    order (top-left, top-right, bottom-left, bottom-right)."""
    r = torch.arange(-1, h).clamp(0, h - 1)
    c = torch.arange(-1, w).clamp(0, w - 1)
    r0, r1 = r.view(-1, 1), torch.arange(0, h + 1).clamp(0, h - 1).view(-1, 1)
    c0, c1 = c.view(1, -1), torch.arange(0, w + 1).clamp(0, w - 1).view(1, -1)
    table = torch.stack([r0 * w + c0, r0 * w + c1, r1 * w + c0, r1 * w + c1], -1)
    return table.view(-1, 4).to(device)


def _expand_owners(values: torch.Tensor, thr64: torch.Tensor, shape: tuple[int, int],
                   width: int, rows: AxisPlan, cols: AxisPlan, offsets: torch.Tensor,
                   owner_map: torch.Tensor, owner_cell: torch.Tensor,
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """The output pixels ``> T`` in the blocks of the given owners: ``(map, y·W + x)``.

    Columns first: along a block column the value is a convex combination of the
    column's top and bottom row values, so a column whose larger row value is
    ``<= T`` (by more than float64 rounding can add: ``MARGIN`` times the largest
    of the owner's four samples) has no pixel ``> T`` and is never expanded into
    rows. The rest evaluate the exact formula.
    """
    h, w = shape
    oi, oj = owner_cell // (w + 1), owner_cell % (w + 1)
    spots = (owner_map * (h * w)).view(-1, 1) + offsets.index_select(0, owner_cell)
    samples = values.index_select(0, spots.view(-1)).double().view(-1, 4)
    a00, a01, a10, a11 = samples.unbind(1)
    wx0, wx1 = cols.block_lower.index_select(0, oj), cols.block_upper.index_select(0, oj)
    top = wx0 * a00.view(-1, 1) + wx1 * a01.view(-1, 1)  # [n, C]
    bottom = wx0 * a10.view(-1, 1) + wx1 * a11.view(-1, 1)
    owner_thr = thr64.index_select(0, owner_map)
    reach = owner_thr - MARGIN * samples.abs().amax(1)  # a column must exceed this
    column = flat_nonzero(torch.maximum(top, bottom) > reach.view(-1, 1))
    n_cols = cols.block.shape[1]
    owner, col = column // n_cols, column % n_cols
    row_owner = oi.index_select(0, owner)
    value = (rows.block_lower.index_select(0, row_owner) * top.view(-1, 1).index_select(0, column)
             + rows.block_upper.index_select(0, row_owner)
             * bottom.view(-1, 1).index_select(0, column))  # [m, R]
    found = flat_nonzero(value > owner_thr.index_select(0, owner).view(-1, 1))
    n_rows = rows.block.shape[1]
    hit, r = found // n_rows, found % n_rows
    owner = owner.index_select(0, hit)
    y = rows.block.view(-1).index_select(0, row_owner.index_select(0, hit) * n_rows + r)
    x = cols.block.view(-1).index_select(0, oj.index_select(0, owner) * n_cols
                                         + col.index_select(0, hit))
    return owner_map.index_select(0, owner), y * width + x
