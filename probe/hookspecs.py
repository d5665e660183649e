"""Every hook a probe plugin can implement (pluggy project name ``probe``).

Registration hooks all take one ``register`` callback; call it once per item.
The host validates each item and names the plugin at fault in every error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("probe")
hookimpl = pluggy.HookimplMarker("probe")

#: The callback every registration hook receives: call it once per item.
Register = Callable[[Any], None]


@hookspec
def probe_register_architectures(register: Register) -> None:
    """Called once at start-up; call ``register(ArchitectureSpec(...))`` per architecture."""


@hookspec
def probe_register_datasets(register: Register) -> None:
    """Called once at start-up; call ``register(DatasetSpec(...))`` per data source."""


@hookspec
def probe_register_analyses(register: Register) -> None:
    """Called once at start-up; call ``register(AnalysisSubclass)`` per analysis."""


@hookspec
def probe_register_transforms(register: Register) -> None:
    """Called once at start-up; call ``register(TransformSpec(...))`` per input transformation."""


@hookspec
def probe_register_dashboard_pages(register: Register) -> None:
    """Called when the dashboard starts; call ``register(PageSpec(...))`` per extra page."""


@hookspec
def probe_run_started(run_dir: str, manifest: dict[str, Any]) -> None:
    """Called when a run starts, with its directory and initial manifest."""


@hookspec
def probe_analysis_finished(run_dir: str, analysis: str, tables: dict[str, Any]) -> None:
    """Called after an analysis wrote its tables (``{name: DataFrame}``)."""


@hookspec
def probe_run_finished(run_dir: str, manifest: dict[str, Any]) -> None:
    """Called when a run ends, whatever its status; ``manifest['status']`` tells which."""


@hookspec
def probe_run_failed(run_dir: str, manifest: dict[str, Any], error: str) -> None:
    """Called when a run or one of its analyses failed, with the error line."""
