"""Whether the dashboard is busy answering: background work waits for a quiet moment.

Page and section computations run inside :func:`working`; a background
prefetch calls :func:`wait_until_quiet` before each step, so on a machine with
few cores it never takes them from the sections of the page being answered
(on 2 cores, a unit page's sections took twice as long while the next page's
tables were decoded beside them).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

#: A prefetch reads only after the dashboard has computed nothing for this many seconds
#: (``PROBE_DASH_QUIET_MS``, default 150 ms), so it never competes with the sections of
#: the page that asked for it.
QUIET = float(os.environ.get("PROBE_DASH_QUIET_MS", "150")) / 1000
_WORK = threading.Condition()
_working = 0
_last_work = 0.0


@contextlib.contextmanager
def working() -> Iterator[None]:
    """Mark a computation that answers a request (a page, a section): background
    prefetches wait until no such computation has run for :data:`QUIET` seconds."""
    global _working, _last_work
    with _WORK:
        _working += 1
    try:
        yield
    finally:
        with _WORK:
            _working -= 1
            _last_work = time.monotonic()
            _WORK.notify_all()


def wait_until_quiet(quiet: float | None = None) -> None:
    """Block until no :func:`working` computation has run for ``quiet`` seconds."""
    quiet = QUIET if quiet is None else quiet
    with _WORK:
        while True:
            idle = time.monotonic() - _last_work
            if _working == 0 and idle >= quiet:
                return
            _WORK.wait(quiet - idle if _working == 0 else None)


def marked(compute: Callable[[], Any]) -> Callable[[], Any]:
    """``compute``, run inside :func:`working` when called."""

    def run() -> Any:
        with working():
            return compute()

    return run
