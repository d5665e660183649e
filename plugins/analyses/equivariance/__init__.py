"""``equivariance``: per-layer equivariance error, consistency, learned maps, Lie derivatives.

Modules: :mod:`.analysis` (the analysis and its accumulator), :mod:`.geometry`
(where each layer's cells sit in the input), :mod:`.lie` (Lie derivatives and
their chain-rule attribution), :mod:`.ridge` (mergeable ridge regression for
learned maps), :mod:`.consistency` (shifted-crop helpers), :mod:`.figures`.
The built-in transformations are registered by :mod:`.default_transforms`.
"""

from probe import hookimpl

from .analysis import Equivariance


@hookimpl
def probe_register_analyses(register):
    register(Equivariance)


__all__ = ["Equivariance"]
