"""Streaming statistics shared by analyses: running moments and exact top-k buffers.

Everything here is a :class:`probe.State`: declared tensors on the device they
were made on, reduced exactly across shards, so a data set split over
processes gives the result of one pass. Use them as nested state of your
accumulator: ``self.add_state("moments", RunningMoments(units, device))`` (its
own sums and maxima) and ``self.add_state("top", TopK(units, k, device), "merge")``.
"""

from __future__ import annotations

import torch

from probe.state import State


class RunningMoments(State):
    """Per-unit count, sum, sum of squares, maximum and positive count (float64 sums).

    Feed ``Tensor[units, n]`` samples with :meth:`update`. Every field is a
    declared sum (or max), so shards reduce without merge code.
    """

    def __init__(self, units: int, device: torch.device) -> None:
        dtype = torch.float64 if device.type != "mps" else torch.float32
        self.add_state("count", torch.zeros(units, dtype=torch.int64, device=device), "sum")
        self.add_state("total", torch.zeros(units, dtype=dtype, device=device), "sum")
        self.add_state("total_sq", torch.zeros(units, dtype=dtype, device=device), "sum")
        self.add_state("maximum", torch.full((units,), -torch.inf, dtype=torch.float32,
                                             device=device), "max")
        self.add_state("positive", torch.zeros(units, dtype=torch.int64, device=device), "sum")

    @classmethod
    def zeros(cls, units: int, device: torch.device) -> RunningMoments:
        """Empty moments for ``units`` units."""
        return cls(units, device)

    def update(self, values: torch.Tensor) -> None:
        """Add ``Tensor[units, n]`` samples."""
        wide = values.to(self.total.dtype)
        self.count += values.shape[1]
        self.total += wide.sum(dim=1)
        self.total_sq += (wide * wide).sum(dim=1)
        self.maximum = torch.maximum(self.maximum, values.amax(dim=1).float())
        self.positive += (values > 0).sum(dim=1)

    def mean(self) -> torch.Tensor:
        """Per-unit mean."""
        return self.total / self.count.clamp(min=1)

    def std(self) -> torch.Tensor:
        """Per-unit population standard deviation."""
        mean = self.mean()
        var = self.total_sq / self.count.clamp(min=1) - mean * mean
        return var.clamp(min=0).sqrt()


class TopK(State):
    """Exact per-unit top-k of scores, with a payload per entry, bounded at ``k``.

    Ties are broken towards the lower data-set index, so the order (and thus a
    sharded run's merge) is deterministic. Values, indices and payload only make
    sense together, so shards are folded by :meth:`merge` (the named top-k
    merge; ``merge_only``), never field by field.

    Attributes:
        values: ``Tensor[units, k]`` best scores, descending (``-inf`` = empty slot).
        indices: ``Tensor[units, k]`` data-set indices (``-1`` = empty slot).
        payload: ``Tensor[units, k, ...]`` data kept with each entry, or ``None``.
    """

    merge_only = True

    def __init__(self, units: int, k: int, device: torch.device,
                 payload_shape: tuple[int, ...] | None = None,
                 payload_dtype: torch.dtype = torch.float32) -> None:
        self.k = k
        self.add_state("values", torch.full((units, 0), -torch.inf, device=device), "cat")
        self.add_state("indices", torch.full((units, 0), -1, dtype=torch.int64, device=device),
                       "cat")
        self.payload: torch.Tensor | None = None
        if payload_shape is not None:
            self.add_state("payload", torch.zeros((units, 0, *payload_shape),
                                                  dtype=payload_dtype, device=device), "cat")

    def update(self, values: torch.Tensor, indices: torch.Tensor,
               payload: torch.Tensor | None = None) -> None:
        """Offer ``values[units, n]`` for data-set ``indices[n]`` (payload ``[units, n, ...]``).

        The kept entries and the batch are ordered together and each kept payload
        slice is copied once, from wherever it is (the buffer or the batch).
        """
        units, n = values.shape
        idx = indices.to(values.device).view(1, n).expand(units, n)
        self._combine(values.float(), idx, payload)

    def merge(self, other: State) -> None:
        """Fold another shard's buffer into this one (the top-k merge)."""
        if not isinstance(other, TopK):
            raise TypeError(f"cannot merge {type(other).__name__} into TopK")
        device = self.values.device
        payload = None if other.payload is None else other.payload.to(device)
        self._combine(other.values.to(device), other.indices.to(device), payload)

    def _combine(self, values: torch.Tensor, indices: torch.Tensor,
                 payload: torch.Tensor | None) -> None:
        all_values = torch.cat([self.values, values], dim=1)
        all_indices = torch.cat([self.indices, indices], dim=1)
        order = _ordered(all_values, all_indices)[:, : self.k]
        self.values = all_values.gather(1, order)
        self.indices = all_indices.gather(1, order)
        if self.payload is not None and payload is not None:
            self.payload = _pick_payload(self.payload, payload, order)


def _ordered(values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Column order per row: value descending, then index ascending."""
    by_index = torch.argsort(indices, dim=1, stable=True)
    by_value = torch.argsort(values.gather(1, by_index), dim=1, descending=True, stable=True)
    return by_index.gather(1, by_value)


def _pick_payload(kept: torch.Tensor, offered: torch.Tensor,
                  order: torch.Tensor) -> torch.Tensor:
    """``[kept | offered][u, order[u, j], ...]`` without concatenating the two: positions
    below ``kept.shape[1]`` come from ``kept``, the rest from ``offered`` (each slice is
    copied once)."""
    before = kept.shape[1]
    units = torch.arange(order.shape[0], device=order.device).view(-1, 1).expand_as(order)
    old = order < before
    if bool(old.all()):
        return _gather_payload(kept, order)
    if not bool(old.any()):
        return _gather_payload(offered, order - before).to(kept.dtype)
    # whole slices moved by row: index_select / index_copy_ on [rows, slice] views (several
    # times faster on the CPU than boolean-mask indexing of the payload itself)
    count, k = order.shape
    out = torch.empty((count * k, *kept.shape[2:]), dtype=kept.dtype, device=kept.device)
    slots = torch.arange(count * k, device=order.device).view(count, k)
    new = ~old
    out.index_copy_(0, slots[old], _slices(kept, units[old], order[old]))
    out.index_copy_(0, slots[new], _slices(offered, units[new], order[new] - before)
                    .to(kept.dtype))
    return out.view(*order.shape, *kept.shape[2:])


def _gather_payload(payload: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``payload[u, order[u, j], ...]`` for every unit ``u``."""
    units = torch.arange(order.shape[0], device=order.device).view(-1, 1).expand_as(order)
    return _slices(payload, units.reshape(-1), order.reshape(-1)).view(
        *order.shape, *payload.shape[2:])


def _slices(payload: torch.Tensor, unit: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """``payload[unit[i], position[i], ...]`` for each ``i``, as ``Tensor[n, ...]``: whole
    slices by ``index_select`` on a ``[rows, slice]`` view, without copying the payload.

    A payload offered as ``act.transpose(0, 1)`` (units first, a view of the batch's
    ``[B, K, ...]`` activations) is read through that layout: flattening the view
    itself would copy every map of the batch to pick a few.
    """
    units, n = payload.shape[:2]
    if payload.is_contiguous():
        return payload.flatten(0, 1).index_select(0, unit * n + position)
    swapped = payload.transpose(0, 1)
    if swapped.is_contiguous():
        return swapped.flatten(0, 1).index_select(0, position * units + unit)
    return payload[unit, position]


def as_units_by_samples(activation: torch.Tensor) -> torch.Tensor:
    """``Tensor[B, K, ...]`` → ``Tensor[K, B·positions]`` (a ``[B, K]`` tensor has one position)."""
    units = activation.shape[1]
    return activation.transpose(0, 1).reshape(units, -1)


def as_maps(activation: torch.Tensor) -> torch.Tensor:
    """View any ``Tensor[B, K, ...]`` as ``Tensor[B, K, h, w]`` (``[B, K]`` → ``[B, K, 1, 1]``)."""
    if activation.dim() == 2:
        return activation[:, :, None, None]
    if activation.dim() == 3:
        return activation[:, :, None, :]
    if activation.dim() == 4:
        return activation
    return activation.flatten(3)
