"""``dissection``: Network Dissection (Bau et al., CVPR 2017), exact and on the device.

Modules: :mod:`.analysis` (the analysis class and its options),
:mod:`.accumulator` (the declared streaming state and its steps),
:mod:`.quantile` (per-unit top-quantile thresholds, exact or sketched),
:mod:`.labels` (label space and the label side of a batch), :mod:`.tally`
(intersection / activation counts), :mod:`.upsample` (bilinear upsampling and
its strict threshold), :mod:`.hierarchy` (part → object edges, the ablation
sample), :mod:`.tables` (the tables from the reduced state; ``unpack_mask``),
:mod:`.figures`. The numpy reference loop the tests and the benchmark compare
against lives in ``tests/dissection_reference.py``.
"""

from probe import hookimpl

from .analysis import Dissection

__all__ = ["Dissection"]


@hookimpl
def probe_register_analyses(register):
    register(Dissection)
