"""The ``compositional`` analysis class: its options, layers and accumulator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pandas as pd

from probe import Analysis, Option, RunContext
from probe.plugins.analyses.dissection import Dissection
from probe.plugins.analyses.dissection.analysis import mask_size
from probe.plugins.analyses.dissection.labels import LabelSpace
from probe.plugins.analyses.dissection.upsample import DOWNSAMPLE

from .accumulator import CompositionalAccumulator, searched_shapes
from .tables import TABLES


def _option(name: str) -> Option:
    """dissection's option of that name (same default, range and help)."""
    return next(o for o in Dissection.options if o.name == name)


class Compositional(Analysis):
    """Compositional explanations (Mu & Andreas, NeurIPS 2020; code jayelm/compexp).

    Per unit, a beam search (``beam`` wide, formulas of up to ``length`` concepts,
    operators ``OR``, ``AND``, ``AND NOT``) for the logical formula over the
    concept masks whose mask best matches the unit's, by plain IoU summed over a
    sample of images (the data set's first ``images``). The unit masks are
    Network Dissection's: the same per-unit thresholds (top ``quantile`` of all
    raw activations, exact while they fit ``exact_cap``) and the same resizing
    and strict threshold (dissection's own code); concept masks are dissection's
    label maps, image-level labels as whole-image masks.

    Masks are bit-packed (64 pixels per int64 word) and every candidate formula
    of a beam step, for every unit of a layer, is scored in one batched pass of
    bitwise ANDs and popcounts (:mod:`.search`, :mod:`.bits`).

    Departures from compexp: the sample is the first ``images`` images (compexp
    uses the whole data set); a concept is never added twice to one formula; the
    IoU has no ``1e-10`` in its denominator (0 when the union is empty). On data
    sets with a part → object table, :mod:`.parts` also reads the hierarchy of
    parts as logic (an addition).
    """

    name: ClassVar[str] = "compositional"
    description: ClassVar[str] = ("compositional explanations: per unit, the best AND / OR / "
                                  "AND NOT formula over concept masks (beam search, IoU)")
    options: ClassVar[tuple[Option, ...]] = (
        _option("quantile"),
        Option("images", int, 128, "images in the sample (the data set's first)", minimum=1,
               maximum=1_000_000),
        Option("beam", int, 5, "beam width", minimum=1, maximum=1000),
        Option("length", int, 3, "longest formula (concepts)", minimum=1, maximum=10),
        Option("layers", tuple, (), "layers to explain (default: as dissection)",
               item_type=str),
        Option("exemplars", int, 3, "sample images per unit whose unit, term and formula masks "
               "are kept (most pixels where unit and formula agree; 0: none)", minimum=0,
               maximum=64),
        Option("parts_objects", bool, True,
               "object units' formulas over parts, checked against part_parents"),
        Option("downsample", str, "antialias", "resizing where a map is larger than the masks "
               "(as dissection)", choices=DOWNSAMPLE),
        _option("exact_cap"),
        _option("sketch_bits"),
    )
    passes: ClassVar[int] = 2
    requires: ClassVar[frozenset[str]] = frozenset({"masks"})
    tables: ClassVar[dict[str, tuple[str, ...]]] = TABLES

    views_from = ("probe.plugins.analyses.compositional.views",)

    def select_layers(self, context: RunContext) -> list[str]:
        chosen = self.settings["layers"]
        return self.chosen_layers(context, chosen, None if chosen else
                                  Dissection().select_layers(context))

    def accumulator(self, context: RunContext) -> CompositionalAccumulator:
        dataset = context.dataset
        space = LabelSpace.of_dataset(dataset, "compositional")
        shapes = searched_shapes(self.select_layers(context), context.layer_shapes)
        return CompositionalAccumulator(self.settings, space, shapes, len(dataset),
                                        mask_size(dataset), context.device,
                                        dataset.part_parents)

    @classmethod
    def figures(cls, tables: Mapping[str, pd.DataFrame]) -> list[Any]:
        """Formula gain per layer and, where there are object units, the own-parts share
        (the charts of ``run_views`` drawn from this analysis's tables alone)."""
        from .views import agreement_figure, gain_figure

        out = [gain_figure(tables["layers"], tables["formulas"])]
        parts = tables.get("parts_layers")
        if parts is not None and not parts.empty and parts["object_units"].sum() > 0:
            out.append(agreement_figure(parts))
        return out
