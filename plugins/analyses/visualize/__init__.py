"""``visualize``: feature visualisation by activation maximisation, a layer's units in one batch.

Modules: :mod:`.analysis` (the analysis and the optimisation), :mod:`.param`
(Fourier parametrisation, colour decorrelation, transforms), :mod:`.views`.
"""

from probe import Register, hookimpl

from .analysis import Visualize


@hookimpl
def probe_register_analyses(register: Register) -> None:
    register(Visualize)


__all__ = ["Visualize"]
