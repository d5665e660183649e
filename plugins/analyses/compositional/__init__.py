"""``compositional``: compositional explanations of units (Mu & Andreas, NeurIPS 2020).

Modules: :mod:`.analysis` (the class and its options), :mod:`.accumulator`
(declared state: dissection's thresholds, packed masks), :mod:`.masks` (unit
and concept masks, packed), :mod:`.bits` (packing and popcount), :mod:`.search`
(the batched beam search), :mod:`.tables`, :mod:`.parts` (parts → objects),
:mod:`.views`. See ``docs/compositional.md``.
"""

from probe import hookimpl

from .analysis import Compositional

__all__ = ["Compositional"]


@hookimpl
def probe_register_analyses(register):
    register(Compositional)
