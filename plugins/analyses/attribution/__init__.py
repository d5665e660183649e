"""``attribution``: deconvnet, guided backprop and integrated gradients over each unit's top images.

Modules: :mod:`.analysis` (the analysis: top-k exemplars as declared state, Captum
after the data loop), :mod:`.methods` (the Captum calls and the per-sample neuron
selector), :mod:`.views` (dashboard and report).
"""

from probe import Register, hookimpl

from .analysis import Attribution


@hookimpl
def probe_register_analyses(register: Register) -> None:
    register(Attribution)


__all__ = ["Attribution"]
