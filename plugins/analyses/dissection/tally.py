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
  under one of three rules: ``paper`` (images where that category is present
  at all), ``lite`` (images where the unit's active pixels touch a pixel of a
  label of that category, or the image has a scalar label of it; as
  NetDissect-Lite), ``unconditioned`` (all images). All three are tallied; the
  rule picks one at the end;
* "a category present at a pixel / in an image" is decided by the primary
  categories of the labels there (:mod:`.labels`), never by the mask layer that
  holds them, so a label annotated in several categories gates its own ``A``:
  ``I <= A`` for every unit, label and rule.

Transient memory per batch is bounded: the active pixels are handed over and
counted in chunks (:func:`active_pixel_chunks`).
"""

from __future__ import annotations

import numpy as np
import torch

from probe.state import State

from . import active, fused
from .active import active_pixel_chunks
from .labels import BatchLabels, LabelSpace, primary_categories

RULES = ("paper", "lite", "unconditioned")

__all__ = ["RULES", "LayerTally", "iou", "labels_transient_bytes", "primary_categories",
           "transient_bytes"]


def transient_bytes(batch: int, units: int, num_labels: int, categories: int,
                    slots: int) -> int:
    """Upper bound on what :meth:`LayerTally.update` allocates beyond its inputs and state.

    It does not depend on the map or mask size, nor on how many pixels are active:
    maps are scanned in groups of ``GROUP_VALUES`` raw values (a copy, a mask and
    two index lists: 21 bytes each), raw values above ``T`` become owners
    ``CHUNK_RAW`` at a time (or, where an axis shrinks, into the outputs their taps
    reach; groups with many such values are resized whole, ``DENSE_CHUNK`` float64
    values at a time), candidates are evaluated and active pixels counted
    ``CHUNK_CANDIDATES`` at a time (at most 256 bytes each in all temporaries), one
    ``bincount`` of
    ``units × num_labels`` int64 per chunk, and per-map counts of
    ``40 + 24·categories + 16·slots`` bytes per image × unit.
    """
    return (active.GROUP_VALUES * 21 + active.CHUNK_RAW * 256
            + max(active.CHUNK_CANDIDATES * 256, active.DENSE_CHUNK * 8 * 2)
            + 8 * units * num_labels + batch * units * (40 + 24 * categories + 16 * slots))


def labels_transient_bytes(batch: int, size: tuple[int, int], layers: int) -> int:
    """Upper bound on what :meth:`BatchLabels.build` allocates beyond its inputs, its
    result included (the ``table``, kept for the batch): ``12·L + 24`` bytes per mask
    pixel of the batch (an int32 copy of the layers, the int32 table of ``L + 1``
    columns, the category bits and boolean temporaries), plus 4 MiB for the small
    per-label tables and the allocator's granularity."""
    return (12 * layers + 24) * batch * size[0] * size[1] + 4 * 2**20


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


def _count_numpy(counts: torch.Tensor, inter: torch.Tensor, hit_bits: torch.Tensor,
                 table: torch.Tensor, pair: torch.Tensor, pixel: torch.Tensor, units: int,
                 n_labels: int, pixels_per_image: int) -> None:
    """One chunk's counts, in place, on CPU tensors through numpy views: ``counts[pair]``
    (|M_k|), ``inter[unit·labels + label]`` (I), ``hit_bits[pair] |= bits`` (lite)."""
    pairs, pixels = pair.numpy(), pixel.numpy()
    image = pairs // units
    found = np.take(table.numpy(), image * pixels_per_image + pixels, axis=0)  # [n, L + 1]
    counts.numpy()[:] += np.bincount(pairs, minlength=len(counts))
    n_layers = found.shape[1] - 1
    if n_layers:
        base = ((pairs - image * units) * n_labels).astype(np.int32)
        keys = base[:, None] + found[:, :n_layers]  # int32; label 0 → column 0
        inter.numpy()[:] += np.bincount(keys.ravel(), minlength=len(inter))
    _or_per_pair_(hit_bits, pair, torch.from_numpy(np.ascontiguousarray(found[:, n_layers])))


def _or_per_pair_(out: torch.Tensor, pair: torch.Tensor, bits: torch.Tensor) -> None:
    """``out[p] |= OR of bits[i] for pair[i] == p``, in place (``pair`` non-decreasing)."""
    if not pair.numel():
        return
    if pair.device.type == "cpu":  # one pass over the sorted pairs: numpy's reduceat
        keys, values = pair.numpy(), bits.numpy()
        starts = np.flatnonzero(np.diff(keys)) + 1
        starts = np.concatenate(([0], starts))
        merged = np.bitwise_or.reduceat(values, starts)
        view = out.numpy()
        view[keys[starts]] |= merged
        return
    _or_per_pair_scatter_(out, pair, bits)


def _or_per_pair_scatter_(out: torch.Tensor, pair: torch.Tensor, bits: torch.Tensor) -> None:
    """:func:`_or_per_pair_` on any device: one scatter (a max of 0 / 1) per category bit."""
    for bit in range(int(bits.max()).bit_length()):
        seen = torch.zeros_like(out)
        seen.scatter_reduce_(0, pair, (bits >> bit) & 1, "amax")
        out |= seen << bit


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
               labels: BatchLabels, peak: torch.Tensor | None = None,
               downsample: str = "antialias") -> None:
        """Add one batch.

        Args:
            act: ``Tensor[B, K, h, w]`` raw activations.
            thresholds: ``Tensor[K]`` per-unit thresholds.
            labels: The batch's :class:`BatchLabels`.
            peak: ``Tensor[B, K]`` raw maximum of each map, if already known.
            downsample: Resizing rule where a map is larger than the masks
                (:data:`.upsample.DOWNSAMPLE`).
        """
        batch, units = act.shape[:2]
        n_labels, n_cats = self.num_labels, labels.annotated.shape[1]
        pixels_per_image = labels.size[0] * labels.size[1]
        device = act.device
        self.maps += batch * units
        if peak is None:
            peak = act.flatten(2).amax(2)  # [B, K]
        self.upsampled += (peak > thresholds.to(peak.dtype).view(1, -1)).sum()
        counts = torch.zeros(batch * units, dtype=torch.int64, device=device)
        hit_bits = torch.zeros(batch * units, dtype=torch.int32, device=device)  # OR of bits
        inter = self.intersection.view(-1)
        n_layers = labels.table.shape[1] - 1
        on_cpu = active.NUMPY and device.type == "cpu" and units * n_labels < 2**31
        compiled = on_cpu and fused.available()
        if compiled and act.dtype == torch.float32:  # found and counted in one pass
            fused.count_maps(act, thresholds, peak, labels.size, labels.table, n_labels,
                             counts, inter, hit_bits, downsample)
            chunks = ()
        else:
            chunks = active_pixel_chunks(act, thresholds, labels.size, downsample, peak=peak)
        for pair, pixel in chunks:
            if compiled:  # other dtypes: found by the vectorised path, counted compiled
                fused.count_pixels(counts, inter, hit_bits, labels.table, pair, pixel,
                                   units, n_labels, pixels_per_image)
                continue
            if on_cpu:  # the same counts with numpy, several times faster on small arrays
                _count_numpy(counts, inter, hit_bits, labels.table, pair, pixel, units,
                             n_labels, pixels_per_image)
                continue
            counts += torch.bincount(pair, minlength=batch * units)  # |M_k| per image, unit
            image = pair // units
            rows = image * pixels_per_image + pixel
            found = labels.table.index_select(0, rows)  # [n, L + 1]: labels, category bits
            if n_layers:
                unit = pair - image * units
                keys = (unit * n_labels).view(-1, 1) + found[:, :n_layers]  # 0 → column 0
                inter += torch.bincount(keys.view(-1), minlength=units * n_labels)
            _or_per_pair_(hit_bits, pair, found[:, n_layers])
        per_image = counts.view(batch, units)
        self.active += per_image.sum(0)
        self.active_paper += (per_image.T.double() @ labels.annotated.double()).round().long()
        if labels.scalars.shape[1]:
            found = labels.scalars.repeat_interleave(units, dim=0)  # [B·K, S]
            keys = torch.arange(units, device=device).repeat(batch).view(-1, 1) * n_labels
            weights = counts.view(-1, 1).expand_as(found)
            inter.index_add_(0, (keys + found).flatten(), weights.flatten())
        self.intersection[:, 0] = 0
        shifts = torch.arange(n_cats, device=device, dtype=torch.int32)
        touched = ((hit_bits.view(-1, 1) >> shifts) & 1).bool()  # [B·K, C]
        hit = touched.view(batch, units, n_cats) | (
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

    def check_within_activation(self, primary: torch.Tensor) -> None:
        """Raise when an intersection exceeds its activation count under any rule.

        ``I ≤ A`` holds for every unit and label under every rule by construction
        (docs/dissection.md, "Labels in several categories"); a breach is a counting
        bug, so every run checks it (K × labels comparisons per rule) before scoring.

        Raises:
            RuntimeError: some ``I > A``.
        """
        for rule in RULES:
            over = int((self.intersection > self.activation_for(rule, primary)).sum())
            if over:
                raise RuntimeError(f"dissection: {over} unit × label intersection counts "
                                   f"exceed their activation count under rule {rule!r} "
                                   f"(a counting bug)")
