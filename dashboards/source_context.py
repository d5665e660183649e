"""Which :class:`~probe.dashboards.data.RunSource` a page reads: the app's, or one set.

Pages call :func:`get_source`: inside a request it is the serving app's runs;
background work started for a page runs under :func:`using` that page's
source; plain-function tests and benchmarks use the last one :func:`set_source`
made active.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import TYPE_CHECKING

from probe.errors import ProbeError

if TYPE_CHECKING:
    from probe.dashboards.data import RunSource

_ACTIVE: RunSource | None = None
CONFIG_KEY = "PROBE_RUN_SOURCE"


def clear_caches() -> None:
    """Forget every cached run, table and data set (tests and benchmarks)."""
    from probe.dashboards import table_cache

    table_cache.clear()
    if _ACTIVE is not None:
        _ACTIVE._memo.clear()
        _ACTIVE._pages.clear()


def set_source(source: RunSource) -> None:
    """Make ``source`` the one page callbacks use outside a request (plain-function tests)."""
    global _ACTIVE
    _ACTIVE = source


_USING: contextvars.ContextVar[RunSource | None] = contextvars.ContextVar(
    "probe_run_source", default=None)


@contextlib.contextmanager
def using(source: RunSource) -> Iterator[None]:
    """Make :func:`get_source` return ``source`` in this context (background work started
    for one app's page keeps reading that app's runs)."""
    token = _USING.set(source)
    try:
        yield
    finally:
        _USING.reset(token)


def get_source() -> RunSource:
    """The source :func:`using` set, else the runs of the app serving the current request,
    else the last one set.

    Raises:
        ProbeError: when no app was created yet.
    """
    import flask

    chosen = _USING.get()
    if chosen is not None:
        return chosen
    if flask.has_app_context() and CONFIG_KEY in flask.current_app.config:
        return flask.current_app.config[CONFIG_KEY]
    if _ACTIVE is None:
        raise ProbeError("no runs directory: build the app with probe.dashboards.create_app")
    return _ACTIVE
