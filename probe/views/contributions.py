"""Ask every completed analysis of a run for one kind of view, each failure contained.

The dashboard and the report call views only through :func:`contributions`:
an analysis whose plugin is not installed, or whose hook raises, yields one
:class:`~probe.views.Note` in its place and never takes the page down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from probe.errors import ProbeError
from probe.views.blocks import Note
from probe.views.run_view import RunView


@dataclass(frozen=True)
class Contribution:
    """What one analysis returned from one hook (or the note saying why not)."""

    analysis: str
    value: Any
    problem: str | None = None

    @property
    def blocks(self) -> list[Any]:
        """The blocks to render: the hook's list, or the problem as a warning note."""
        if self.problem:
            return [Note(self.problem, "warning")]
        return list(self.value or [])


def analysis_class(name: str) -> type | None:
    """The installed analysis class called ``name``, or ``None``."""
    from probe.host import get_host

    registry = get_host().analyses
    return registry.get(name) if name in registry else None


def call_hook(name: str, hook: str, *args: Any) -> Contribution:
    """``AnalysisClass.hook(*args)`` for the analysis ``name``, failures as a problem line."""
    cls = analysis_class(name)
    if cls is None:
        return Contribution(name, None, f"the plugin that provides analysis {name!r} is not "
                                        f"installed here, so its views cannot be drawn")
    method: Callable[..., Any] = getattr(cls, hook)
    try:
        return Contribution(name, method(*args))
    except ProbeError as exc:  # a damaged table: name it
        return Contribution(name, None, f"{name}: {exc}")
    except Exception as exc:  # a plugin's view bug stays in its own place
        return Contribution(name, None, f"{name}.{hook} failed: {type(exc).__name__}: {exc}")


def contributions(run: RunView, hook: str, *args: Any) -> list[Contribution]:
    """``hook(run, *args)`` of every completed analysis of ``run``, in run order."""
    return [call_hook(name, hook, run, *args) for name in run.completed()]
