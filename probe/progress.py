"""Progress bars on standard error (tqdm), quiet when asked."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress_bar(items: Iterable[T], label: str, enabled: bool = True,
                 total: int | None = None, unit: str = "batch") -> Iterator[T]:
    """Iterate ``items`` showing a bar labelled ``label`` (counting ``unit``) on stderr."""
    if not enabled:
        yield from items
        return
    yield from tqdm(items, desc=label, total=total, leave=False, dynamic_ncols=True,
                    unit=unit)
