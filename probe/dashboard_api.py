"""What a plugin registers to add a page or a panel to the dashboard: :class:`PageSpec`.

A plugin implements ``probe_register_dashboard_pages(register)`` and calls
``register(PageSpec(...))`` once per page or panel::

    from probe import hookimpl
    from probe.dashboard_api import PageSpec

    def my_panel(run, layer, unit):
        table = run.table("my-analysis", "scores")
        return html.Pre(table[table.unit == unit].to_string())

    @hookimpl
    def probe_register_dashboard_pages(register):
        register(PageSpec(name="my-scores", title="My scores", render=my_panel,
                          placement="unit", analyses=("my-analysis",)))

This module does not import Dash, so the plugin host can validate pages
without loading the dashboard.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

#: Where a contributed view appears, and the keyword arguments ``render`` gets.
PLACEMENTS: dict[str, tuple[str, ...]] = {
    "page": ("run",),                    # its own page: /plugin/<name>?run=RUN
    "layer": ("run", "layer"),           # a panel on the layers page, once per layer shown
    "unit": ("run", "layer", "unit"),    # a panel on every unit page
}

_PAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9_\-]*$")


@dataclass(frozen=True)
class PageSpec:
    """A page or panel contributed to ``probe dash`` by a plugin.

    Args:
        name: Unique name, lower-case letters, digits, ``-`` and ``_``; a page
            is served at ``/plugin/<name>``.
        title: Heading (and navigation label for pages).
        render: Called with keyword arguments ``run`` (a :class:`probe.Run`)
            plus ``layer`` (str) and ``unit`` (int) for panels; returns a Dash
            component. It must only read the run (``run.table(...)``).
        placement: ``"page"``, ``"layer"`` or ``"unit"`` (see :data:`PLACEMENTS`).
        analyses: Analyses the view needs; it is offered only for runs in
            which all of them completed.
        description: One line for listings.
    """

    name: str
    title: str
    render: Callable[..., Any]
    placement: str = "page"
    analyses: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _PAGE_NAME.match(self.name):
            raise ValueError(f"page name must be lower-case letters, digits, '-' or '_', "
                             f"got {self.name!r}")
        if not isinstance(self.title, str) or not self.title:
            raise ValueError(f"page title must be a non-empty string, got {self.title!r}")
        if not callable(self.render):
            raise TypeError(f"page render must be callable, got {type(self.render).__name__}")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"page placement must be one of {sorted(PLACEMENTS)}, "
                             f"got {self.placement!r}")
        if isinstance(self.analyses, str) or not all(isinstance(a, str) for a in self.analyses):
            raise TypeError(f"page analyses must be a tuple of analysis names, "
                            f"got {self.analyses!r}")

    def applies_to(self, completed: set[str] | frozenset[str]) -> bool:
        """Whether every analysis this view needs is in ``completed``."""
        return set(self.analyses) <= set(completed)


def validate_page(item: object) -> None:
    """Check that a registered object is a :class:`PageSpec` (the host's validator)."""
    if not isinstance(item, PageSpec):
        raise TypeError(f"expected a probe.dashboard_api.PageSpec, got {type(item).__name__}")
