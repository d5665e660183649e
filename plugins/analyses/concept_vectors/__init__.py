"""``concept-vectors``: Net2Vec concept vectors (Fong & Vedaldi, CVPR 2018).

Modules: :mod:`.analysis` (the class and its options), :mod:`.accumulator`
(declared state: dissection's thresholds, the kept sample), :mod:`.inputs` (the
units' inputs and the raw-space reading of the weights), :mod:`.fit` (the batched
fit of every concept of a layer), :mod:`.scores` (set IoU, best single unit, weight
concentration), :mod:`.tables`, :mod:`.views`. See ``docs/concept_vectors.md``.
"""

from probe import hookimpl

from .analysis import ConceptVectors

__all__ = ["ConceptVectors"]


@hookimpl
def probe_register_analyses(register):
    register(ConceptVectors)
