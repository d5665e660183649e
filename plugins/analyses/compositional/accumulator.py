"""The streaming state of ``compositional``: dissection's thresholds, then packed masks.

=================  =============================================  =======  ======
state              value                                          reduce   after
=================  =============================================  =======  ======
``quantiles``      ``{layer: TopQuantile}`` (dissection's)        merge    pass 1
``unit_bits``      ``{layer: Tensor[K, S, W]}`` packed unit masks  sum      pass 2
``concept_bits``   ``Tensor[num_labels, S, W]`` packed concepts   sum      pass 2
=================  =============================================  =======  ======

``S`` is the sample (the data set's first ``images`` images) and ``W`` the packed
words per image (:mod:`.bits`). Each sample image is seen by one shard only,
so the other shards' words are 0 and the sum of the shards is their OR. The
thresholds are fixed in ``end_pass(0)`` on every rank; ``finalize`` runs the
beam search (:mod:`.search`) on the reduced masks and builds the tables, the
``exemplars`` masks included (:mod:`.exemplars`, from the same packed masks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch

from probe import Accumulator, Batch, RunContext
from probe.plugins.analyses.dissection.labels import LabelSpace
from probe.plugins.analyses.dissection.quantile import TopQuantile

from .bits import words_per_image
from .exemplars import exemplar_frame
from .masks import concept_bits, unit_bits
from .parts import parts_frames
from .search import beam_search
from .tables import empty_tables, layer_frames


class CompositionalAccumulator(Accumulator):
    """Pass 1: per-unit thresholds (as dissection). Pass 2: packed masks of the sample.

    Args:
        settings: The analysis's resolved options.
        space: Labels of the data set (dissection's :class:`LabelSpace`).
        shapes: ``{layer: (K, h, w)}`` of the layers searched.
        num_images: Images in the whole data set (all shards).
        mask_size: ``(H, W)`` of the concept masks.
        device: Where the state lives.
        part_parents: ``part_id, object_id`` table, or ``None``.
    """

    def __init__(self, settings: Mapping[str, Any], space: LabelSpace,
                 shapes: Mapping[str, tuple[int, int, int]], num_images: int,
                 mask_size: tuple[int, int], device: torch.device,
                 part_parents: pd.DataFrame | None = None) -> None:
        self.settings = dict(settings)
        self.space = space
        self.shapes = dict(shapes)
        self.mask_size = (int(mask_size[0]), int(mask_size[1]))
        self.part_parents = part_parents
        self.sample = min(int(self.settings["images"]), num_images)
        words = words_per_image(self.mask_size[0] * self.mask_size[1])
        s = self.settings
        quantiles, bits = {}, {}
        for layer, (units, h, w) in self.shapes.items():
            quantiles[layer] = TopQuantile(units, s["quantile"], num_images * h * w,
                                           s["exact_cap"], s["sketch_bits"], device)
            bits[layer] = torch.zeros((units, self.sample, words), dtype=torch.int64,
                                      device=device)
        self.add_state("quantiles", quantiles, "merge", pass_index=0)
        self.add_state("unit_bits", bits, "sum")
        self.add_state("concept_bits", torch.zeros((space.num_labels, self.sample, words),
                                                   dtype=torch.int64, device=device), "sum")
        self.thresholds: dict[str, torch.Tensor] = {}

    def update(self, batch: Batch) -> None:
        if batch.pass_index == 0:
            for layer, quantile in self.quantiles.items():
                quantile.update_maps(batch.activations[layer].detach())
            return
        keep = batch.indices.to(torch.int64) < self.sample
        if not bool(keep.any()):
            return
        source = batch.masks if batch.masks is not None else batch.images
        size = (int(source.shape[-2]), int(source.shape[-1]))
        if size != self.mask_size:
            raise ValueError(f"mask size {size} differs from the data set's first sample "
                             f"{self.mask_size}")
        where = batch.indices.to(torch.int64)[keep].to(self.concept_bits.device)
        count = int(keep.sum())
        masks = None if batch.masks is None else batch.masks[keep]
        scalars = None if batch.image_concepts is None else batch.image_concepts[keep]
        self.concept_bits[:, where] = concept_bits(masks, scalars, self.space.num_labels,
                                                   self.mask_size, count).to(
                                                       self.concept_bits.device)
        downsample = self.settings["downsample"]
        for layer, bits in self.unit_bits.items():
            act = batch.activations[layer].detach()[keep]
            bits[:, where] = unit_bits(act, self.thresholds[layer], self.mask_size,
                                       downsample).to(bits.device)

    def end_pass(self, pass_index: int, context: RunContext) -> None:
        if pass_index != 0:
            return
        for layer, quantile in self.quantiles.items():
            self.thresholds[layer] = quantile.result()[0]
            quantile.release()

    def finalize(self, context: RunContext) -> dict[str, pd.DataFrame]:
        if not self.shapes or not self.thresholds:
            return empty_tables()
        s = self.settings
        concepts = self.concept_bits.reshape(self.space.num_labels, -1)
        present = concepts.ne(0).any(1)
        present[0] = False
        names = list(self.space.names)
        frames: dict[str, list[pd.DataFrame]] = {}
        for layer in self.shapes:
            units = self.unit_bits[layer].reshape(self.unit_bits[layer].shape[0], -1)
            result = beam_search(units, concepts, present, s["beam"], s["length"])
            made = layer_frames(layer, result, self.thresholds[layer], names, self.sample)
            made["exemplars"] = exemplar_frame(
                layer, self.unit_bits[layer], self.concept_bits, result,
                made["units"]["length"].to_numpy(), list(made["units"]["formula"]), names,
                self.mask_size, s["exemplars"])
            if s["parts_objects"] and self.part_parents is not None and \
                    not self.part_parents.empty:
                made.update(parts_frames(layer, made["units"], units, concepts, present,
                                         self.part_parents, names, s["beam"], s["length"]))
            for table, frame in made.items():
                frames.setdefault(table, []).append(frame)
        out = empty_tables()
        for table, parts in frames.items():
            out[table] = pd.concat(parts, ignore_index=True)
        return out


def searched_shapes(layers: Sequence[str],
                    shapes: Mapping[str, Sequence[int]]) -> dict[str, tuple[int, int, int]]:
    """The layers with ``[K, h, w]`` activations (the only ones with unit masks)."""
    return {layer: tuple(int(v) for v in shapes[layer])  # type: ignore[misc]
            for layer in layers if len(shapes[layer]) == 3}
