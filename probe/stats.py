"""Streaming statistics shared by analyses: running moments and exact top-k buffers.

Everything here keeps its state on the device of the tensors it is fed and
merges exactly, so shards of a data set reduce to the result of one pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class RunningMoments:
    """Per-unit count, sum, sum of squares, maximum and positive count (float64 sums).

    Feed ``Tensor[units, n]`` samples with :meth:`update`.
    """

    count: torch.Tensor
    total: torch.Tensor
    total_sq: torch.Tensor
    maximum: torch.Tensor
    positive: torch.Tensor

    @classmethod
    def zeros(cls, units: int, device: torch.device) -> RunningMoments:
        """Empty moments for ``units`` units."""
        dtype = torch.float64 if device.type != "mps" else torch.float32
        return cls(
            count=torch.zeros(units, dtype=torch.int64, device=device),
            total=torch.zeros(units, dtype=dtype, device=device),
            total_sq=torch.zeros(units, dtype=dtype, device=device),
            maximum=torch.full((units,), -torch.inf, dtype=torch.float32, device=device),
            positive=torch.zeros(units, dtype=torch.int64, device=device),
        )

    def update(self, values: torch.Tensor) -> None:
        """Add ``Tensor[units, n]`` samples."""
        wide = values.to(self.total.dtype)
        self.count += values.shape[1]
        self.total += wide.sum(dim=1)
        self.total_sq += (wide * wide).sum(dim=1)
        self.maximum = torch.maximum(self.maximum, values.amax(dim=1).float())
        self.positive += (values > 0).sum(dim=1)

    def merge(self, other: RunningMoments) -> None:
        """Add another shard's moments."""
        self.count += other.count.to(self.count.device)
        self.total += other.total.to(self.total.device)
        self.total_sq += other.total_sq.to(self.total_sq.device)
        self.maximum = torch.maximum(self.maximum, other.maximum.to(self.maximum.device))
        self.positive += other.positive.to(self.positive.device)

    def mean(self) -> torch.Tensor:
        """Per-unit mean."""
        return self.total / self.count.clamp(min=1)

    def std(self) -> torch.Tensor:
        """Per-unit population standard deviation."""
        mean = self.mean()
        var = self.total_sq / self.count.clamp(min=1) - mean * mean
        return var.clamp(min=0).sqrt()


class TopK:
    """Exact per-unit top-k of scores, with a payload per entry, bounded at ``k``.

    Ties are broken towards the lower data-set index, so the order (and thus a
    sharded run's merge) is deterministic.

    Attributes:
        values: ``Tensor[units, k]`` best scores, descending (``-inf`` = empty slot).
        indices: ``Tensor[units, k]`` data-set indices (``-1`` = empty slot).
        payload: ``Tensor[units, k, ...]`` data kept with each entry, or ``None``.
    """

    def __init__(self, units: int, k: int, device: torch.device,
                 payload_shape: tuple[int, ...] | None = None,
                 payload_dtype: torch.dtype = torch.float32) -> None:
        self.k = k
        self.values = torch.full((units, 0), -torch.inf, device=device)
        self.indices = torch.full((units, 0), -1, dtype=torch.int64, device=device)
        self.payload = (None if payload_shape is None else
                        torch.zeros((units, 0, *payload_shape), dtype=payload_dtype,
                                    device=device))

    def update(self, values: torch.Tensor, indices: torch.Tensor,
               payload: torch.Tensor | None = None) -> None:
        """Offer ``values[units, n]`` for data-set ``indices[n]`` (payload ``[units, n, ...]``).

        Only the batch's own top-k per unit is kept before merging, so the
        payload is gathered for at most ``k`` entries per unit.
        """
        units, n = values.shape
        idx = indices.to(values.device).view(1, n).expand(units, n)
        if n > self.k:
            keep = _ordered(values, idx)[:, : self.k]
            values = values.gather(1, keep)
            idx = idx.gather(1, keep)
            if payload is not None:
                payload = _gather_payload(payload, keep)
        self._combine(values.float(), idx, payload)

    def merge(self, other: TopK) -> None:
        """Fold another shard's buffer into this one."""
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
            combined = torch.cat([self.payload, payload.to(self.payload.dtype)], dim=1)
            self.payload = _gather_payload(combined, order)


def _ordered(values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Column order per row: value descending, then index ascending."""
    by_index = torch.argsort(indices, dim=1, stable=True)
    by_value = torch.argsort(values.gather(1, by_index), dim=1, descending=True, stable=True)
    return by_index.gather(1, by_value)


def _gather_payload(payload: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``payload[u, order[u, j], ...]`` for every unit ``u`` (whole slices copied at once,
    several times faster than an element-wise ``gather`` with an expanded index)."""
    units = torch.arange(order.shape[0], device=order.device).view(-1, 1)
    return payload[units, order]


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
