"""``receptive-field``: theoretical and effective receptive fields per layer and unit.

Modules: :mod:`.analysis` (the analysis and its declared gradient sums),
:mod:`.effective` (distance bins, radial mass, radius), :mod:`.tables` (sums →
tables), :mod:`.views` (dashboard and report). The arithmetic itself is the
public :mod:`probe.receptive_field`, shared with the equivariance analysis.
"""

from probe import Register, hookimpl

from .analysis import ReceptiveField


@hookimpl
def probe_register_analyses(register: Register) -> None:
    register(ReceptiveField)


__all__ = ["ReceptiveField"]
