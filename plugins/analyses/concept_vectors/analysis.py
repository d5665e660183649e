"""The ``concept-vectors`` analysis class: its options, layers and accumulator."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pandas as pd

from probe import Analysis, Option, RunContext
from probe.plugins.analyses.compositional.accumulator import searched_shapes
from probe.plugins.analyses.dissection import Dissection
from probe.plugins.analyses.dissection.analysis import mask_size
from probe.plugins.analyses.dissection.labels import LabelSpace
from probe.plugins.analyses.dissection.upsample import DOWNSAMPLE

from .accumulator import ConceptVectorsAccumulator
from .fit import LOSSES, OPTIMIZERS
from .inputs import INPUTS
from .tables import TABLES

#: Which images each concept is trained and scored on.
SCOPES = ("all", "concept")


def _option(name: str) -> Option:
    """dissection's option of that name (same default, range and help)."""
    return next(o for o in Dissection.options if o.name == name)


class ConceptVectors(Analysis):
    """Net2Vec concept vectors (Fong & Vedaldi, CVPR 2018; code ruthcfong/net2vec).

    Per layer and concept, a weight vector ``w`` over the layer's ``K`` units and a
    bias ``b``; the concept's predicted mask is ``σ(Σ_k w_k·x_k↑ + b) > 0.5``, where
    ``x_k`` is unit ``k``'s input and ``↑`` dissection's resize to the mask size. As
    in the paper and the authors' ``linearprobe_pytorch.py``, ``x_k`` is the unit's
    threshold indicator ``I(a_k > T_k)`` at the layer's resolution, ``T_k`` being
    dissection's top-``quantile`` threshold (``inputs="standardized"`` uses the
    activations standardised per unit instead). Training minimises the per-pixel
    loss with the authors' class-balancing weight ``α_c = 1 − (mean share of the
    image that concept ``c`` covers, over the training images that contain it)`` on
    the positive pixels and ``1 − α_c`` on the negative ones (both 1 where
    ``α_c = 0``). Every concept of a layer is fitted together (weights ``[C, K]``,
    one matrix product per step; :mod:`.fit`).

    The vectors are scored by set IoU ``Σ|M ∩ L| / Σ|M ∪ L|`` over held-out images
    (a seeded ``holdout`` share of the sample), beside the best single unit:
    dissection's own unit mask (resized activation ``> T_k``), the unit of highest
    training IoU, scored on the same held-out images. Also reported: the fewest
    units holding 50 % and 90 % of ``Σ|w|``.

    Departures from the paper and the authors' code (see ``docs/concept_vectors.md``):

    * sample: the data set's first ``images`` images (default 128), split into
      training and held-out images by ``holdout`` (0.25) and ``seed``; the authors
      use Broden's train / val split over the whole data set;
    * scope: by default every sample image counts for every concept
      (``scope="all"``); the authors train and score each concept only on the images
      that contain it (``scope="concept"``);
    * loss: the class-balanced binary cross-entropy (``log σ``, ``log(1 − σ)``),
      which the paper names; the authors' ``BCELoss2d`` weighs ``σ`` and ``1 − σ``
      without the logarithm (``loss="linear"``); each concept's loss is a mean over
      its pixels in scope (the authors: a sum over pixels, a mean over images);
    * optimiser: Adam, ``lr`` 0.05, 30 epochs of batches of 16, since the authors'
      SGD (lr 1e-4, momentum 0.9, 30 epochs over Broden's thousands of images per
      concept) barely moves on a sample of 128 images (``optimizer="sgd"``,
      ``lr=1e-4`` gives it); a bias is always fitted (the authors' ``--bias``);
    * resizing: dissection's (``align_corners=False``, PIL's antialiased filter
      where a map shrinks) of the weighted sum, as a matrix product; the
      authors' PyTorch 0.3 ``nn.Upsample`` aligned corners;
    * best single unit: dissection's mask (resize, then threshold); the authors
      threshold, then resize, then cut at 0.5;
    * concepts fitted: those with at least ``min_pixels`` training pixels and one
      held-out pixel; the authors fit every Broden label.
    """

    name: ClassVar[str] = "concept-vectors"
    description: ClassVar[str] = ("Net2Vec: per concept, a learned weight vector over a "
                                  "layer's units (segmentation, set IoU vs the best unit)")
    options: ClassVar[tuple[Option, ...]] = (
        Option("layers", tuple, (), "layers to fit (default: as dissection)", item_type=str),
        Option("images", int, 128, "images in the sample (the data set's first)", minimum=2,
               maximum=1_000_000),
        Option("holdout", float, 0.25, "share of the sample held out for scoring",
               minimum=0.01, maximum=0.9),
        Option("epochs", int, 30, "passes over the training images", minimum=1,
               maximum=100_000),
        Option("batch_size", int, 16, "images per optimiser step", minimum=1,
               maximum=100_000),
        Option("lr", float, 0.05, "learning rate", minimum=1e-8, maximum=100.0),
        Option("optimizer", str, "adam", "adam, or the authors' SGD (momentum 0.9)",
               choices=OPTIMIZERS),
        Option("loss", str, "bce", "class-balanced BCE, or the authors' log-free form",
               choices=LOSSES),
        Option("inputs", str, "binary", "unit inputs: threshold indicators (Net2Vec) or "
               "standardised activations", choices=INPUTS),
        Option("scope", str, "all", "images a concept is trained and scored on: all, or "
               "those containing it (the authors')", choices=SCOPES),
        Option("min_pixels", int, 16, "fit concepts with at least this many training "
               "pixels", minimum=1),
        Option("seed", int, 0, "seed of the held-out split, initial weights and batch order",
               minimum=0),
        _option("quantile"),
        Option("downsample", str, "antialias", "resizing where a map is larger than the masks "
               "(as dissection)", choices=DOWNSAMPLE),
        _option("exact_cap"),
        _option("sketch_bits"),
    )
    passes: ClassVar[int] = 2
    requires: ClassVar[frozenset[str]] = frozenset({"masks"})
    tables: ClassVar[dict[str, tuple[str, ...]]] = TABLES

    views_from = ("probe.plugins.analyses.concept_vectors.views",)

    def select_layers(self, context: RunContext) -> list[str]:
        chosen = self.settings["layers"]
        return self.chosen_layers(context, chosen, None if chosen else
                                  Dissection().select_layers(context))

    def accumulator(self, context: RunContext) -> ConceptVectorsAccumulator:
        dataset = context.dataset
        space = LabelSpace.of_dataset(dataset, "concept-vectors")
        shapes = searched_shapes(self.select_layers(context), context.layer_shapes)
        return ConceptVectorsAccumulator(self.settings, space, shapes, len(dataset),
                                         mask_size(dataset), context.device)

    @classmethod
    def figures(cls, tables: Mapping[str, pd.DataFrame]) -> list[Any]:
        """Vector vs best-unit IoU per layer (the same chart as ``run_views``)."""
        from .views import iou_figure

        return [iou_figure(tables["layers"])]
