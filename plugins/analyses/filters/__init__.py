"""``filters`` analysis: learned filters against Gabor, PCA and Gaussian-derivative bases.

Modules: :mod:`.gabor` (generator, quadrature bank), :mod:`.fit` (batched Gabor
fit), :mod:`.bases` (Gaussian derivatives, PCA, spans), :mod:`.metrics`
(colour reduction, redundancy, Hungarian matching), :mod:`.natural` (patches
from images bundled with scikit-image and scikit-learn), :mod:`.natural_dataset`
(the ``natural`` data set of tiles of those images), :mod:`.weights` (which
convolution makes a layer, its filters as correlation kernels), :mod:`.measure`
(one filter bank's rows of every table), :mod:`.accumulator` (declared patch
sums for ``pca_source=dataset``; ``finalize``), :mod:`.analysis` (the analysis
class and its options), :mod:`.figures` (plotly figures from the tables).
"""

from probe import hookimpl
from probe.plugins.analyses.filters.analysis import Filters
from probe.plugins.analyses.filters.natural_dataset import NATURAL_SPEC

__all__ = ["Filters"]


@hookimpl
def probe_register_analyses(register):
    register(Filters)


@hookimpl
def probe_register_datasets(register):
    register(NATURAL_SPEC)
