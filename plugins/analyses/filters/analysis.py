"""``filters``: learned filters against Gabor functions, PCA of image patches and
Gaussian derivatives (weights only by default; one data pass for a data-set PCA).

The analysis class and its options. The work lives beside it:
:mod:`.accumulator` (declared patch sums, ``finalize``), :mod:`.measure` (one
filter bank's tables), :mod:`.weights` (which convolution makes a layer).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from probe import Analysis, Option, RunContext
from probe.plugins.analyses.filters.accumulator import TABLES, FiltersAccumulator
from probe.plugins.analyses.filters.measure import window
from probe.plugins.analyses.filters.weights import kernel_sizes, layer_filters


class Filters(Analysis):
    """Learned filters against engineered bases: Gabor fits and banks, PCA of image
    patches, Gaussian derivatives, and redundancy under rotations.

    Per layer (any 2-D convolution, found with ``probe.architecture.conv_for_layer``):

    * **Gabor fit** — 9-parameter Gabor (REFERENCE §2) fitted by batched
      Levenberg–Marquardt from orientation × phase starts to each filter's
      spatial map; R² = 1 − SSE/SST, parameters, Ringach's ``nx = σx·f``,
      ``ny = σy·f`` (Ringach 2002). Colour (multi-channel) filters are reduced to
      one signed map by SVD of the ``C × k²`` matrix; ``σ₁²/Σσ²`` is their
      separability. Kernels under 5 px get status ``too_small`` and no fit.
    * **Gabor bank** — best phase-invariant |cos| over a bank of centred
      quadrature pairs (8 orientations, octave-spaced frequencies).
    * **PCA** — principal components of natural image patches at the kernel
      size (Hancock, Baddeley & Smith 1992), plain (``pca``) and under a Gaussian
      window (``pca_windowed``, Hancock's setting), sign-canonicalised; from the
      images bundled with scikit-image/scikit-learn, or (``pca_source=dataset``)
      from the run's data set in one pass (exact, mergeable covariance sums).
    * **Gaussian derivatives** — orders 0–4, standard order, half-width 3σ
      (Jacobsen et al. 2016).
    * Per filter: energy fraction in each basis span next to the chance level
      ``dim/k²`` and the mean over seeded random Gaussian filters; Hungarian
      one-to-one matching to the PCA components. Per layer: principal angles
      (``scipy.linalg.subspace_angles``, radians, largest first) between the top
      ``m`` singular directions of the layer's channel slices and each basis.
    * **Redundancy** — for each filter, the best |cos| with another filter of the
      layer under the 8 rotations/flips of the square (and optionally
      interpolated rotations), so rotated copies are found.

    Departures: the Gabor fit is on the SVD-reduced map, not the colour filter;
    the bank is centred only (no positional search); energy in a span counts all
    channel slices of a filter; the layer's "own" basis (``layer_svd``) is its
    top singular directions, an upper bound for the curves. See docs/filters.md.
    """

    name = "filters"
    description = "learned filters vs Gabor fits/banks, natural-patch PCA, Gaussian derivatives"
    options = (
        Option("pca_source", str, "natural", "patches for the PCA basis: bundled natural "
               "images, or the run's data set (one pass)", choices=("natural", "dataset")),
        Option("patches", int, 20000, "natural patches sampled per kernel size", minimum=100,
               maximum=1_000_000),
        Option("pca_window", float, 0.5, "σ of the Gaussian window of pca_windowed, as a "
               "fraction of the kernel half-width", minimum=0.0),
        Option("orientations", int, 4, "grid orientations per Gabor fit (plus the spectral "
               "peak)", minimum=1, maximum=64),
        Option("phases", int, 4, "starting phases per orientation", minimum=1, maximum=16),
        Option("iterations", int, 40, "Levenberg–Marquardt iterations", minimum=0,
               maximum=1000),
        Option("bank_orientations", int, 8, "orientations of the quadrature Gabor bank",
               minimum=1, maximum=64),
        Option("rotations", int, 4, "rotations searched for redundancy (multiple of 4; "
               "> 4 adds interpolated angles)", minimum=4, maximum=64),
        Option("random_filters", int, 256, "seeded random filters for chance levels",
               minimum=2, maximum=100_000),
        Option("r2_threshold", float, 0.7, "R² above which a filter counts as Gabor-like",
               minimum=0.0, maximum=1.0),
    )
    passes = 0
    tables = TABLES

    #: The view hooks, as plain functions (see probe.views.AnalysisViews.views_from).
    views_from = ("probe.plugins.analyses.filters.views", "probe.plugins.analyses.filters.compare")

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        if self.settings["rotations"] % 4:
            from probe.errors import OptionError

            raise OptionError(f"analysis filters option rotations must be a multiple of 4, "
                              f"got {self.settings['rotations']}")

    def num_passes(self) -> int:
        return 1 if self.settings["pca_source"] == "dataset" else 0

    def select_layers(self, context: RunContext) -> list[str]:
        return []  # weights only: nothing to capture

    def accumulator(self, context: RunContext) -> FiltersAccumulator:
        # Kernel sizes from the model here; the accumulator keeps no module.
        sizes = kernel_sizes(context.model, list(context.layers.values()))
        return FiltersAccumulator(self.settings, sizes, context.device)

    @classmethod
    def figures(cls, tables: Mapping[str, pd.DataFrame]) -> list[Any]:
        from probe.plugins.analyses.filters.figures import make_figures

        return make_figures(tables)

    # -- views (probe.views hooks; the work is in .views) --------------------------------








__all__ = ["Filters", "FiltersAccumulator", "layer_filters", "window"]
