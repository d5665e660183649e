"""One writer per run directory: an exclusive lock, and who holds it.

The writer takes ``RUN/.lock`` with ``flock(LOCK_EX | LOCK_NB)`` for as long as
it runs and records itself (host, pid, start time) in the lock file and in the
manifest. A second writer gets one line naming the holder. The kernel drops
the lock when the writer's process dies — whatever killed it, SIGKILL
included — so a reader can tell a run that is being written from one whose
writer is gone: :func:`writer_alive` tries the lock.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Any

from probe.errors import ProbeError

LOCK = ".lock"


def writer_record() -> dict[str, Any]:
    """This process as the manifest records its writer."""
    from probe.store import utc_now

    return {"host": socket.gethostname(), "pid": os.getpid(), "started": utc_now()}


class RunLock:
    """The exclusive writer lock of one run directory (a context manager).

    Raises:
        ProbeError: Another process holds it (the message names its pid and
            host), or the folder cannot be created or written.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK
        self._handle: Any = None

    def acquire(self) -> RunLock:
        """Take the lock (no waiting)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+")  # noqa: SIM115 - held open for the whole run
        except OSError as exc:
            raise ProbeError(f"cannot write run directory {self.path.parent}: "
                             f"{exc.strerror or exc}") from None
        if not _try_lock(handle):
            handle.seek(0)
            holder = _parse(handle.read())
            handle.close()
            who = f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}" \
                if holder else "another process"
            since = f" since {holder['started']}" if holder.get("started") else ""
            raise ProbeError(f"run directory {self.path.parent} is being written by {who}"
                             f"{since}; wait for it or choose another --out") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(writer_record()))
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        """Drop the lock (the lock file stays; it is free)."""
        if self._handle is not None:
            fcntl.flock(self._handle.fileno(), fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _try_lock(handle: Any, tries: int = 5) -> bool:
    """``LOCK_EX`` without blocking; a few short retries so that a reader probing the
    lock (:func:`writer_alive`) at that instant is not taken for a writer."""
    import time

    for attempt in range(tries):
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError:
            if attempt + 1 < tries:
                time.sleep(0.05)
    return False


def _parse(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def writer_alive(run_dir: str | Path) -> bool:
    """Whether some process holds the run directory's writer lock right now."""
    path = Path(run_dir) / LOCK
    if not path.is_file():
        return False
    try:
        with open(path) as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            return False
    except OSError:
        return True
