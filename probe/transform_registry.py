"""Registered input transformations, looked up by name.

Kept apart from :mod:`probe.transforms` (which the host imports to validate
what plugins register) so that neither module imports the other's side:
this one asks the plugin host, the host knows only the ``Transform`` type.
"""

from __future__ import annotations

from collections.abc import Sequence

from probe.host import get_host
from probe.transforms import Transform


def get_transforms(names: Sequence[str]) -> list[Transform]:
    """The registered transforms called ``names``, in order.

    Raises:
        ProbeError: A name is not registered (the message lists the known ones).
    """
    registry = get_host().transforms
    return [registry.get(name) for name in names]


__all__ = ["get_transforms"]
