"""The ``dissection`` analysis class: its options, layers and accumulator.

See :class:`Dissection` for the method, the options and the departures from the
paper; ``docs/dissection.md`` for the tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import pandas as pd
from torch import nn

from probe import Analysis, Option, ProbeDataset, RunContext

from .accumulator import DissectionAccumulator
from .figures import dissection_figures
from .labels import PRIMARY_SOURCES, LabelSpace
from .tables import TABLES, UNLABELLED
from .tally import RULES
from .upsample import DOWNSAMPLE

if TYPE_CHECKING:
    pass

#: Layers whose modules are never dissected by default (no spatial concept maps).
_SKIPPED_MODULES = (nn.Linear, nn.Dropout, nn.Flatten, nn.Softmax, nn.MaxPool2d,
                    nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)


def mask_size(dataset: ProbeDataset) -> tuple[int, int]:
    """``(H, W)`` of the data set's concept masks (of its images when it has none)."""
    sample = dataset[0]
    source = sample.get("masks")
    if source is None:
        source = sample["image"]
    return int(source.shape[-2]), int(source.shape[-1])


class Dissection(Analysis):
    """Network Dissection (Bau, Zhou, Khosla, Oliva & Torralba, CVPR 2017), done exactly.

    Pass 1 fixes each unit's threshold ``T_k`` at the top ``quantile`` of all its
    raw activations (every position of every image, before upsampling), exactly
    as ``torch.quantile(x, 1 - quantile)`` (linear interpolation) while the
    needed top ``floor(quantile·(N-1)) + 3`` values fit ``exact_cap`` per unit,
    else with a histogram sketch whose per-unit error bound is reported
    (``<= 2**-sketch_bits·|T|``; see :mod:`.quantile`). Pass 2 upsamples
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
    ``quantile``, ``iou_threshold`` (0.005 and 0.04 in the paper); where
    NetDissect-Lite's conventions differ: ``downsample`` (PIL's antialiased resize
    where a map is larger than the masks, the default, or two taps), ``primary``,
    ``detector_inclusive`` (``>=``), ``unlabelled`` (docs: "Conventions").

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
    * the hierarchy-of-parts edges (:mod:`.hierarchy`) are an addition
      (Bau et al. 2020 style ablation on a bounded sample, plus |W| paths),
      computed after the data loop (``after_passes``).
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
        # conventions where the reference tools differ (docs/dissection.md, "Conventions")
        Option("downsample", str, "antialias", "resizing where a map is larger than the masks: "
               "PIL's antialiased bilinear, or two-tap bilinear", choices=DOWNSAMPLE),
        Option("primary", str, "coverage", "primary category of a label: largest pixel "
               "coverage in the data, or the concept table's", choices=PRIMARY_SOURCES),
        Option("detector_inclusive", bool, False,
               "a unit is a detector when IoU >= iou_threshold (NetDissect-Lite's report)"),
        Option("unlabelled", str, "empty", "a unit whose IoU is 0 everywhere: label -1 and no "
               "category, or label 0 and the last category (NetDissect-Lite)",
               choices=UNLABELLED),
    )
    passes: ClassVar[int] = 2
    requires: ClassVar[frozenset[str]] = frozenset({"masks"})
    tables: ClassVar[dict[str, tuple[str, ...]]] = TABLES

    #: The view hooks, as plain functions (see probe.views.AnalysisViews.views_from).
    views_from = ("probe.plugins.analyses.dissection.views",
                  "probe.plugins.analyses.dissection.unit_views")

    def select_layers(self, context: RunContext) -> list[str]:
        return self.chosen_layers(context, self.settings["layers"], [
            name for name in context.layers
            if not isinstance(context.module(name), _SKIPPED_MODULES)])

    def accumulator(self, context: RunContext) -> DissectionAccumulator:
        dataset = context.dataset
        space = LabelSpace.of_dataset(dataset, "dissection")
        return DissectionAccumulator(
            self.settings, space, self.select_layers(context), context.layer_shapes,
            len(dataset), mask_size(dataset), context.input_shape, context.device,
            dataset.part_parents)

    @classmethod
    def figures(cls, tables: Mapping[str, pd.DataFrame]) -> list[Any]:
        """The run-level charts from the tables alone (the same functions as ``run_views``)."""
        return dissection_figures(tables)









