"""The streaming state of ``compositional``: dissection's thresholds, then packed masks.

The two passes and the packed masks are :class:`.sampled.SampledMasks` (shared
with ``concept-vectors``); ``finalize`` runs the beam search (:mod:`.search`) on
the reduced masks and builds the tables, the ``exemplars`` masks included
(:mod:`.exemplars`, from the same packed masks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import torch

from probe import RunContext
from probe.plugins.analyses.dissection.labels import LabelSpace

from .exemplars import exemplar_frame
from .parts import parts_frames
from .sampled import SampledMasks
from .search import beam_search
from .tables import empty_tables, layer_frames


class CompositionalAccumulator(SampledMasks):
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
        super().__init__(settings, space, shapes, num_images, mask_size, device)
        self.part_parents = part_parents

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
