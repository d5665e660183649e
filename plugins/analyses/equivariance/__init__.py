"""``equivariance``: per-layer equivariance error, consistency, learned maps, Lie derivatives.

Modules: :mod:`.analysis` (the analysis), :mod:`.accumulator` (its declared
sums), :mod:`.sweep` (options and grids → what is measured, fixed before the
data loop), :mod:`.tables` (sums → tables), :mod:`.lie` (Lie derivatives and their
chain-rule attribution), :mod:`.ridge` (ridge regression on Gram sums for
learned maps), :mod:`.consistency` (shifted-crop helpers), :mod:`.figures`.
Where each layer's cells sit in the input comes from the shared
:mod:`probe.receptive_field`.
The built-in transformations are registered by :mod:`.default_transforms`.
"""

from probe import hookimpl

from .analysis import Equivariance


@hookimpl
def probe_register_analyses(register):
    register(Equivariance)


__all__ = ["Equivariance"]
