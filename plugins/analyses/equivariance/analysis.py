"""The ``equivariance`` analysis: how far each layer commutes with input transformations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from probe import Analysis, Option, RunContext
from probe.errors import OptionError
from probe.transform_registry import get_transforms
from probe.views import RunView, UnitColumns

from .accumulator import EquivarianceAccumulator
from .schema import TABLES
from .sweep import parse_magnitudes, plan_sweep

__all__ = ["Equivariance", "EquivarianceAccumulator"]


class Equivariance(Analysis):
    """Per-layer equivariance and output invariance under input transformations.

    Four families of measurements, all from the run's single pass (extra
    forward passes on transformed inputs go through ``batch.handle`` inside
    the batch step):

    1. Direct error ``‖f(g·x) − g′·f(x)‖ / ‖f(x)‖`` per layer over a sweep of
       magnitudes per transformation, with the known action ``g′`` on each
       layer's grid (REFERENCE §3). Sums of squares over valid cells and
       images are accumulated; the reported error is the ratio of sums, with
       the denominator ``‖g′·f(x)‖`` inside the same validity mask.
    2. Output consistency (Zhang, "Making Convolutional Networks Shift-Invariant
       Again", ICML 2019) and P(top-1 change) / mean absolute change between
       neighbouring 1-pixel shifts (Azulay & Weiss, "Why do deep convolutional
       networks generalize so poorly to small image transformations?", JMLR
       2019), always with accuracy. Departures: crops are taken from a
       zero-padded image of the input size (±``consistency_shift`` of the
       side) instead of 224 px crops of 256 px images; neighbouring shifts are
       diagonal.
    3. Learned equivariance maps (Lenc & Vedaldi, "Understanding image
       representations by measuring their equivariance and equivalence", CVPR
       2015): the spatial action then a 1×1 channel mixing with bias, fitted by
       ridge regression on even data-set indices and scored (1 − R²) on odd
       ones, next to the identity (invariance) and spatial-only baselines.
       Departure: closed-form ridge on accumulated Gram matrices instead of
       their iterative solver with sparsity priors.
    4. Lie derivatives (Gruver et al., "The Lie Derivative for Measuring Learned
       Equivariance", ICLR 2023): the local equivariance error of each layer's
       representation and of the output, and the chain-rule attribution whose
       parts sum as vectors to the end-to-end value. Derivatives of bilinear
       resampling are one-sided at the identity (from the positive side).
       Translations are per input pixel.
    """

    name = "equivariance"
    description = ("per-layer equivariance error, output consistency, learned equivariance "
                   "maps and Lie derivatives under input transformations")
    options = (
        Option("transforms", tuple, ("shift-x", "translate-x", "hflip", "rot90", "rotate",
                                     "scale"),
               "registered transformations to measure (see probe.transforms)",
               item_type=str),
        Option("magnitudes", tuple, (), "sweeps: NAME=a;b;c or NAME=start:stop:step, "
               "suffix px = input pixels (default: each transform's own sweep)", item_type=str),
        Option("learned_maps", str, "discrete", "Lenc-Vedaldi fits: discrete = every flip/"
               "rot90 magnitude and the largest of each continuous sweep",
               choices=("discrete", "all", "none")),
        Option("ridge", float, 1e-4, "ridge penalty, relative to the mean Gram diagonal",
               minimum=0.0),
        Option("lie", bool, True, "Lie derivatives of continuous transforms"),
        Option("consistency", bool, True, "output consistency and neighbouring-shift stability"),
        Option("consistency_shift", float, 0.125,
               "largest crop offset from the centre, as a fraction of the side",
               minimum=0.0, maximum=0.5),
        Option("consistency_steps", int, 8, "neighbouring 1-pixel diagonal shifts",
               minimum=1, maximum=64),
    )
    passes = 1
    tables = TABLES
    # The learned maps are ridge solutions (penalty 1e-4 of the mean Gram diagonal) on
    # float32 activations; a forward over other batch compositions moves those in the
    # last bit (6e-8 of the error sums) and the solve amplifies it: up to 6.5e-6 of a
    # column's largest value in the conformance run on lenet5 (2026-12-03), 15x below this.
    merge_tolerance = 1e-4

    #: The view hooks, as plain functions (see probe.views.AnalysisViews.views_from).
    views_from = ("probe.plugins.analyses.equivariance.views",)

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        if not self.settings["transforms"]:
            raise OptionError("equivariance.transforms must name at least one transform")
        names = list(self.settings["transforms"])
        get_transforms(names)  # unknown names fail here, listing the known ones
        parse_magnitudes(self.settings["magnitudes"], names)

    def accumulator(self, context: RunContext) -> EquivarianceAccumulator:
        """All state allocated from the dry forward's shapes and one blank forward (grids)."""
        if not context.input_shape:  # no images: nothing to measure, empty tables
            return EquivarianceAccumulator(None, context.device, context.seed)
        sweep = plan_sweep(self.settings, context, self.select_layers(context))
        return EquivarianceAccumulator(sweep, context.device, context.seed)

    @classmethod
    def figures(cls, tables: Mapping[str, pd.DataFrame]) -> list[Any]:
        from .figures import equivariance_figures

        return equivariance_figures(tables)

    # -- views (probe.views hooks; the work is in .views) --------------------------------

    @classmethod
    def unit_columns(cls, run: RunView, layer: str) -> UnitColumns | None:
        return None  # one number per layer, not per unit: nothing for the units page


