"""The streaming state of ``concept-vectors``: dissection's thresholds, then a kept sample.

=================  ===============================================  =======  ======
state              value                                            reduce   after
=================  ===============================================  =======  ======
``quantiles``      ``{layer: TopQuantile}`` (dissection's)          merge    pass 1
``inputs``         ``{layer: ...}`` unit inputs of the sample:      sum      pass 2
                   packed indicators ``[K, S, w_l]`` (binary) or
                   raw activations ``[S, K, h, w]`` (standardized)
``unit_bits``      ``{layer: Tensor[K, S, W]}`` dissection's masks  sum      pass 2
``concept_bits``   ``Tensor[labels, S, W]`` packed concept masks    sum      pass 2
=================  ===============================================  =======  ======

The passes, ``quantiles``, ``unit_bits`` and ``concept_bits`` are
:class:`~probe.plugins.analyses.compositional.sampled.SampledMasks` (shared with
``compositional``); this accumulator adds ``inputs`` (:meth:`keep_sample`).
``S`` is the sample (the data set's first ``images`` images), ``W`` the packed words
of a mask and ``w_l`` those of a layer map. Each sample image is seen by one shard,
so the other shards hold zeros there and the sum is exact. The thresholds are fixed
in ``end_pass(0)``; ``after_passes`` fits every layer's vectors (:mod:`.fit`) and
scores them (:mod:`.scores`); ``finalize`` writes the tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch

from probe import RunContext
from probe.plugins.analyses.compositional.bits import count, words_per_image
from probe.plugins.analyses.compositional.sampled import SampledMasks
from probe.plugins.analyses.dissection.labels import LabelSpace

from .fit import FitSettings, fit_vectors
from .inputs import InputSource, binary_bits
from .scores import best_units, unit_iou, units_holding, vector_iou
from .tables import LayerResult, empty_tables, layer_frames


def split_sample(sample: int, holdout: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, heldout)`` sorted sample positions: a seeded permutation, the first
    ``max(1, round(holdout·sample))`` held out (at least one image stays for training)."""
    held = min(sample - 1, max(1, round(holdout * sample)))
    order = torch.randperm(sample, generator=torch.Generator().manual_seed(seed))
    return order[held:].sort().values, order[:held].sort().values


class ConceptVectorsAccumulator(SampledMasks):
    """Pass 1: per-unit thresholds (as dissection). Pass 2: the sample's inputs and masks.

    Args:
        settings: The analysis's resolved options.
        space: Labels of the data set (dissection's :class:`LabelSpace`).
        shapes: ``{layer: (K, h, w)}`` of the layers fitted.
        num_images: Images in the whole data set (all shards).
        mask_size: ``(H, W)`` of the concept masks.
        device: Where the state lives.
    """

    def __init__(self, settings: Mapping[str, Any], space: LabelSpace,
                 shapes: Mapping[str, tuple[int, int, int]], num_images: int,
                 mask_size: tuple[int, int], device: torch.device) -> None:
        super().__init__(settings, space, shapes, num_images, mask_size, device)
        inputs = {}
        for layer, (units, h, w) in self.shapes.items():
            inputs[layer] = (
                torch.zeros((units, self.sample, words_per_image(h * w)), dtype=torch.int64,
                            device=device) if self.settings["inputs"] == "binary"
                else torch.zeros((self.sample, units, h, w), dtype=torch.float32,
                                 device=device))
        self.add_state("inputs", inputs, "sum")
        self.results: dict[str, LayerResult] = {}

    def keep_sample(self, layer: str, activations: torch.Tensor, where: torch.Tensor) -> None:
        """The layer's inputs of the sample: thresholded bits or the raw maps."""
        store = self.inputs[layer]
        if self.settings["inputs"] == "binary":
            store[:, where] = binary_bits(activations, self.thresholds[layer]).to(store.device)
        else:
            store[where] = activations.float().to(store.device)

    def after_passes(self, context: RunContext) -> None:
        if not self.thresholds or self.sample < 2:
            return
        for layer in self.shapes:
            self.results[layer] = self._fit_layer(layer)

    def _fit_layer(self, layer: str) -> LayerResult:
        s = self.settings
        device = self.concept_bits.device
        train, held = split_sample(self.sample, s["holdout"], s["seed"])
        train, held = train.to(device), held.to(device)
        pixels = self.mask_size[0] * self.mask_size[1]
        per_image = count(self.concept_bits)                             # [labels, S]
        train_pixels = per_image[:, train].sum(1)
        held_pixels = per_image[:, held].sum(1)
        chosen = (train_pixels >= s["min_pixels"]) & (held_pixels > 0)
        chosen[0] = False
        labels = chosen.nonzero().squeeze(1)
        targets = self.concept_bits[labels]
        present = per_image[labels] > 0                                  # [C, S]
        scope = present if s["scope"] == "concept" else torch.ones_like(present)
        with_concept = present[:, train].sum(1)
        alpha = 1 - train_pixels[labels].double() / (with_concept.clamp(min=1) * pixels)
        units, h, w = self.shapes[layer]
        inputs = InputSource(s["inputs"], self.inputs[layer], (h, w),
                             self.thresholds[layer].to(device))
        inputs.standardize(train)
        fit = fit_vectors(inputs, targets, scope, alpha, train, FitSettings(
            loss=s["loss"], optimizer=s["optimizer"], lr=s["lr"], epochs=s["epochs"],
            batch_size=s["batch_size"], seed=s["seed"]), self.mask_size, s["downsample"])
        raw, raw_bias = inputs.raw_weights(fit.weights, fit.bias)
        iou = vector_iou(fit.weights, fit.bias, inputs, targets, scope, held,
                         self.mask_size, s["downsample"])
        train_iou = vector_iou(fit.weights, fit.bias, inputs, targets, scope, train,
                               self.mask_size, s["downsample"])
        unit_train = unit_iou(self.unit_bits[layer], targets, scope, train)
        unit_held = unit_iou(self.unit_bits[layer], targets, scope, held)
        best = best_units(unit_train)
        pick = torch.arange(len(labels), device=device)
        names = [self.space.names[i] for i in labels.tolist()]
        cats = [self.space.categories[c] if c >= 0 else ""
                for c in (self.space.default_category[i] for i in labels.tolist())]
        return LayerResult(
            labels=labels.cpu(), names=names, categories=cats, fitted=fit.weights.cpu(),
            raw=raw.cpu(), fitted_bias=fit.bias.cpu(), raw_bias=raw_bias.cpu(),
            iou=iou.cpu(), train_iou=train_iou.cpu(), best_unit=best.cpu(),
            best_unit_iou=unit_held[best, pick].cpu(),
            best_unit_train_iou=unit_train[best, pick].cpu(),
            units_50=units_holding(fit.weights, 0.5).cpu(),
            units_90=units_holding(fit.weights, 0.9).cpu(), alpha=alpha.cpu(),
            train_pixels=(per_image[labels][:, train] * scope[:, train]).sum(1).cpu(),
            heldout_pixels=(per_image[labels][:, held] * scope[:, held]).sum(1).cpu(),
            train_images=scope[:, train].sum(1).cpu(), heldout_images=scope[:, held].sum(1).cpu(),
            units=units, images=self.sample, train_count=len(train), heldout_count=len(held),
            steps=fit.steps, batch=fit.batch)

    def finalize(self, context: RunContext) -> dict[str, pd.DataFrame]:
        if not self.results:
            return empty_tables()
        frames: dict[str, list[pd.DataFrame]] = {}
        for layer, result in self.results.items():
            for table, frame in layer_frames(layer, result).items():
                frames.setdefault(table, []).append(frame)
        out = empty_tables()
        for table, parts in frames.items():
            out[table] = pd.concat(parts, ignore_index=True)
        return out
