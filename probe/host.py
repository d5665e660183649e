"""The plugin host: one pluggy manager, the built-in plugins, entry points, registries.

Built-in plugins are ordinary plugin modules listed in :data:`BUILTIN_PLUGINS`
and registered through exactly the same path as third-party plugins, which are
found through the entry-point group ``probe``.

Environment:
    ``PROBE_LOAD_PLUGINS``: comma-separated entry-point names to load (set but
    empty = load no third-party plugin); unset = load all.
    ``PROBE_STRICT_PLUGINS=1``: a third-party plugin that fails to load is an
    error instead of a warning.
"""

from __future__ import annotations

import importlib
import os
import traceback
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from probe import hookspecs
from probe.analysis import Analysis, validate_analysis_class
from probe.architecture import ArchitectureSpec
from probe.dashboard_api import PageSpec, validate_page
from probe.dataset import DatasetSpec
from probe.errors import PluginError
from probe.registry import Registry
from probe.transforms import Transform, validate_transform

ENTRY_POINT_GROUP = "probe"

BUILTIN_PLUGINS: tuple[str, ...] = (
    "probe.plugins.architectures.lenet",
    "probe.plugins.architectures.reference",
    "probe.plugins.architectures.alexnet",
    "probe.plugins.architectures.vgg",
    "probe.plugins.architectures.deformable",
    "probe.plugins.architectures.deconvnet",
    "probe.plugins.architectures.hmax",
    "probe.plugins.architectures.lenet1989",
    "probe.plugins.architectures.natural_v1",
    "probe.plugins.architectures.neocognitron",
    "probe.plugins.datasets.digits",
    "probe.plugins.datasets.parts",
    "probe.plugins.datasets.broden",
    "probe.plugins.datasets.folder",
    "probe.plugins.analyses.unit_stats",
    "probe.plugins.analyses.equivariance",
    "probe.plugins.analyses.equivariance.default_transforms",
    "probe.plugins.analyses.dissection",
    "probe.plugins.analyses.filters",
    "probe.plugins.analyses.compositional",
    "probe.plugins.analyses.concept_vectors",
    "probe.plugins.analyses.receptive_field",
    "probe.plugins.analyses.attribution",
    "probe.plugins.analyses.visualize",
)

#: registration hook name → registry attribute of :class:`Host`
REGISTRATION_HOOKS = {
    "probe_register_architectures": "architectures",
    "probe_register_datasets": "datasets",
    "probe_register_analyses": "analyses",
    "probe_register_transforms": "transforms",
    "probe_register_dashboard_pages": "pages",
}


class PluginLoadWarning(UserWarning):
    """A third-party plugin failed to load and was skipped."""


@dataclass
class PluginInfo:
    """One plugin as ``probe plugins`` shows it."""

    name: str
    version: str
    source: str  # "builtin" | "entry-point" | "runtime"
    module: str
    registered: dict[str, list[str]] = field(default_factory=dict)
    error: str | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-ready view."""
        return {"name": self.name, "version": self.version, "source": self.source,
                "module": self.module, "registered": self.registered, "error": self.error}


def _describe_failure(exc: BaseException) -> str:
    """One line for a plugin's failure: ``Type: first line`` or ``it called sys.exit(code)``."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _check_instance(kind: type, label: str) -> Callable[[object], None]:
    def check(item: object) -> None:
        if not isinstance(item, kind):
            raise PluginError(f"expected a {label}, got {type(item).__name__}")
    return check


def _has_name(item: object) -> None:
    if not isinstance(getattr(item, "name", None), str):
        raise PluginError(f"expected an object with a string `name`, got {item!r}")


class Host:
    """Owns the plugin manager and the registries; build with :func:`get_host`."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("probe")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.architectures: Registry[ArchitectureSpec] = Registry(
            "architecture", _check_instance(ArchitectureSpec, "probe.ArchitectureSpec"))
        self.datasets: Registry[DatasetSpec] = Registry(
            "dataset", _check_instance(DatasetSpec, "probe.DatasetSpec"))
        self.analyses: Registry[type[Analysis]] = Registry("analysis", validate_analysis_class)
        self.transforms: Registry[Transform] = Registry("transform", validate_transform)
        self.pages: Registry[PageSpec] = Registry("dashboard page", validate_page)

    # -- loading -----------------------------------------------------------------
    def load(self) -> None:
        """Register the built-ins, then the selected third-party entry points."""
        from probe import __version__

        for module_name in BUILTIN_PLUGINS:
            module = importlib.import_module(module_name)
            self.add_plugin(module, module_name.rsplit(".", 1)[-1], version=__version__,
                            source="builtin")
        self._load_entry_points()

    def _load_entry_points(self) -> None:
        wanted = os.environ.get("PROBE_LOAD_PLUGINS")
        selected = None if wanted is None else {n.strip() for n in wanted.split(",") if n.strip()}
        strict = os.environ.get("PROBE_STRICT_PLUGINS", "") not in ("", "0")
        for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
            if selected is not None and ep.name not in selected:
                continue
            version = ep.dist.version if ep.dist is not None else "unknown"
            try:
                plugin = ep.load()
                self.add_plugin(plugin, ep.name, version=version, source="entry-point")
            except (Exception, SystemExit) as exc:  # a plugin must not end the command
                message = _describe_failure(exc)
                if strict:
                    raise PluginError(f"plugin {ep.name} failed to load: {message}") from exc
                self._forget(ep.name)
                self.plugins[ep.name] = PluginInfo(ep.name, version, "entry-point", ep.value,
                                                   error=message)
                warnings.warn(f"probe plugin {ep.name!r} failed to load and was skipped: "
                              f"{message}", PluginLoadWarning, stacklevel=2)

    def add_plugin(self, plugin: object, name: str, version: str = "unknown",
                   source: str = "runtime") -> PluginInfo:
        """Register one plugin object (module or instance) and collect its items.

        Raises:
            PluginError: when a hook is misspelt, an item is invalid, or a name
                is already taken (the message names both plugins).
        """
        if name in self.plugins:
            raise PluginError(f"a plugin named {name!r} is already loaded")
        module = getattr(plugin, "__name__", type(plugin).__name__)
        info = PluginInfo(name, version, source, module)
        self.pm.register(plugin, name=name)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self.pm.unregister(name=name)
            raise PluginError(f"plugin {name}: {exc}") from exc
        added: list[tuple[Registry[Any], str]] = []
        try:
            for hook_name, attr in REGISTRATION_HOOKS.items():
                registry: Registry[Any] = getattr(self, attr)
                for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                    if impl.plugin_name != name:
                        continue

                    def register(item: object, _reg: Registry[Any] = registry) -> None:
                        added.append((_reg, _reg.add(item, name)))

                    impl.function(register=register)
                    info.registered[attr] = [n for r, n in added if r is registry]
        except (Exception, SystemExit) as exc:
            for registry, item_name in added:
                registry.remove(item_name)
            self.pm.unregister(name=name)
            if isinstance(exc, PluginError):
                raise
            raise PluginError(f"plugin {name} failed while registering: "
                              f"{_describe_failure(exc)}") from exc
        info.registered = {k: v for k, v in info.registered.items() if v}
        self.plugins[name] = info
        return info

    def remove_plugin(self, name: str) -> None:
        """Unregister a plugin and every item it registered (notebooks, tests)."""
        if name not in self.plugins:
            raise PluginError(f"no plugin named {name!r} is loaded")
        info = self.plugins.pop(name)
        for attr, names in info.registered.items():
            registry: Registry[Any] = getattr(self, attr)
            for item_name in names:
                registry.remove(item_name)
        self._forget(name)

    def _forget(self, name: str) -> None:
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)

    # -- events -----------------------------------------------------------------
    def notify(self, event: str, **kwargs: Any) -> None:
        """Fire an event hook; a failing tracker plugin only warns."""
        try:
            getattr(self.pm.hook, event)(**kwargs)
        except Exception as exc:
            warnings.warn(f"a plugin's {event} hook raised {type(exc).__name__}: {exc}\n"
                          f"{traceback.format_exc(limit=3)}", PluginLoadWarning, stacklevel=2)

    def describe(self) -> list[dict[str, Any]]:
        """Every plugin, JSON-ready."""
        return [info.describe() for info in self.plugins.values()]


_HOST: Host | None = None


def get_host() -> Host:
    """The process-wide host, loaded once on first use."""
    global _HOST
    if _HOST is None:
        host = Host()
        host.load()
        _HOST = host
    return _HOST


def reset_host() -> None:
    """Forget the loaded host (tests, or after installing a plugin at run time)."""
    global _HOST
    _HOST = None
