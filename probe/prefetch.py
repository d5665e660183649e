"""The next batch read by a background thread while the current one is analysed.

With ``--workers 0`` the data set is read in the runner's own process. Reading a
batch (decoding image and label files, collating) and analysing the previous one
(the forward pass, the analyses' updates) then take turns on one core although
neither needs the other: the decoders (OpenCV, PIL), torch's kernels and the
compiled tallies release the GIL. :class:`Prefetched` reads one batch ahead in a
thread of the same process, so the two overlap on a second core, without the
start-up and the tensor transfer of a worker process (which cost more than they
save for small images on two cores: docs/dissection.md, *Speed*).

Batches come in the loader's order; an error raised while reading is raised to
the consumer at the batch it replaced, as the loader would have raised it.
When the consumer stops early (an error, a closed generator), the thread stops
after the batch it is reading and is joined, so the data set is never read by two
threads at once.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sized
from typing import Any

#: Seconds between checks of the stop flag while the queue is full.
_POLL = 0.05


class Prefetched:
    """``loader``'s items, each read by a background thread while the previous one is used.

    Args:
        loader: Any iterable (a ``DataLoader``); ``len()`` is passed through when it
            has one, so progress bars keep their total.
        ahead: Batches read ahead at most (memory: this many batches besides the one
            in use).
    """

    def __init__(self, loader: Iterable[Any], ahead: int = 1) -> None:
        if ahead < 1:
            raise ValueError(f"ahead must be at least 1, got {ahead}")
        self.loader, self.ahead = loader, ahead

    def __len__(self) -> int:
        if not isinstance(self.loader, Sized):
            raise TypeError(f"{type(self.loader).__name__} has no length")
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        ready: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=self.ahead)
        stop = threading.Event()

        def offer(entry: tuple[bool, Any]) -> bool:
            while not stop.is_set():
                try:
                    ready.put(entry, timeout=_POLL)
                    return True
                except queue.Full:
                    continue
            return False

        def read() -> None:
            try:
                for item in self.loader:
                    if not offer((True, item)):
                        return
            except BaseException as exc:
                offer((False, exc))
                return
            offer((False, None))

        thread = threading.Thread(target=read, name="probe-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                is_item, value = ready.get()
                if not is_item:
                    if value is not None:
                        raise value
                    return
                yield value
        finally:
            stop.set()
            thread.join()
