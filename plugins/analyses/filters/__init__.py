"""``filters`` analysis: learned filters against Gabor, PCA and Gaussian-derivative bases.

Modules: :mod:`.gabor` (generator, quadrature bank), :mod:`.fit` (batched Gabor
fit), :mod:`.bases` (Gaussian derivatives, PCA, spans), :mod:`.metrics`
(colour reduction, redundancy, Hungarian matching), :mod:`.natural` (patches
from images bundled with scikit-image and scikit-learn), :mod:`.analysis` (the
analysis class), :mod:`.figures` (plotly figures from the tables).
"""

from probe import hookimpl
from probe.plugins.analyses.filters.analysis import Filters

__all__ = ["Filters"]


@hookimpl
def probe_register_analyses(register):
    register(Filters)
