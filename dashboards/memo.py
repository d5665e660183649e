"""A bounded, thread-safe memo of computed views (layer summaries, whole pages)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


class Memo:
    """A bounded LRU of computed values in which each key is computed once at a time.

    Concurrent requests for a key that is being computed wait for that
    computation instead of repeating it (20 clients opening one page cost one
    rendering, not twenty). A computation that raises is not kept.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._values: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
        self._lock = threading.Lock()
        self._computing: dict[tuple[Any, ...], threading.Lock] = {}

    def get(self, key: tuple[Any, ...], compute: Callable[[], Any],
            keep: Callable[[Any], bool] | None = None) -> Any:
        """The value of ``key``, computed by ``compute()`` when it is not kept.

        ``keep(value)`` false: the value is returned but not kept (the next call
        computes it again).
        """
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
            lock = self._computing.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                if key in self._values:  # computed while this one waited
                    self._values.move_to_end(key)
                    return self._values[key]
            try:
                value = compute()
            finally:
                with self._lock:
                    self._computing.pop(key, None)
            if keep is not None and not keep(value):
                return value
            with self._lock:
                self._values[key] = value
                while len(self._values) > self.size:
                    self._values.popitem(last=False)
            return value

    def peek(self, key: tuple[Any, ...]) -> tuple[bool, Any]:
        """``(True, value)`` when ``key`` is kept (nothing is computed), else ``(False, None)``."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return True, self._values[key]
        return False, None

    def clear(self) -> None:
        """Forget every value."""
        with self._lock:
            self._values.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._values)
