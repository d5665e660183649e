"""Strict name → item registries: duplicates and unknown names raise."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from probe.errors import PluginError, ProbeError

T = TypeVar("T")


class Registry(Generic[T]):
    """Items of one kind (architecture, dataset, ...) registered by plugins.

    Args:
        kind: Human name of the kind, used in messages (``"architecture"``).
        validate: Called on every item before it is added; raises on a bad item.
        plural: Plural of ``kind`` for messages (default: English rule for ``-is``/``-s``).
    """

    def __init__(self, kind: str, validate: Callable[[object], None] | None = None,
                 plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or (f"{kind[:-2]}es" if kind.endswith("is") else f"{kind}s")
        self._validate = validate
        self._items: dict[str, T] = {}
        self._owners: dict[str, str] = {}

    def add(self, item: T, plugin: str) -> str:
        """Add ``item`` on behalf of ``plugin``; returns its name."""
        try:
            if self._validate is not None:
                self._validate(item)
            name = getattr(item, "name", None)
            if not isinstance(name, str) or not name:
                raise PluginError(f"a registered {self.kind} needs a non-empty string `name`, "
                                  f"got {item!r}")
        except (PluginError, TypeError, ValueError) as exc:
            raise PluginError(f"plugin {plugin}: bad {self.kind}: {exc}") from exc
        if name in self._items:
            raise PluginError(f"{self.kind} {name!r} is registered twice: by plugin "
                              f"{self._owners[name]} and by plugin {plugin}")
        self._items[name] = item
        self._owners[name] = plugin
        return name

    def remove(self, name: str) -> None:
        """Forget ``name`` (used when a plugin is unloaded)."""
        self.get(name)
        del self._items[name], self._owners[name]

    def get(self, name: str) -> T:
        """The item called ``name``; raises listing the known names when unknown."""
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            message = f"unknown {self.kind} {name!r}; known {self.plural}: {known}"
            raise ProbeError(message) from None

    def owner(self, name: str) -> str:
        """The plugin that registered ``name``."""
        self.get(name)
        return self._owners[name]

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        return iter(self._items[n] for n in self.names())

    def __len__(self) -> int:
        return len(self._items)
