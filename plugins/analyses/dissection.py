"""``dissection``: Network Dissection (Bau et al., CVPR 2017), exact and on the device.

See :class:`Dissection` for the method, the options and the departures from the
paper; ``docs/dissection.md`` for the tables.
"""

from __future__ import annotations

import uuid
import weakref
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from probe import Accumulator, Analysis, Batch, Option, RunContext, hookimpl
from probe.errors import OptionError
from probe.plugins.analyses.dissection_figures import dissection_figures
from probe.plugins.analyses.dissection_hierarchy import (
    EDGE_COLUMNS,
    add_ablation_drops,
    add_weight_paths,
    candidate_edges,
)
from probe.plugins.analyses.dissection_quantile import TopQuantile
from probe.plugins.analyses.dissection_tally import (
    RULES,
    BatchLabels,
    LabelSpace,
    LayerTally,
    iou,
    primary_categories,
)
from probe.plugins.analyses.dissection_upsample import upsample
from probe.stats import TopK

QUANTILE_DEFINITION = ("torch.quantile(all raw activations of the unit, 1 - quantile, "
                       "interpolation='linear')")

TABLES: dict[str, tuple[str, ...]] = {
    "units": ("layer", "unit", "label", "name", "category", "iou", "is_detector", "threshold",
              "threshold_method", "threshold_error_bound", "quantile", "activations"),
    "labels": ("layer", "unit", "category", "rank", "label", "name", "iou", "intersection",
               "activation", "truth"),
    "summary": ("layer", "layer_index", "category", "units", "detectors", "unique_concepts",
                "share_of_units", "share_of_detectors"),
    "layers": ("layer", "layer_index", "units", "height", "width", "maps", "upsampled",
               "threshold_method", "threshold_memory_bytes", "rule", "iou_threshold",
               "quantile", "quantile_definition"),
    "exemplars": ("layer", "unit", "rank", "image", "activation", "active_pixels",
                  "mask_height", "mask_width", "mask"),
    "edges": EDGE_COLUMNS,
}

#: Layers whose modules are never dissected by default (no spatial concept maps).
_SKIPPED_MODULES = (nn.Linear, nn.Dropout, nn.Flatten, nn.Softmax, nn.MaxPool2d,
                    nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)

#: Live run contexts of this process, by accumulator token. Not pickled with the
#: accumulator (ranks exchange accumulators), and weak: a finished run's model is freed.
_CONTEXTS: weakref.WeakValueDictionary[str, RunContext] = weakref.WeakValueDictionary()


def unpack_mask(row: Any) -> np.ndarray:
    """The boolean ``[mask_height, mask_width]`` mask of an ``exemplars`` row."""
    h, w = int(row["mask_height"]), int(row["mask_width"])
    bits = np.unpackbits(np.frombuffer(row["mask"], dtype=np.uint8), count=h * w)
    return bits.reshape(h, w).astype(bool)


class DissectionAccumulator(Accumulator):
    """Pass 1: per-unit thresholds. Pass 2: IoU tallies, exemplars, ablation sample.

    Args:
        settings: The analysis's resolved options.
        space: Labels and categories of the data set.
        layers: Layers to dissect, earliest first.
        num_images: Images in the whole data set (all shards), to size the exact
            threshold buffers; ``None`` keeps both buffer and sketch.
        part_parents: ``part_id, object_id`` table, or ``None``.
        context: The run context (model handle for the hierarchy view).
    """

    def __init__(self, settings: dict[str, Any], space: LabelSpace, layers: list[str],
                 num_images: int | None, part_parents: pd.DataFrame | None = None,
                 context: RunContext | None = None) -> None:
        self.settings = dict(settings)
        self.space = space
        self.layers = list(layers)
        self.num_images = num_images
        self.part_parents = part_parents
        self.token = uuid.uuid4().hex
        if context is not None:
            _CONTEXTS[self.token] = context
        self.quantiles: dict[str, TopQuantile] = {}
        self.shapes: dict[str, tuple[int, int, int]] = {}
        self.thresholds: dict[str, torch.Tensor] | None = None
        self.threshold_info: dict[str, dict[str, Any]] = {}
        self.tallies: dict[str, LayerTally] = {}
        self.exemplars: dict[str, TopK] = {}
        self.truth: torch.Tensor | None = None
        self.coverage: torch.Tensor | None = None
        self.mask_size: tuple[int, int] | None = None
        self.sample_inputs: torch.Tensor | None = None
        self.sample_indices: torch.Tensor | None = None
        self.images = 0

    # -- streaming ---------------------------------------------------------------------------
    def update(self, batch: Batch) -> None:
        if batch.pass_index == 0:
            self._update_thresholds(batch)
        elif batch.pass_index == 1:
            self._update_tallies(batch)

    def _update_thresholds(self, batch: Batch) -> None:
        for layer in self.layers:
            act = batch.activations[layer]
            if act.dim() != 4:
                continue
            units, h, w = act.shape[1:]
            if layer not in self.quantiles:
                planned = None if self.num_images is None else self.num_images * h * w
                self.quantiles[layer] = TopQuantile(
                    units, self.settings["quantile"], planned, self.settings["exact_cap"],
                    self.settings["sketch_bits"], act.device)
                self.shapes[layer] = (units, h, w)
            self.quantiles[layer].update_maps(act.detach())

    def _mask_size(self, batch: Batch) -> tuple[int, int]:
        if batch.masks is not None:
            return tuple(batch.masks.shape[-2:])  # type: ignore[return-value]
        return tuple(batch.images.shape[-2:])  # type: ignore[return-value]

    def _update_tallies(self, batch: Batch) -> None:
        if self.thresholds is None:
            raise RuntimeError("dissection pass 2 before thresholds were fixed (end_pass(0))")
        size = self._mask_size(batch)
        device = batch.images.device
        labels = BatchLabels.build(self.space, batch.masks, batch.scalars, size,
                                   len(batch.images), device)
        if self.truth is None:
            self.truth = torch.zeros_like(labels.truth)
            self.coverage = torch.zeros_like(labels.coverage)
            self.mask_size = size
        elif size != self.mask_size:
            raise ValueError(f"mask size changed from {self.mask_size} to {size}")
        self.truth += labels.truth
        self.coverage += labels.coverage
        self.images += len(batch.images)
        for layer in self.quantiles:
            act = batch.activations[layer].detach()
            units = act.shape[1]
            if layer not in self.tallies:
                self.tallies[layer] = LayerTally(units, self.space, device)
                self.exemplars[layer] = TopK(units, self.settings["exemplars"], device,
                                             tuple(act.shape[2:]))
            peak = act.flatten(2).amax(2)  # [B, K]
            self.tallies[layer].update(act, self.thresholds[layer], labels, peak)
            self.exemplars[layer].update(peak.T, batch.indices, act.transpose(0, 1).float())
        self._keep_sample(batch.inputs.detach(), batch.indices)

    def _keep_sample(self, inputs: torch.Tensor, indices: torch.Tensor) -> None:
        """Keep the ``ablation_images`` lowest-index inputs (mergeable, deterministic)."""
        limit = self.settings["ablation_images"] if self.settings["hierarchy"] else 0
        if limit == 0:
            return
        if self.sample_inputs is not None:
            inputs = torch.cat([self.sample_inputs, inputs.to(self.sample_inputs.device)])
            indices = torch.cat([self.sample_indices, indices.to(self.sample_indices.device)])
        order = indices.argsort(stable=True)[:limit]
        self.sample_inputs, self.sample_indices = inputs[order], indices[order]

    def end_pass(self, pass_index: int) -> None:
        if pass_index != 0:
            return
        self.thresholds = {}
        for layer, quantile in self.quantiles.items():
            values, bound = quantile.result()
            self.thresholds[layer] = values
            self.threshold_info[layer] = {
                "method": quantile.method, "bound": bound.cpu().numpy(),
                "count": quantile.count, "memory": quantile.memory_bytes()}
        # pass-1 buffers are no longer needed; keep only their summaries
        for quantile in self.quantiles.values():
            quantile.top, quantile.hist = None, None

    def merge(self, other: Accumulator) -> None:
        if not isinstance(other, DissectionAccumulator):
            raise TypeError(f"cannot merge {type(other).__name__} into DissectionAccumulator")
        if self.thresholds is None:
            for layer, quantile in other.quantiles.items():
                if layer in self.quantiles:
                    self.quantiles[layer].merge(quantile)
                else:
                    self.quantiles[layer], self.shapes[layer] = quantile, other.shapes[layer]
            return
        if other.thresholds is None or any(
                not torch.equal(self.thresholds[k], other.thresholds[k].to(v.device))
                for k, v in self.thresholds.items()):
            raise ValueError("cannot merge dissection tallies computed with different thresholds")
        if other.truth is not None:
            if self.truth is None:
                self.truth, self.coverage = other.truth.clone(), other.coverage.clone()
                self.mask_size = other.mask_size
            else:
                self.truth += other.truth.to(self.truth.device)
                self.coverage += other.coverage.to(self.coverage.device)
        self.images += other.images
        for layer, tally in other.tallies.items():
            if layer in self.tallies:
                self.tallies[layer].merge(tally)
                self.exemplars[layer].merge(other.exemplars[layer])
            else:
                self.tallies[layer], self.exemplars[layer] = tally, other.exemplars[layer]
        if other.sample_inputs is not None:
            self._keep_sample(other.sample_inputs, other.sample_indices)

    # -- tables ------------------------------------------------------------------------------
    def finalize(self) -> dict[str, pd.DataFrame]:
        if self.truth is None or self.thresholds is None:
            return {name: pd.DataFrame(columns=list(cols)) for name, cols in TABLES.items()}
        primary = primary_categories(self.coverage, self.space.default_category)
        truth = self.truth.cpu()
        valid = (truth > 0) | (torch.tensor(self.space.default_category) >= 0)
        valid[0] = False
        units_rows, label_rows, layer_rows, ex_rows = [], [], [], []
        for index, layer in enumerate(self.layers):
            if layer not in self.tallies:
                continue
            tally = self.tallies[layer]
            units_rows.append(self._units_rows(layer, tally, primary, truth, valid))
            label_rows.append(self._label_rows(layer, tally, primary, truth, valid))
            layer_rows.append(self._layer_row(layer, index, tally))
            ex_rows.append(self._exemplar_rows(layer))
        units = pd.concat(units_rows, ignore_index=True)
        tables = {
            "units": units,
            "labels": pd.concat(label_rows, ignore_index=True),
            "summary": self._summary(units),
            "layers": pd.DataFrame(layer_rows),
            "exemplars": pd.concat(ex_rows, ignore_index=True),
            "edges": self._edges(units),
        }
        return tables

    def _scores(self, tally: LayerTally, primary: torch.Tensor, truth: torch.Tensor,
                valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        inter = tally.intersection.cpu()
        act = tally.activation_for(self.settings["rule"], primary).cpu()
        scores = iou(inter, act, truth.view(1, -1))
        return torch.where(valid.view(1, -1), scores, torch.full_like(scores, -1.0)), inter, act

    def _units_rows(self, layer: str, tally: LayerTally, primary: torch.Tensor,
                    truth: torch.Tensor, valid: torch.Tensor) -> pd.DataFrame:
        scores, _, _ = self._scores(tally, primary, truth, valid)
        best_iou, best = scores.max(1)  # first maximum = lowest label id on ties
        best_iou = best_iou.clamp(min=0).numpy()
        has = best_iou > 0
        label = np.where(has, best.numpy(), -1)
        names = np.array(self.space.names, dtype=object)
        cats = np.array(self.space.categories, dtype=object)
        info = self.threshold_info[layer]
        return pd.DataFrame({
            "layer": layer, "unit": np.arange(tally.units),
            "label": label, "name": np.where(has, names[best.numpy()], ""),
            "category": np.where(has, cats[primary[best].numpy()], ""),
            "iou": best_iou, "is_detector": best_iou > self.settings["iou_threshold"],
            "threshold": self.thresholds[layer].cpu().numpy(),
            "threshold_method": info["method"], "threshold_error_bound": info["bound"],
            "quantile": self.settings["quantile"], "activations": info["count"],
        })

    def _label_rows(self, layer: str, tally: LayerTally, primary: torch.Tensor,
                    truth: torch.Tensor, valid: torch.Tensor) -> pd.DataFrame:
        scores, inter, act = self._scores(tally, primary, truth, valid)
        top = self.settings["top_labels"]
        frames = []
        for c, category in enumerate(self.space.categories):  # a handful of categories
            mine = (primary == c) & valid
            if not bool(mine.any()):
                continue
            masked = torch.where(mine.view(1, -1), scores, torch.full_like(scores, -2.0))
            order = masked.sort(dim=1, descending=True, stable=True).indices
            keep = min(top, int(mine.sum()))
            chosen = order[:, :keep]  # [K, keep]
            unit = torch.arange(tally.units).view(-1, 1).expand_as(chosen)
            frames.append(pd.DataFrame({
                "layer": layer, "unit": unit.flatten().numpy(), "category": category,
                "rank": torch.arange(keep).repeat(tally.units).numpy(),
                "label": chosen.flatten().numpy(),
                "name": np.array(self.space.names, dtype=object)[chosen.flatten().numpy()],
                "iou": scores.gather(1, chosen).flatten().numpy(),
                "intersection": inter.gather(1, chosen).flatten().numpy(),
                "activation": act.gather(1, chosen).flatten().numpy(),
                "truth": truth[chosen.flatten()].numpy(),
            }))
        if not frames:
            return pd.DataFrame(columns=list(TABLES["labels"]))
        return pd.concat(frames, ignore_index=True)

    def _layer_row(self, layer: str, index: int, tally: LayerTally) -> dict[str, Any]:
        units, h, w = self.shapes[layer]
        info = self.threshold_info[layer]
        return {"layer": layer, "layer_index": index, "units": units, "height": h, "width": w,
                "maps": tally.maps, "upsampled": tally.upsampled,
                "threshold_method": info["method"], "threshold_memory_bytes": info["memory"],
                "rule": self.settings["rule"], "iou_threshold": self.settings["iou_threshold"],
                "quantile": self.settings["quantile"], "quantile_definition": QUANTILE_DEFINITION}

    def _summary(self, units: pd.DataFrame) -> pd.DataFrame:
        rows = []
        for index, layer in enumerate(self.layers):
            mine = units[units["layer"] == layer]
            if mine.empty:
                continue
            det = mine[mine["is_detector"]]
            for category in self.space.categories:
                in_cat = det[det["category"] == category]
                rows.append({
                    "layer": layer, "layer_index": index, "category": category,
                    "units": len(mine), "detectors": len(in_cat),
                    "unique_concepts": int(in_cat["label"].nunique()),
                    "share_of_units": len(in_cat) / len(mine),
                    "share_of_detectors": len(in_cat) / len(det) if len(det) else 0.0,
                })
        return pd.DataFrame(rows, columns=list(TABLES["summary"]))

    def _exemplar_rows(self, layer: str) -> pd.DataFrame:
        top = self.exemplars[layer]
        values, indices = top.values.cpu(), top.indices.cpu()
        units, kept = values.shape
        h, w = self.mask_size
        maps = top.payload.flatten(0, 1).float()  # [units·kept, h0, w0]
        thresholds = self.thresholds[layer].to(maps.device).double()
        up = upsample(maps, (h, w))  # the tallies' formula, so masks match the counts
        on = (up > thresholds.repeat_interleave(kept).view(-1, 1, 1)).cpu().numpy()
        packed = np.packbits(on.reshape(len(on), -1), axis=1)
        filled = indices.flatten().numpy() >= 0
        return pd.DataFrame({
            "layer": layer,
            "unit": np.repeat(np.arange(units), kept), "rank": np.tile(np.arange(kept), units),
            "image": indices.flatten().numpy(), "activation": values.flatten().numpy(),
            "active_pixels": on.reshape(len(on), -1).sum(1),
            "mask_height": h, "mask_width": w,
            "mask": [row.tobytes() for row in packed],
        })[filled].reset_index(drop=True)

    def _edges(self, units: pd.DataFrame) -> pd.DataFrame:
        empty = pd.DataFrame(columns=list(EDGE_COLUMNS))
        if not self.settings["hierarchy"] or self.part_parents is None or \
                self.part_parents.empty:
            return empty
        edges = candidate_edges(units, self.part_parents, self.layers)
        context = _CONTEXTS.get(self.token)
        if edges.empty:
            return empty
        if context is None:
            edges["weight_path"] = np.nan
            edges["ablation_drop"] = np.nan
            edges["ablation_baseline"] = np.nan
            edges["ablation_images"] = 0
            return edges[list(EDGE_COLUMNS)]
        edges = add_weight_paths(edges, context.model, context.layers)
        inputs = self.sample_inputs if self.sample_inputs is not None else \
            torch.zeros((0,), device=context.device)
        edges = add_ablation_drops(edges, context.handle, inputs, context.layers,
                                   self.settings["max_ablations"])
        return edges[list(EDGE_COLUMNS)]


class Dissection(Analysis):
    """Network Dissection (Bau, Zhou, Khosla, Oliva & Torralba, CVPR 2017), done exactly.

    Pass 1 fixes each unit's threshold ``T_k`` at the top ``quantile`` of all its
    raw activations (every position of every image, before upsampling), exactly
    as ``torch.quantile(x, 1 - quantile)`` (linear interpolation) while the
    needed top ``floor(quantile·(N-1)) + 3`` values fit ``exact_cap`` per unit,
    else with a histogram sketch whose per-unit error bound is reported
    (``<= 2**-sketch_bits·|T|``; see ``dissection_quantile``). Pass 2 upsamples
    each map whose raw maximum exceeds ``T_k`` (the others cannot have a pixel
    above it, so skipping them is exact) bilinearly (``align_corners=False``)
    to the mask resolution, thresholds it strictly (``> T_k``) and adds the
    data-set-wide counts ``I``, ``A``, ``T`` on the device with one bincount
    over unit × label. ``IoU = ΣI / (ΣA + ΣT − ΣI)``; a unit is a detector when
    its best IoU is strictly greater than ``iou_threshold``.

    Options that depart from the paper, by name: ``rule`` — ``paper``
    (default: A counted on images where the label's category is annotated),
    ``lite`` (NetDissect-Lite: A counted when the unit's active pixels touch
    a labelled pixel of that category), ``unconditioned`` (A over all images);
    ``quantile``, ``iou_threshold`` (0.005 and 0.04 in the paper).

    Departures and choices (all documented in ``docs/dissection.md``):

    * exact thresholds instead of the paper's streaming quantile sketch (the
      sketch is used only above ``exact_cap``, with a stated bound);
    * mask layers are OR-ed per label per pixel and a pixel label equal to one
      of the image's scalar labels is not counted twice (the reference code
      can double-count both);
    * "category annotated in an image" means a mask layer or scalar slot of
      that category is non-zero in the image; a label's A is taken in its
      primary category (largest pixel coverage over the data set; ties go to
      the concept table's category, then to the first category);
    * only 4-D activations ``[B, K, h, w]`` are dissected; pooling and fully
      connected layers are skipped unless named in ``layers``;
    * exemplars: the ``exemplars`` images with the highest raw maximum per
      unit, each with its thresholded mask at mask resolution (packed bits);
    * the hierarchy-of-parts edges (``dissection_hierarchy``) are an addition
      (Bau et al. 2020 style ablation on a bounded sample, plus |W| paths).
    """

    name: ClassVar[str] = "dissection"
    description: ClassVar[str] = ("Network Dissection: concept detectors per unit (exact "
                                  "thresholds, IoU on the device) and the hierarchy of parts")
    options: ClassVar[tuple[Option, ...]] = (
        Option("quantile", float, 0.005, "top fraction of activations above the threshold",
               minimum=1e-6, maximum=0.5),
        Option("rule", str, "paper", "activation-counting rule for IoU", choices=RULES),
        Option("iou_threshold", float, 0.04, "a unit is a detector when IoU > this",
               minimum=0.0, maximum=1.0),
        Option("top_labels", int, 5, "labels kept per unit and category", minimum=1),
        Option("exemplars", int, 8, "top images kept per unit (with masks)", minimum=1,
               maximum=256),
        Option("exact_cap", int, 65536, "largest exact threshold buffer per unit (values)",
               minimum=3),
        Option("sketch_bits", int, 7, "mantissa bits of the threshold sketch", minimum=0,
               maximum=16),
        Option("layers", tuple, (), "layers to dissect (default: all conv-like layers)",
               item_type=str),
        Option("hierarchy", bool, True, "compute part→object edges where part_parents exist"),
        Option("ablation_images", int, 32, "images in the ablation sample", minimum=0,
               maximum=1024),
        Option("max_ablations", int, 64, "most part units ablated", minimum=0),
    )
    passes: ClassVar[int] = 2
    requires: ClassVar[frozenset[str]] = frozenset({"masks"})
    tables: ClassVar[dict[str, tuple[str, ...]]] = TABLES

    def select_layers(self, context: RunContext) -> list[str]:
        chosen = list(self.settings["layers"])
        if chosen:
            unknown = [n for n in chosen if n not in context.layers]
            if unknown:
                raise OptionError(f"dissection.layers: layer {unknown[0]!r} is not in the run; "
                                  f"layers: {', '.join(context.layers)}")
            return chosen
        return [name for name in context.layers
                if not isinstance(context.module(name), _SKIPPED_MODULES)]

    def accumulator(self, context: RunContext) -> DissectionAccumulator:
        dataset = context.dataset
        if dataset is None or dataset.concepts is None:
            raise ValueError("dissection needs a data set with a concept table")
        space = LabelSpace.from_concepts(dataset.concepts, dataset.mask_categories,
                                         dataset.scalar_categories)
        return DissectionAccumulator(self.settings, space, self.select_layers(context),
                                     len(dataset), dataset.part_parents, context)

    @classmethod
    def figures(cls, tables):
        return dissection_figures(tables)


@hookimpl
def probe_register_analyses(register):
    register(Dissection)
