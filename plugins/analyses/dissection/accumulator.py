"""The streaming state of ``dissection``: thresholds, tallies, exemplars, ablation sample.

Every piece is declared (:mod:`probe.state`), allocated up front from the layer
shapes of the dry forward, so shards reduce with tensor collectives:

=============  ==========================================  =========  ======
state          value                                       reduce     after
=============  ==========================================  =========  ======
``quantiles``  ``{layer: TopQuantile}`` buffer + sketch    merge      pass 1
``tallies``    ``{layer: LayerTally}`` I / A counts        sum        pass 2
``exemplars``  ``{layer: TopK}`` top images with maps      merge      pass 2
``truth``      ``Tensor[num_labels]`` ``|L_c|``            sum        pass 2
``coverage``   ``Tensor[num_labels, C]`` label pixels      sum        pass 1
``sample``     :class:`AblationSample` lowest-index inputs merge      pass 2
=============  ==========================================  =========  ======

The thresholds, and the primary category of every label (from the reduced
``coverage``), are derived in ``end_pass(0)`` on every rank (so every rank's
pass 2 uses the same ones: pass 2 decides which categories are present at a
pixel by its labels' primary categories); the hierarchy edges' weight paths
and ablation drops need the model and are computed in ``after_passes``;
``finalize`` only builds tables.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from probe import Accumulator, Batch, RunContext
from probe.stats import TopK

from .hierarchy import (
    EDGE_COLUMNS,
    AblationSample,
    add_ablation_drops,
    add_weight_paths,
    candidate_edges,
)
from .labels import (
    BatchLabels,
    LabelPlan,
    LabelSpace,
    label_coverage,
    primary_categories,
)
from .quantile import TopQuantile
from .tables import (
    TABLES,
    Scoring,
    ThresholdInfo,
    empty_tables,
    exemplars_frame,
    labels_frame,
    layer_row,
    summary_frame,
    units_frame,
)
from .tally import LayerTally


class DissectionAccumulator(Accumulator):
    """Pass 1: per-unit thresholds. Pass 2: IoU tallies, exemplars, ablation sample.

    Args:
        settings: The analysis's resolved options.
        space: Labels and categories of the data set.
        layers: Layers selected, earliest first; those whose activation is
            ``[K, h, w]`` per image are dissected.
        shapes: ``{layer: shape of one image's activation}`` (the dry forward).
        num_images: Images in the whole data set (all shards), to size the exact
            threshold buffers; ``None`` keeps both buffer and sketch.
        mask_size: ``(H, W)`` of the concept masks (the image size when the data
            set has only image-level labels).
        input_shape: ``(C, H, W)`` of one model input (for the ablation sample).
        device: Where the state lives.
        part_parents: ``part_id, object_id`` table, or ``None``.
    """

    def __init__(self, settings: Mapping[str, Any], space: LabelSpace, layers: Sequence[str],
                 shapes: Mapping[str, Sequence[int]], num_images: int | None,
                 mask_size: tuple[int, int], input_shape: Sequence[int], device: torch.device,
                 part_parents: pd.DataFrame | None = None) -> None:
        self.settings = dict(settings)
        self.space = space
        self.layers = list(layers)
        self.part_parents = part_parents
        self.mask_size = (int(mask_size[0]), int(mask_size[1]))
        self.shapes: dict[str, tuple[int, int, int]] = {
            layer: tuple(int(v) for v in shapes[layer])  # type: ignore[misc]
            for layer in self.layers if len(shapes[layer]) == 3}
        s = self.settings
        quantiles, tallies, exemplars = {}, {}, {}
        for layer, (units, h, w) in self.shapes.items():
            planned = None if num_images is None else num_images * h * w
            quantiles[layer] = TopQuantile(units, s["quantile"], planned, s["exact_cap"],
                                           s["sketch_bits"], device)
            tallies[layer] = LayerTally(units, space, device)
            exemplars[layer] = TopK(units, s["exemplars"], device, (h, w))
        n_labels, n_cats = space.num_labels, len(space.categories)
        self.add_state("quantiles", quantiles, "merge", pass_index=0)
        self.add_state("tallies", tallies)
        self.add_state("exemplars", exemplars, "merge")
        self.add_state("truth", torch.zeros(n_labels, dtype=torch.int64, device=device), "sum")
        self.add_state("coverage", torch.zeros((n_labels, n_cats), dtype=torch.int64,
                                               device=device), "sum", pass_index=0)
        limit = s["ablation_images"] if s["hierarchy"] else 0
        self.add_state("sample", AblationSample(limit, input_shape, device), "merge")
        # derived in end_pass(0) from the reduced quantiles / coverage, the same on every rank
        self.thresholds: dict[str, torch.Tensor] | None = None
        self.primary: torch.Tensor | None = None
        self.plan: LabelPlan | None = None
        self.threshold_info: dict[str, ThresholdInfo] = {}
        # computed with the model in after_passes (main rank), read by finalize
        self.edges: pd.DataFrame | None = None

    # -- streaming ---------------------------------------------------------------------------
    def update(self, batch: Batch) -> None:
        if batch.pass_index == 0:
            for layer, quantile in self.quantiles.items():
                quantile.update_maps(batch.activations[layer].detach())
            if self.shapes:
                self.coverage += label_coverage(
                    self.space, batch.masks, batch.image_concepts, self._size(batch),
                    len(batch.images), batch.images.device).to(self.coverage.device)
        elif batch.pass_index == 1:
            self._update_tallies(batch)

    def _size(self, batch: Batch) -> tuple[int, int]:
        source = batch.masks if batch.masks is not None else batch.images
        size = (int(source.shape[-2]), int(source.shape[-1]))
        if size != self.mask_size:
            raise ValueError(f"mask size {size} differs from the data set's first sample "
                             f"{self.mask_size}")
        return size

    def _update_tallies(self, batch: Batch) -> None:
        if self.thresholds is None or self.primary is None:
            raise RuntimeError("dissection pass 2 before thresholds were fixed (end_pass(0))")
        self._size(batch)
        device = batch.images.device
        labels = BatchLabels.build(self.space, batch.masks, batch.image_concepts,
                                   self.mask_size, len(batch.images), device,
                                   plan=self.plan)
        self.truth += labels.truth.to(self.truth.device)
        downsample = self.settings.get("downsample", "antialias")
        for layer, tally in self.tallies.items():
            act = batch.activations[layer].detach()
            peak = act.flatten(2).amax(2)  # [B, K]
            tally.update(act, self.thresholds[layer], labels, peak, downsample)
            self.exemplars[layer].update(peak.T, batch.indices, act.transpose(0, 1).float())
        self.sample.update(batch.inputs.detach(), batch.indices)

    def end_pass(self, pass_index: int, context: RunContext) -> None:
        if pass_index != 0:
            return
        self.primary = primary_categories(self.coverage, self.space.default_category,
                                          self.settings.get("primary", "coverage"))
        self.plan = LabelPlan.build(self.space, self.coverage, self.primary)
        self.thresholds = {}
        for layer, quantile in self.quantiles.items():
            values, bound = quantile.result()
            self.thresholds[layer] = values
            self.threshold_info[layer] = ThresholdInfo(
                quantile.method, bound.cpu().numpy(), int(quantile.count),
                quantile.memory_bytes())
            quantile.release()  # pass-1 buffers are no longer needed

    # -- after the data loop -----------------------------------------------------------------
    def after_passes(self, context: RunContext) -> None:
        """The hierarchy edges' |W| paths and ablation drops (they need the model)."""
        edges = self._candidate_edges()
        if edges is None or edges.empty:
            return
        edges = add_weight_paths(edges, context.model, context.layers)
        edges = add_ablation_drops(edges, context.handle, self.sample.inputs, context.layers,
                                   self.settings["max_ablations"])
        self.edges = edges[list(EDGE_COLUMNS)]

    def _candidate_edges(self) -> pd.DataFrame | None:
        if not self.settings["hierarchy"] or self.part_parents is None or \
                self.part_parents.empty or not self._ready():
            return None
        return candidate_edges(self._units(self._scoring()), self.part_parents, self.layers)

    # -- tables ------------------------------------------------------------------------------
    def _ready(self) -> bool:
        return bool(self.shapes) and self.thresholds is not None

    def _scoring(self) -> Scoring:
        return Scoring.build(self.space, self.truth, self.coverage, self.settings["rule"],
                             self.settings.get("primary", "coverage"))

    def _units(self, scoring: Scoring) -> pd.DataFrame:
        assert self.thresholds is not None
        return pd.concat([units_frame(layer, self.tallies[layer], scoring,
                                      self.thresholds[layer], self.threshold_info[layer],
                                      self.settings) for layer in self.shapes],
                         ignore_index=True)

    def finalize(self, context: RunContext) -> dict[str, pd.DataFrame]:
        if not self._ready():
            return empty_tables()
        assert self.thresholds is not None
        scoring = self._scoring()
        for layer in self.shapes:
            self.tallies[layer].check_within_activation(scoring.primary)
        units = self._units(scoring)
        label_rows, layer_rows, ex_rows = [], [], []
        for index, layer in enumerate(self.layers):
            if layer not in self.shapes:
                continue
            tally, info = self.tallies[layer], self.threshold_info[layer]
            label_rows.append(labels_frame(layer, tally, scoring, self.settings["top_labels"]))
            layer_rows.append(layer_row(layer, index, self.shapes[layer], tally, info,
                                        self.settings))
            ex_rows.append(exemplars_frame(layer, self.exemplars[layer], self.thresholds[layer],
                                           self.mask_size,
                                           self.settings.get("downsample", "antialias")))
        return {
            "units": units,
            "labels": pd.concat(label_rows, ignore_index=True),
            "summary": summary_frame(units, self.layers, self.space.categories),
            "layers": pd.DataFrame(layer_rows),
            "exemplars": pd.concat(ex_rows, ignore_index=True),
            "edges": self._edges(),
        }

    def _edges(self) -> pd.DataFrame:
        """The edges of ``after_passes``; without it (no model step), ``NaN`` strengths."""
        if self.edges is not None:
            return self.edges
        edges = self._candidate_edges()
        if edges is None or edges.empty:
            return pd.DataFrame(columns=list(TABLES["edges"]))
        edges = edges.assign(weight_path=np.nan, ablation_drop=np.nan,
                             ablation_baseline=np.nan, ablation_images=0)
        return edges[list(EDGE_COLUMNS)]
