"""Registers probe's built-in input transformations (see :mod:`probe.transforms`)."""

from probe import hookimpl
from probe.transforms import builtin_transforms


@hookimpl
def probe_register_transforms(register):
    for transform in builtin_transforms():
        register(transform)
