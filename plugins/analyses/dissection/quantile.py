"""Per-unit top-quantile thresholds for Network Dissection, streamed, as declared state.

Definition (recorded in the ``units`` table of ``dissection``): the threshold of
unit ``k`` is ``torch.quantile(x_k, 1 - q, interpolation="linear")`` over ALL
``N`` raw activations ``x_k`` of the unit (every position of every image). In
descending order ``d_0 >= d_1 >= ...`` with ``r = q·(N - 1)`` this is
``d_ceil(r) + (ceil(r) - r)·(d_floor(r) - d_ceil(r))``: it needs only the top
``floor(q·(N - 1)) + 2`` values (one more is kept for float32 rounding).

Two methods, chosen per layer when the planned ``N`` is known:

* ``exact``: a per-unit buffer of the top ``need = floor(q·(N-1)) + 3`` values
  (merged by concatenation + top-k, so shards reduce exactly). Used when
  ``need <= cap``. Memory: ``4·need <= 4·cap`` bytes per unit, plus at most as
  many pending candidates (values above the buffer's floor, 12 bytes each)
  before they are merged by a ragged sort. On the CPU with float32 values the
  buffer is kept by :mod:`.top_values`' compiled kernel instead (the same
  multiset of values, no pending candidates; one scratch row of ``2·need`` values).
* ``sketch``: when ``need > cap``, a histogram of the order-preserving integer
  key of the float32 bits, keeping the sign, the 8 exponent bits and the top
  ``bits`` mantissa bits (``2**(9 + bits)`` int64 counts: 512 KiB per unit for
  ``bits = 7``), merged by addition. Counts are exact, so the two order
  statistics are located in their buckets exactly; each is estimated by
  linear interpolation of its rank inside the bucket. Error bound (reported per
  unit): ``|T̂ - T| <=`` the width of the widest bucket holding one of the two
  order statistics, i.e. ``<= 2**-bits · |T|`` for normal floats
  (0.78 % for ``bits = 7``).

Either way memory is independent of the number of images. :class:`TopQuantile`
is a :class:`probe.State`: the buffer, the sketch and the count are declared
tensors, folded across shards by its exact :meth:`TopQuantile.merge`; the
pending candidates are merged into the buffer by ``settle()`` before that.
"""

from __future__ import annotations

import math

import torch

from probe.state import State

from . import top_values

_MANTISSA = 23


def needed_top(count: int, q: float) -> int:
    """How many of the largest values define the ``1 - q`` quantile of ``count`` values."""
    if count <= 0:
        return 0
    # one spare value: torch's float32 rank may round one position down
    return min(count, math.floor(q * (count - 1)) + 3)


def quantile_positions(count: int, q: float) -> tuple[int, int, float]:
    """Ascending positions and weight of the ``1 - q`` quantile, as ``torch.quantile`` has them.

    torch rounds the level ``1 - q`` to the input's dtype (float32), computes
    ``rank = level·(N - 1)`` in float64 and interpolates in float32; so does this.

    Returns:
        ``(below, above, weight)``: the quantile is
        ``lerp(sorted[below], sorted[above], weight)``.
    """
    level = float(torch.tensor(1.0 - q, dtype=torch.float32))
    rank = level * (count - 1)
    below = math.floor(rank)
    weight = rank - below
    return below, min(below + 1, count - 1), weight


def quantile_from_top(top: torch.Tensor, count: int, q: float) -> torch.Tensor:
    """The ``1 - q`` quantile (torch's linear definition) from descending top values.

    Args:
        top: ``Tensor[units, m]`` each row's largest values, descending, with
            ``m >= needed_top(count, q)``.
        count: Number of values ``N`` each row was drawn from.
        q: Top fraction, ``0 < q < 1``.

    Returns:
        ``Tensor[units]`` thresholds (same dtype as ``top``).
    """
    if count <= 0:
        return torch.full(top.shape[:1], float("nan"), dtype=top.dtype, device=top.device)
    need = needed_top(count, q)
    if top.shape[1] < need:
        raise ValueError(f"need the top {need} values of {count}, got {top.shape[1]}")
    lo_asc, hi_asc, weight = quantile_positions(count, q)
    below = top[:, count - 1 - lo_asc]
    above = top[:, count - 1 - hi_asc]
    return torch.lerp(below, above, torch.full_like(below, weight))


def float_keys(values: torch.Tensor) -> torch.Tensor:
    """Order-preserving int32 keys of float32 values (``a < b`` ⇔ ``key(a) < key(b)``)."""
    bits = values.float().contiguous().view(torch.int32)
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


def key_to_float(keys: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`float_keys` for int64 keys inside the int32 range."""
    keys = keys.clamp(-(2**31), 2**31 - 1).to(torch.int32)
    bits = keys ^ ((keys >> 31) & 0x7FFFFFFF)
    return bits.view(torch.float32)


class TopQuantile(State):
    """Streaming ``1 - q`` quantile of every unit's activations (one layer), as declared state.

    Declared tensors (``merge_only``: shards fold by :meth:`merge`, exactly):
    ``top`` (``Tensor[units, m]`` float32, the buffer, ``m <= size``; empty
    when only the sketch is kept), ``hist`` (``Tensor[units·buckets]`` int64,
    the sketch; empty when only the buffer is kept) and ``count`` (int64
    scalar, values seen per unit). Candidates collected by :meth:`update_maps`
    are merged into ``top`` by :meth:`settle` before any reduction or read.

    Args:
        units: Number of units (rows).
        q: Top fraction (``0 < q < 1``).
        planned: Planned number of values per unit ``N`` over the whole data
            set (all shards), or ``None`` when unknown (then both the buffer,
            capped, and the sketch are kept).
        cap: Largest exact buffer per unit.
        bits: Mantissa bits kept by the sketch.
        device: Where the state lives.
    """

    merge_only = True

    def __init__(self, units: int, q: float, planned: int | None, cap: int, bits: int,
                 device: torch.device) -> None:
        if not 0.0 < q < 1.0:
            raise ValueError(f"quantile must be in (0, 1), got {q}")
        if not 0 <= bits <= _MANTISSA:
            raise ValueError(f"sketch bits must be in [0, 23], got {bits}")
        self.units, self.q, self.cap, self.bits = units, q, cap, bits
        need = None if planned is None else needed_top(planned, q)
        self.size = cap if need is None else min(cap, need)
        # configuration, the same on every rank (planned counts the whole data set)
        self.keeps_top = need is None or need <= cap
        self.keeps_hist = need is None or need > cap
        self._pending: list[tuple[torch.Tensor, torch.Tensor]] = []  # (unit, value) candidates
        self._pending_count = 0
        self.add_state("count", torch.zeros((), dtype=torch.int64, device=device), "sum")
        self.add_state("top", torch.empty((units, 0), device=device), "cat")
        hist = units * self.buckets if self.keeps_hist else 0
        self.add_state("hist", torch.zeros(hist, dtype=torch.int64, device=device), "sum")

    @property
    def buckets(self) -> int:
        """Buckets per unit of the sketch."""
        return 2 ** (9 + self.bits)

    @property
    def shift(self) -> int:
        return _MANTISSA - self.bits

    def memory_bytes(self) -> int:
        """Upper bound of the persistent state in bytes."""
        total = 0
        if self.keeps_top:  # the buffer, plus at most as many pending candidates
            total += 4 * self.units * self.size + 12 * self.units * self.size
        if self.keeps_hist:
            total += 8 * self.units * self.buckets
        return total

    def _compiled(self, values: torch.Tensor) -> bool:
        """Whether the buffer is kept by :mod:`.top_values`'s kernel for these values (float32
        on the CPU, numba present)."""
        return (self.keeps_top and self.size > 0 and values.device.type == "cpu"
                and values.dtype == torch.float32 and top_values.available())

    def update(self, values: torch.Tensor) -> None:
        """Add ``Tensor[units, n]`` values."""
        values = values.float()
        self.count += values.shape[1]
        if self._compiled(values):
            self.top = top_values.push_top(values[None], self.top, self.size)
        elif self.keeps_top:
            k = min(self.size, values.shape[1])
            if self.top.shape[1] == self.size:
                # a full buffer: only values above its smallest entry can change the
                # multiset of the top values (equal ones cannot), and those are few
                floor = self.top.amin(dim=1, keepdim=True)
                k = min(k, int((values > floor).sum(dim=1).max()))
            batch_top = values.topk(k, dim=1, sorted=False).values if k < values.shape[1] \
                else values
            if self.top.shape[1] == 0:
                self.top = batch_top
            else:
                merged = torch.cat([self.top, batch_top], dim=1)
                k = min(self.size, merged.shape[1])
                self.top = merged.topk(k, dim=1, sorted=False).values
        if self.keeps_hist:
            self.hist += self._bucket_counts(values)

    def update_maps(self, act: torch.Tensor) -> None:
        """Add ``Tensor[B, units, ...]`` activations (each entry is one value of its unit).

        On the CPU with float32 maps, :mod:`.top_values`' kernel reads them in place.
        Otherwise, once the buffer is full, only the entries above each unit's buffer
        floor can still change its top values (equal ones cannot); they are collected
        without reordering the activations and merged into the buffer when as many
        are pending as the buffer holds (or in :meth:`settle`, before any read).
        """
        compiled = self._compiled(act)
        full = self.keeps_top and self.size > 0 and self.top.shape[1] == self.size
        if not (compiled or full):
            self.update(act.transpose(0, 1).reshape(self.units, -1))
            return
        self.count += act.numel() // self.units
        if compiled:  # one read of each value, no candidates pending
            self.top = top_values.push_top(act, self.top, self.size)
        else:
            floor = self.top.amin(dim=1).view((1, -1) + (1,) * (act.dim() - 2))
            where = (act > floor).reshape(-1).nonzero().squeeze(1)  # one flat index
            per_unit = act[0, 0].numel()
            unit = (where // per_unit) % self.units
            self._pending.append((unit, act.reshape(-1).index_select(0, where).float()))
            self._pending_count += unit.numel()
            if self._pending_count > self.units * self.size:
                self._flush()
        if self.keeps_hist:
            self.hist += self._bucket_counts(act.transpose(0, 1).reshape(self.units, -1))

    def settle(self) -> None:
        """Merge the pending candidates into ``top`` (before a reduction or a read)."""
        self._flush()

    def _flush(self) -> None:
        """Merge the pending candidates into the (full) buffer: a ragged top-k by one sort.

        Each value becomes the int64 key ``unit·2³² + float_key(value)``, so one
        ascending sort groups the units and orders each unit's values; every unit
        holds at least ``size`` values (its full buffer), so its top values are the
        last ``size`` of its segment.
        """
        if not self._pending:
            return
        device = self.top.device
        units = torch.cat([u for u, _ in self._pending]).to(device)
        values = torch.cat([v for _, v in self._pending]).to(device)
        self._pending, self._pending_count = [], 0
        rows = torch.arange(self.units, device=device).repeat_interleave(self.top.shape[1])
        all_units = torch.cat([rows, units])
        keys = torch.cat([self.top.flatten(), values])
        keys = (all_units << 32) + (float_keys(keys).long() + 2**31)  # low part in [0, 2³²)
        ordered = keys.sort().values
        end = torch.bincount(all_units, minlength=self.units).cumsum(0)
        take = end.view(-1, 1) - self.size + torch.arange(self.size, device=device)
        low = ordered.index_select(0, take.view(-1)) & 0xFFFFFFFF
        self.top = key_to_float(low - 2**31).view(self.units, self.size).flip(1)

    def _bucket_counts(self, values: torch.Tensor) -> torch.Tensor:
        bucket = (float_keys(values).long() >> self.shift) + self.buckets // 2
        rows = torch.arange(self.units, device=values.device).view(-1, 1) * self.buckets
        return torch.bincount((bucket + rows).flatten(), minlength=self.units * self.buckets)

    def merge(self, other: State) -> None:
        """Fold another shard's state in (exact)."""
        if not isinstance(other, TopQuantile):
            raise TypeError(f"cannot merge {type(other).__name__} into TopQuantile")
        if (self.q, self.size, self.bits, self.units, self.keeps_top, self.keeps_hist) != \
                (other.q, other.size, other.bits, other.units, other.keeps_top,
                 other.keeps_hist):
            raise ValueError("cannot merge quantile states with different settings")
        self.settle()
        other.settle()
        self.count = self.count + other.count.to(self.count.device)
        if self.keeps_top:
            merged = torch.cat([self.top, other.top.to(self.top.device)], dim=1)
            self.top = merged.topk(min(self.size, merged.shape[1]), dim=1).values
        if self.keeps_hist:
            self.hist = self.hist + other.hist.to(self.hist.device)

    def release(self) -> None:
        """Drop the buffer and the sketch (after :meth:`result`; the count is kept)."""
        self.settle()
        self.top = self.top.new_empty((self.units, 0))  # new storage: the buffer is freed
        self.hist = self.hist.new_zeros(0)

    @property
    def method(self) -> str:
        """``exact`` when the buffer holds the needed values, else ``sketch``."""
        self.settle()
        if self.keeps_top and self.top.shape[1] >= needed_top(int(self.count), self.q):
            return "exact"
        return "sketch"

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(thresholds Tensor[units], error bound Tensor[units])`` (bound 0 when exact)."""
        self.settle()
        if self.method == "exact":
            top = self.top.sort(dim=1, descending=True).values
            thresholds = quantile_from_top(top, int(self.count), self.q)
            return thresholds, torch.zeros_like(thresholds)
        if not self.keeps_hist or self.hist.numel() == 0:
            raise RuntimeError("quantile buffer too small and no sketch kept")
        return self._from_sketch()

    def _from_sketch(self) -> tuple[torch.Tensor, torch.Tensor]:
        count, q = int(self.count), self.q
        hist = self.hist.view(self.units, self.buckets).flip(1)  # descending buckets
        cum = hist.cumsum(1)
        lo_asc, hi_asc, weight = quantile_positions(count, q)
        estimates, widths = [], []
        for rank in (count - 1 - lo_asc, count - 1 - hi_asc):  # descending ranks
            target = torch.full((self.units, 1), rank, dtype=torch.int64, device=hist.device)
            slot = torch.searchsorted(cum, target, right=True)  # first bucket with cum > rank
            start = cum.gather(1, slot) - hist.gather(1, slot)
            inside = hist.gather(1, slot).double()
            bucket = (self.buckets - 1 - slot).squeeze(1)
            key_lo = (bucket - self.buckets // 2) << self.shift
            low = key_to_float(key_lo).double()
            high = key_to_float(key_lo + (1 << self.shift)).double()
            high = torch.where(torch.isfinite(high), high, low)
            frac = ((rank - start.squeeze(1)).double() + 0.5) / inside.squeeze(1)
            estimates.append(high - frac * (high - low))
            widths.append(high - low)
        below, above = estimates
        thresholds = below + weight * (above - below)
        return thresholds.float(), torch.maximum(*widths).float()
