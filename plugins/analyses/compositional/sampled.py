"""The two-pass state shared by the mask-sample analyses (``compositional``, ``concept-vectors``).

Pass 1 streams dissection's per-unit quantile thresholds; pass 2 packs, for the
data set's first ``images`` images (the sample), each unit's thresholded mask and
each concept's mask into bits (:mod:`.masks`, :mod:`.bits`).

=================  =============================================  =======  ======
state              value                                          reduce   after
=================  =============================================  =======  ======
``quantiles``      ``{layer: TopQuantile}`` (dissection's)        merge    pass 1
``unit_bits``      ``{layer: Tensor[K, S, W]}`` packed unit masks  sum      pass 2
``concept_bits``   ``Tensor[num_labels, S, W]`` packed concepts   sum      pass 2
=================  =============================================  =======  ======

``S`` is the sample and ``W`` the packed words per image. Each sample image is
seen by one shard only, so the other shards' words are 0 and the sum of the
shards is their OR. The thresholds are fixed in ``end_pass(0)`` on every rank.
An analysis that needs more of the sample (concept-vectors keeps the layer's
inputs) adds its own state and overrides :meth:`SampledMasks.keep_sample`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from probe import Accumulator, Batch, RunContext
from probe.plugins.analyses.dissection.labels import LabelSpace
from probe.plugins.analyses.dissection.quantile import TopQuantile

from .bits import words_per_image
from .masks import concept_bits, unit_bits


class SampledMasks(Accumulator):
    """Pass 1: per-unit thresholds (as dissection). Pass 2: packed masks of the sample.

    Args:
        settings: The analysis's resolved options (``images``, ``quantile``,
            ``exact_cap``, ``sketch_bits``, ``downsample``).
        space: Labels of the data set (dissection's :class:`LabelSpace`).
        shapes: ``{layer: (K, h, w)}`` of the layers analysed.
        num_images: Images in the whole data set (all shards).
        mask_size: ``(H, W)`` of the concept masks.
        device: Where the state lives.
    """

    def __init__(self, settings: Mapping[str, Any], space: LabelSpace,
                 shapes: Mapping[str, tuple[int, int, int]], num_images: int,
                 mask_size: tuple[int, int], device: torch.device) -> None:
        self.settings = dict(settings)
        self.space = space
        self.shapes = dict(shapes)
        self.mask_size = (int(mask_size[0]), int(mask_size[1]))
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
        masks = None if batch.masks is None else batch.masks[keep]
        scalars = None if batch.image_concepts is None else batch.image_concepts[keep]
        self.concept_bits[:, where] = concept_bits(
            masks, scalars, self.space.num_labels, self.mask_size, int(keep.sum())).to(
                self.concept_bits.device)
        downsample = self.settings["downsample"]
        for layer, bits in self.unit_bits.items():
            act = batch.activations[layer].detach()[keep]
            bits[:, where] = unit_bits(act, self.thresholds[layer], self.mask_size,
                                       downsample).to(bits.device)
            self.keep_sample(layer, act, where)

    def keep_sample(self, layer: str, activations: torch.Tensor, where: torch.Tensor) -> None:
        """Keep more of the sample: ``activations`` are ``layer``'s raw maps
        ``Tensor[n, K, h, w]`` of the sample images at positions ``where``. Default: nothing."""

    def end_pass(self, pass_index: int, context: RunContext) -> None:
        if pass_index != 0:
            return
        for layer, quantile in self.quantiles.items():
            self.thresholds[layer] = quantile.result()[0]
            quantile.release()
