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


def step_progress(steps: Iterable[T], label: str, enabled: bool = True) -> Iterator[T]:
    """Iterate reported steps (``stage``, ``done``, ``total``, ``metrics``) behind a bar.

    The bar reads ``LABEL: STAGE``, follows ``done`` of ``total`` (which may grow) and
    shows the step's metrics beside it; the steps are yielded unchanged.
    """
    if not enabled:
        yield from steps
        return
    bar = tqdm(desc=label, total=None, leave=False, dynamic_ncols=True, unit="step")
    try:
        for step in steps:
            stage, done, total = (getattr(step, k) for k in ("stage", "done", "total"))
            bar.set_description(f"{label}: {stage}", refresh=False)
            bar.total, bar.n = total, done
            metrics = getattr(step, "metrics", {})
            bar.set_postfix({k: f"{v:.3g}" for k, v in metrics.items()}, refresh=False)
            bar.refresh()
            yield step
    finally:
        bar.close()
